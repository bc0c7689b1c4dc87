"""The StyleGAN2 network and the two official checkpoint formats, on random weights (no downloads)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from promptgen_plugin_stylegan2.checkpoints import CheckpointError, load_generator, load_nvidia_pickle
from promptgen_plugin_stylegan2.network import StyleGAN2, StyleGAN2Config
from promptgen_plugin_stylegan2.ops import fir_filter, upsample2d
from promptgen_plugin_stylegan2.testing import (
    NVIDIA_PICKLE_GLOBALS,
    official_modules,
    persistent_state,
    pickle_globals,
    random_generator,
    rosinality_state,
    write_nvidia_pickle,
    write_rosinality_checkpoint,
)


def images(g, z, c=None, **kw):
    with torch.no_grad():
        return g(z, c, **kw)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"architecture": "resnet"},
        {"architecture": "orig", "conv_clamp": 1.0},
        {"c_dim": 10, "conv_clamp": 256.0},
        {"resolution": 64, "mapping_layers": 8, "w_dim": 24},
    ],
    ids=["skip", "resnet", "orig-clamped", "conditional", "64px"],
)
def test_nvidia_pickle_loads_the_same_generator(tmp_path, config):
    g = random_generator(1, **config)
    loaded = load_generator(write_nvidia_pickle(g, tmp_path / "snapshot.pkl"))
    for key in ("z_dim", "c_dim", "w_dim", "resolution", "img_channels", "mapping_layers", "mapping_lr", "channels", "architecture", "conv_clamp", "use_noise"):
        assert getattr(loaded.cfg, key) == getattr(g.cfg, key), key
    torch.testing.assert_close(torch.tensor(loaded.cfg.fir), torch.tensor(g.cfg.fir) / sum(g.cfg.fir))
    z = torch.randn(3, 16)
    c = torch.eye(10)[:3] if config.get("c_dim") else None
    for psi in (1.0, 0.5):
        assert torch.equal(images(loaded, z, c, psi=psi), images(g, z, c, psi=psi))


@pytest.mark.parametrize("training", [False, True], ids=["convert_weight", "train"])
def test_both_formats_give_the_same_images(tmp_path, training):
    g = random_generator(2)
    a = load_generator(write_nvidia_pickle(g, tmp_path / "g.pkl"))
    b = load_generator(write_rosinality_checkpoint(g, tmp_path / "g.pt", training=training))
    z = torch.randn(4, 16)
    for noise_mode in ("const", "none"):
        for psi in (1.0, 0.7):
            x, y = images(a, z, psi=psi, noise_mode=noise_mode), images(b, z, psi=psi, noise_mode=noise_mode)
            assert x.shape == (4, 3, 32, 32)
            torch.testing.assert_close(x, y, rtol=0, atol=1e-5)
    # The noise is part of the checkpoint: a different noise map changes the image.
    assert not torch.allclose(images(a, z), images(a, z, noise_mode="none"))


def test_rosinality_without_mean_latent_uses_the_mean_of_w(tmp_path):
    g = random_generator(3)
    b = load_generator(write_rosinality_checkpoint(g, tmp_path / "g.pt", latent_avg=False))
    z = torch.randn(4096, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = g.mapping(z)[:, 0].mean(0)
    torch.testing.assert_close(b.mapping.w_avg, expected)
    assert not torch.allclose(b.mapping.w_avg, g.mapping.w_avg)


def test_fixture_pickle_has_exactly_the_globals_of_official_pickles(tmp_path):
    path = write_nvidia_pickle(random_generator(), tmp_path / "g.pkl")
    assert pickle_globals(path.read_bytes()) == set(NVIDIA_PICKLE_GLOBALS)


def test_the_stored_module_source_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    source = f"open({str(marker)!r}, 'w').write('pwned')\nclass Generator: pass\n"
    g = random_generator()
    loaded = load_generator(write_nvidia_pickle(g, tmp_path / "g.pkl", source=source))
    assert not marker.exists()
    assert torch.equal(images(loaded, torch.zeros(1, 16)), images(g, torch.zeros(1, 16)))


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_a_command_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": RunsACommand(marker)}))
    with pytest.raises(CheckpointError, match=r"asks for (posix|os|nt)\.system.*refusing") as e:
        load_generator(path)
    assert "\n" not in str(e.value)
    assert not marker.exists()
    # Hidden inside a network's state, too.
    path = write_nvidia_pickle(random_generator(), tmp_path / "evil2.pkl", extra={"synthesis.b4": {"x": RunsACommand(marker)}})
    with pytest.raises(CheckpointError, match="refusing"):
        load_generator(path)
    assert not marker.exists()


def test_a_rosinality_file_with_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": {}, "x": RunsACommand(marker)}, path)
    with pytest.raises(CheckpointError, match="not weights") as e:
        load_generator(path)
    assert "\n" not in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.999])
def test_truncated_files_get_one_line(tmp_path, cut):
    for name, write in (("g.pkl", write_nvidia_pickle), ("g.pt", write_rosinality_checkpoint)):
        full = write(random_generator(), tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(full[: int(len(full) * cut)])
        with pytest.raises(CheckpointError) as e:
            load_generator(tmp_path / name)
        assert "\n" not in str(e.value) and ("damaged" in str(e.value) or "empty" in str(e.value))


def test_wrong_shapes_and_wrong_contents_get_one_line(tmp_path):
    g = random_generator()
    state = rosinality_state(g)
    state["conv1.conv.weight"] = state["conv1.conv.weight"][:, :4]
    torch.save({"g_ema": state}, tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match="shape"):
        load_generator(tmp_path / "g.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no 'g_ema'"):
        load_generator(tmp_path / "other.pt")
    with official_modules():
        blob = pickle.dumps({"G": 1}, protocol=4)
    (tmp_path / "other.pkl").write_bytes(blob)
    with pytest.raises(CheckpointError, match="no G_ema"):
        load_generator(tmp_path / "other.pkl")


def test_a_synthesis_network_of_neither_family_is_named_as_such(tmp_path):
    g = random_generator()
    with official_modules():
        state = persistent_state(g)
        syn = state.state["_modules"]["synthesis"]
        # StyleGAN3-shaped (an input, then layers) but not StyleGAN3's classes.
        syn.state["_modules"] = {"input": syn.state["_modules"]["b4"], "L0_36_512": syn.state["_modules"]["b8"]}
    expected = "StyleGAN3-shaped.*SynthesisInput is a 'SynthesisBlock'.*config T.*config R"
    with pytest.raises(CheckpointError, match=expected):
        load_generator(write_nvidia_pickle(g, tmp_path / "sg3.pkl", g_ema=state))
    with official_modules():
        state = persistent_state(g)
        syn = state.state["_modules"]["synthesis"]
        syn.state["_modules"] = {"block0": syn.state["_modules"]["b4"]}
    with pytest.raises(CheckpointError, match=r"layers \['block0'\].*neither StyleGAN2 blocks.*nor StyleGAN3"):
        load_generator(write_nvidia_pickle(g, tmp_path / "other.pkl", g_ema=state))


def test_noise_modes_and_truncation():
    g = random_generator(4)
    z = torch.randn(2, 16)
    assert torch.equal(images(g, z), images(g, z))  # const: deterministic
    torch.manual_seed(1)
    r1 = images(g, z, noise_mode="random")
    r2 = images(g, z, noise_mode="random")
    assert not torch.equal(r1, r2)
    # noise=none is the same as zero noise strength.
    silent = random_generator(4)
    for name, p in silent.named_parameters():
        if name.endswith("noise_strength"):
            p.zero_()
    assert torch.equal(images(g, z, noise_mode="none"), images(silent, z))
    # ψ = 0 puts every z on the mean w: one image.
    x = images(g, torch.randn(3, 16), psi=0.0)
    torch.testing.assert_close(x[0], x[2])
    assert not torch.allclose(images(g, z)[0], images(g, z)[1])
    # Explicit noise maps replace the stored ones.
    maps = [torch.zeros(1, 1, r, r) for r in g.synthesis.noise_shapes]
    assert torch.equal(images(g, z, noise=maps), images(g, z, noise_mode="none"))


@pytest.mark.parametrize("resolution", [32, 128, 1024])
def test_any_resolution_runs_and_passes_gradients_to_z(resolution):
    cfg = StyleGAN2Config(z_dim=8, w_dim=8, resolution=resolution, channels={r: 4 for r in [2**i for i in range(2, 11)]}, mapping_layers=1)
    g = StyleGAN2(cfg).eval().requires_grad_(False)
    z = torch.randn(1, 8, requires_grad=True)
    x = g(z)
    assert x.shape == (1, 3, resolution, resolution)
    x.square().mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_upsampling_keeps_a_constant_image_constant_away_from_borders():
    x = torch.ones(1, 1, 8, 8)
    y = upsample2d(x, fir_filter([1, 3, 3, 1]))
    assert y.shape == (1, 1, 16, 16)
    torch.testing.assert_close(y[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))


def test_numpy_object_scalars_are_refused(tmp_path):
    # numpy scalars are allowed (NVIDIA stores its gains as np.float64), but not object-dtype ones,
    # whose payload could be any object.
    from numpy._core import multiarray

    class ObjectScalar:
        def __reduce__(self):
            return (multiarray.scalar, (np.dtype(object), 1))

    with official_modules():
        blob = pickle.dumps({"G_ema": ObjectScalar()}, protocol=4)
    assert b"scalar" in blob
    (tmp_path / "x.pkl").write_bytes(blob)
    with pytest.raises(CheckpointError, match="object scalar"):
        load_generator(tmp_path / "x.pkl")
    # A float64 scalar goes through.
    assert load_nvidia_pickle(pickle.dumps({"gain": np.float64(0.25)}, protocol=4)) == {"gain": 0.25}



def test_float16_blocks_are_read_from_the_checkpoint_and_stay_close_to_float32(tmp_path):
    g = random_generator(9, resolution=64, fp16_resolutions=2, conv_clamp=256.0)
    assert [getattr(g.synthesis, f"b{r}").use_fp16 for r in (4, 8, 16, 32, 64)] == [False, False, False, True, True]
    loaded = load_generator(write_nvidia_pickle(g, tmp_path / "g.pkl"))
    assert loaded.cfg.fp16_resolutions == 2
    z = torch.randn(3, 16)
    full, half = images(loaded, z), images(loaded, z, half=True)
    assert half.dtype == torch.float32 and not torch.equal(full, half)
    torch.testing.assert_close(half, full, atol=0.02, rtol=0)
    # One image goes through the fused path, several through the float16-safe one: the same result.
    torch.testing.assert_close(images(loaded, z[:1], half=True), half[:1], atol=0.01, rtol=0)
