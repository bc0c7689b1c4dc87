"""StyleGAN3 (configs T and R): the network's invariants and NVlabs/stylegan3's pickles, on random weights.

The images themselves are checked against NVIDIA's code by ``scripts/check_stylegan3.py`` (bit-identical on the
CPU, see the README); here the network must keep the properties the architecture is built for, whatever its
weights: an image moved through the input transform moves by exactly that many pixels (T and R), a quarter turn
turns it (R only), and a file written in NVIDIA's format loads as the network that wrote it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from promptgen_plugin_stylegan2.checkpoints import CheckpointError, load_generator
from promptgen_plugin_stylegan2.stored import load_nvidia_pickle
from promptgen_plugin_stylegan2.stylegan3 import StyleGAN3, StyleGAN3Config, lowpass_filter, synthesis_plan
from promptgen_plugin_stylegan2.testing import (
    STYLEGAN3_PICKLE_GLOBALS,
    official_modules,
    persistent_state,
    pickle_globals,
    random_generator,
    random_stylegan3,
    write_nvidia_pickle,
)

#: 32 pixels and 6 layers: the sampling rate doubles once (16 -> 32), so up-sampling by 4 and the
#: critically sampled layers are all exercised.
GEOMETRY = {"resolution": 32, "num_layers": 6}


def images(g, z, c=None, **kw):
    with torch.no_grad():
        return g(z, c, **kw)


@pytest.fixture(scope="module")
def nets():
    return {kind: random_stylegan3(3, kind, **GEOMETRY) for kind in "TR"}


@pytest.mark.parametrize(("kind", "c_dim"), [("T", 0), ("R", 0), ("T", 3)], ids=["T", "R", "T-conditional"])
def test_a_stylegan3_pickle_loads_as_the_network_that_wrote_it(tmp_path, kind, c_dim):
    g = random_stylegan3(1, kind, c_dim=c_dim, **GEOMETRY)
    g.set_transform((0.05, -0.1), 10.0)  # a stored transform is part of the network
    loaded = load_generator(write_nvidia_pickle(g, tmp_path / "snapshot.pkl"), "stylegan3")
    assert isinstance(loaded, StyleGAN3) and loaded.cfg.kind == kind
    assert loaded.cfg == g.cfg
    ours, theirs = loaded.state_dict(), g.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    z = torch.randn(3, 16)
    c = torch.eye(c_dim)[[0, 1, 2]] if c_dim else None
    for psi in (1.0, 0.7):
        assert torch.equal(images(loaded, z, c, psi=psi), images(g, z, c, psi=psi))


def test_the_fixture_has_exactly_the_globals_of_official_stylegan3_pickles(tmp_path):
    g = random_stylegan3(2, "R")
    path = write_nvidia_pickle(g, tmp_path / "g.pkl")
    assert pickle_globals(path.read_bytes()) == set(STYLEGAN3_PICKLE_GLOBALS)
    # The sizes are numpy arrays, as NVIDIA stores them: the numbers come back, read-only data and nothing else.
    stored = load_nvidia_pickle(path.read_bytes())["G_ema"].module("synthesis")
    first = g.synthesis.layer_names[0]
    size = stored.module(first).attr("in_size")
    assert isinstance(size, np.ndarray) and size.tolist() == [g.synthesis.input.size] * 2
    assert stored.module("input").attr("size").tolist() == [g.synthesis.input.size] * 2


def test_a_pickle_written_under_numpy_1_loads(tmp_path):
    """The published files were written with numpy 1.x, whose arrays are rebuilt by numpy.core.multiarray."""
    g = random_stylegan3(4, "T")
    raw = write_nvidia_pickle(g, tmp_path / "g.pkl", protocol=3).read_bytes()  # GLOBAL opcodes: names as text
    old = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert old != raw and b"numpy._core" not in old
    (tmp_path / "old.pkl").write_bytes(old)
    z = torch.randn(2, 16)
    assert torch.equal(images(load_generator(tmp_path / "old.pkl"), z), images(g, z))


@pytest.mark.parametrize("kind", ["T", "R"])
def test_images_move_by_whole_pixels_with_the_input_transform(nets, kind):
    """Alias-free: a shift by whole pixels of the coarsest layer moves every layer's samples by whole pixels."""
    g = nets[kind]
    z = torch.randn(2, 16)
    base = images(g, z)
    scale = float(base.abs().max())
    assert scale > 0.01 and not torch.allclose(base[0], base[1])
    try:
        for k in (2, 4):  # output pixels (1/16 and 1/8 of the image: one and two pixels at the first layer's rate)
            g.set_transform((k / 32, 0.0))
            right = images(g, z)
            g.set_transform((0.0, k / 32))
            down = images(g, z)
            inner = slice(4, -4 - k)
            moved = slice(4 + k, -4)
            torch.testing.assert_close(right[..., 4:-4, moved], base[..., 4:-4, inner], atol=1e-5 * scale, rtol=0)
            torch.testing.assert_close(down[..., moved, 4:-4], base[..., inner, 4:-4], atol=1e-5 * scale, rtol=0)
            # The other way round is far off: the test can tell a shift from its mirror.
            assert float((right[..., 4:-4, inner] - base[..., 4:-4, moved]).abs().max()) > 100 * 1e-5 * scale
    finally:
        g.set_transform()


def test_config_r_turns_with_a_quarter_turn_and_config_t_does_not(nets):
    """R's 1x1 convolutions and radial filters make it rotation-equivariant; T's 3x3 kernels do not."""
    z = torch.randn(2, 16)
    errors = {}
    for kind, g in nets.items():
        base = images(g, z)
        g.set_transform(rotate=90.0)
        try:
            turned = images(g, z)
        finally:
            g.set_transform()
        anticlockwise = torch.rot90(base, 1, dims=(-2, -1))
        errors[kind] = float((turned - anticlockwise)[..., 3:-3, 3:-3].abs().max()) / float(base.abs().max())
    assert errors["R"] < 1e-5, errors
    assert errors["T"] > 1000 * errors["R"], errors


def test_truncation_labels_and_gradients(nets):
    g = nets["T"]
    x = images(g, torch.randn(3, 16), psi=0.0)  # every z on the mean w: one image
    torch.testing.assert_close(x[0], x[2])
    z = torch.randn(2, 16, requires_grad=True)
    out = g(z)
    assert out.shape == (2, 3, 32, 32)
    out.square().mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    cond = random_stylegan3(5, "R", c_dim=4)
    z = torch.randn(1, 16).repeat(2, 1)
    a, b = images(cond, z, torch.eye(4)[[0, 1]]).unbind(0)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("kind", ["T", "R"])
def test_designed_filters_are_nvidias(kind):
    """The filters NVIDIA designs with scipy (a Kaiser-windowed sinc; R: a windowed jinc), here without scipy."""
    import scipy.signal
    import scipy.special

    _, plans = synthesis_plan(StyleGAN3Config.preset(kind, **GEOMETRY))
    checked = 0
    for p in plans:
        for taps, cutoff, half, radial in ((p.up_taps, p.in_cutoff, p.in_half_width, False),
                                           (p.down_taps, p.out_cutoff, p.out_half_width, p.down_radial)):  # fmt: skip
            ours = lowpass_filter(taps, cutoff, half * 2, p.tmp_sampling_rate, radial)
            if taps == 1:
                assert ours is None
                continue
            fs = p.tmp_sampling_rate
            if not radial:
                ref = scipy.signal.firwin(numtaps=taps, cutoff=cutoff, width=half * 2, fs=fs)
            else:
                x = (np.arange(taps) - (taps - 1) / 2) / fs
                r = np.hypot(*np.meshgrid(x, x))
                ref = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
                beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(taps, half * 2 / (fs / 2)))
                ref = ref * np.outer(np.kaiser(taps, beta), np.kaiser(taps, beta))
                ref = ref / ref.sum()
            torch.testing.assert_close(ours, torch.as_tensor(ref, dtype=torch.float32), atol=1e-7, rtol=0)
            checked += 1
    assert checked == 2 * (len(plans) - 1)  # all but ToRGB's, which has no filters
    if kind == "R":
        assert any(p.down_radial for p in plans)


# --- bad files: one line, nothing runs -------------------------------------------------------------------------


def tampered(path, edit, kind="T"):
    """An official-format StyleGAN3 snapshot with ``edit(g, G_ema's stored object tree)`` applied."""
    g = random_stylegan3(0, kind)
    with official_modules():
        state = persistent_state(g)
        edit(g, state)
    return write_nvidia_pickle(g, path, g_ema=state)


def child(state, dotted):
    for part in dotted.split("."):
        state = state.state["_modules"][part]
    return state


def synthesis_kwargs(**changes):
    def edit(g, state):
        child(state, "synthesis").state["_init_kwargs"].update(changes)

    return edit


def last_hidden_layer(g, state):
    return child(state, f"synthesis.{g.synthesis.layer_names[-2]}")


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class ArrayClaim:
    """What a crafted pickle can say: an int64 array of a billion numbers, with eight bytes of data."""

    def __reduce__(self):
        from numpy._core import multiarray

        return (multiarray._reconstruct, (np.ndarray, (0,), b"b"), (1, (10**9,), np.dtype("int64"), False, b"\0" * 8))


class CallsNdarray:
    """numpy.ndarray called as a constructor, which NVIDIA's pickles never do (it would allocate a terabyte)."""

    def __reduce__(self):
        return (np.ndarray, ((10**12,),))


def set_attr(name, value, where=last_hidden_layer):
    def edit(g, state):
        where(g, state).state[name] = value

    return edit


def set_buffer(name, value):
    def edit(g, state):
        last_hidden_layer(g, state).state["_buffers"][name] = value

    return edit


BAD = {
    # name: (edit, words the one-line error must contain)
    "unknown kernel": (
        synthesis_kwargs(conv_kernel=5),
        ["unknown configuration", "conv_kernel=5", "config T", "config R"],
    ),
    "radial filters with 3x3 kernels": (
        synthesis_kwargs(use_radial_filters=True),
        ["unknown configuration", "use_radial_filters=True"],
    ),
    "an argument stylegan3 does not have": (
        synthesis_kwargs(use_noise=True),
        ["'use_noise'", "does not have", "config T"],
    ),
    "a layer's padding": (
        set_attr("padding", [0, 0, 0, 0]),
        ["padding is [0, 0, 0, 0] but [", "config T", "modified code"],
    ),
    "a layer's size": (set_attr("out_size", np.array([7, 7])), ["out_size is [7, 7] but ["]),
    "the input's bandwidth": (
        set_attr("bandwidth", 3.5, lambda g, s: child(s, "synthesis.input")),
        ["synthesis.input.bandwidth is 3.5"],
    ),
    "no constructor arguments": (
        set_attr("_init_kwargs", None, lambda g, s: child(s, "synthesis")),
        ["no stored constructor arguments"],
    ),
    "a zero magnitude": (set_buffer("magnitude_ema", torch.zeros(())), ["magnitude_ema is 0", "not a positive"]),
    "a numpy array of objects": (
        set_attr("in_size", np.array([36, 36], dtype=object)),
        ["numpy array of Python objects", "refusing"],
    ),
    "an array claiming a billion numbers": (
        set_attr("in_size", ArrayClaim()),
        ["claims shape (1000000000,)", "holds 8 bytes"],
    ),
    "numpy.ndarray called": (set_attr("in_size", CallsNdarray()), ["damaged"]),
    "a huge number of layers": (synthesis_kwargs(num_layers=10**6), ["num_layers", "1,000,000", "more than 64"]),
    "a huge margin": (synthesis_kwargs(margin_size=10**7), ["margin_size", "10,000,000", "more than 1,024"]),
    "a fractional kernel": (synthesis_kwargs(conv_kernel=2.5), ["conv_kernel", "2.5", "not a whole number"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_stylegan3_file_is_refused_in_one_line(tmp_path, name):
    edit, words = BAD[name]
    path = tampered(tmp_path / "bad.pkl", edit)
    with pytest.raises(CheckpointError) as e:
        load_generator(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message, message
    for word in words:
        assert word in message, (word, message)


def test_a_stylegan3_pickle_that_runs_a_command_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tampered(tmp_path / "evil.pkl", set_attr("up_filter_note", RunsACommand(marker)))
    with pytest.raises(CheckpointError, match=r"asks for (posix|os|nt)\.system.*refusing") as e:
        load_generator(path)
    assert "\n" not in str(e.value) and not marker.exists()
    # The stored module source is never run either.
    source = f"open({str(marker)!r}, 'w').write('pwned')\n"
    g = random_stylegan3(6, "R")
    loaded = load_generator(write_nvidia_pickle(g, tmp_path / "g.pkl", source=source))
    assert not marker.exists() and torch.equal(images(loaded, torch.zeros(1, 16)), images(g, torch.zeros(1, 16)))


@pytest.mark.parametrize("cut", [0.0, 0.2, 0.6, 0.999])
def test_a_truncated_stylegan3_file_gets_one_line(tmp_path, cut):
    full = write_nvidia_pickle(random_stylegan3(0, "R"), tmp_path / "g.pkl").read_bytes()
    (tmp_path / "g.pkl").write_bytes(full[: int(len(full) * cut)])
    with pytest.raises(CheckpointError) as e:
        load_generator(tmp_path / "g.pkl")
    assert "\n" not in str(e.value) and ("damaged" in str(e.value) or "empty" in str(e.value)), str(e.value)


def test_each_family_refuses_the_others_file_with_the_name_to_use(tmp_path):
    sg3 = write_nvidia_pickle(random_stylegan3(0, "R"), tmp_path / "sg3.pkl")
    with pytest.raises(CheckpointError, match=r"StyleGAN3 \(config R\).*not StyleGAN2.*stylegan3-r:path=FILE"):
        load_generator(sg3, "stylegan2")
    sg2 = write_nvidia_pickle(random_generator(), tmp_path / "sg2.pkl")
    with pytest.raises(CheckpointError, match="StyleGAN2 network, not StyleGAN3.*stylegan2:path=FILE"):
        load_generator(sg2, "stylegan3")
    assert isinstance(load_generator(sg3), StyleGAN3) and not isinstance(load_generator(sg2), StyleGAN3)
