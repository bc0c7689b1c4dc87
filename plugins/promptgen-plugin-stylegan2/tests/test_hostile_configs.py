"""Hostile checkpoints: a stored configuration describing a huge or impossible network is refused in one line.

Each case is an official file (an NVIDIA training snapshot, StyleGAN2 or
StyleGAN3, or a rosinality ``.pt``, written by
:mod:`promptgen_plugin_stylegan2.testing` at a small size) whose configuration
is then tampered with: the Generator's stored attributes and ``_init_kwargs``
(``z_dim``, ``img_resolution``, the mapping's ``num_layers``...), StyleGAN3's
synthesis arguments and stored numpy arrays, rosinality's key names (which are
its architecture), or a tensor's shape and strides. Every case must be refused with one line (a
``PromptgenError`` naming the file and what is wrong), never a traceback, a
MemoryError or a long hang: all of them are loaded in one subprocess that
measures each case's time and the growth of its peak memory.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from promptgen_plugin_stylegan2.checkpoints import CheckpointError, load_generator
from promptgen_plugin_stylegan2.network import MAX_MAPPING_LAYERS, MAX_RESOLUTION
from promptgen_plugin_stylegan2.testing import (
    official_modules,
    persistent_state,
    random_generator,
    random_stylegan3,
    rosinality_state,
    write_nvidia_pickle,
    write_rosinality_checkpoint,
)
from torch import nn
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.plugin import ConfigSizeError, PromptgenError
from promptgen.testing.tally import record

#: Per case, and for the peak memory of all of them together.
MAX_SECONDS = 5.0
MAX_RSS_GROWTH = 2**30


# --- the cases: each writes one file and names the words its error must contain ---------------------------------


def nvidia(path: Path, *, attrs: dict | None = None, mapping: dict | None = None, modules: dict | None = None) -> Path:
    """The fixture snapshot with the Generator's attributes (and the same ``_init_kwargs``) and sub-modules' attributes changed."""
    attrs = attrs or {}
    extra = {"": attrs, **(modules or {})}
    init_kwargs = dict(attrs)
    if mapping:
        extra["mapping"] = mapping
        init_kwargs["mapping_kwargs"] = dict(mapping)
    return write_nvidia_pickle(random_generator(), path, extra=extra, init_kwargs=init_kwargs)


def nvidia_g_ema(path: Path, edit, g=None) -> Path:
    """The fixture snapshot (of ``g``, by default the StyleGAN2 one) with ``edit(g, state)`` applied to G_ema's
    stored object tree."""
    g = g if g is not None else random_generator()
    with official_modules():
        state = persistent_state(g)
        edit(g, state)
    return write_nvidia_pickle(g, path, g_ema=state)


def child(state, dotted: str):
    for part in dotted.split("."):
        state = state.state["_modules"][part]
    return state


def claims_without_data(shape: tuple[int, ...]) -> nn.Parameter:
    """One stored number claiming ``shape`` (all strides 0): what a crafted pickle can say in a few bytes."""
    return nn.Parameter(torch.ones(1).as_strided(shape, (0,) * len(shape)), requires_grad=False)


def stride0_conv_weight(path: Path) -> Path:
    def edit(g, state):
        params = child(state, "synthesis.b32.conv1").state["_parameters"]
        params["weight"] = claims_without_data((100_000, 100_000, 3, 3))

    return nvidia_g_ema(path, edit)


def stride0_filter(path: Path) -> Path:
    def edit(g, state):
        child(state, "synthesis.b4").state["_buffers"]["resample_filter"] = claims_without_data((1_000_000, 1_000_000)).data

    return nvidia_g_ema(path, edit)


def aliased_noise(path: Path) -> Path:
    def edit(g, state):
        b32 = child(state, "synthesis.b32")
        b32.state["_modules"]["conv1"].state["_buffers"]["noise_const"] = b32.state["_modules"]["conv0"].state["_buffers"]["noise_const"]

    return nvidia_g_ema(path, edit)


def shared_module_bomb(path: Path) -> Path:
    """40 levels, each holding the next one twice: a few kilobytes that name 2^40 modules."""

    def edit(g, state):
        node = persistent_state(nn.Module())
        for _ in range(40):
            up = persistent_state(nn.Module())
            up.state["_modules"] = OrderedDict(a=node, b=node)
            node = up
        child(state, "synthesis").state["_modules"]["b64"] = node

    return nvidia_g_ema(path, edit)


def nested_list_bomb(path: Path) -> Path:
    """An attribute that is a list holding one list twice, 60 deep: printing it would never end."""
    bomb: list = []
    for _ in range(60):
        bomb = [bomb, bomb]
    return nvidia(path, modules={"mapping.fc0": {"activation": bomb}})


def rosinality(path: Path, edit=None, **save) -> Path:
    g = random_generator()
    state = rosinality_state(g)
    ckpt = {"g_ema": state, "latent_avg": g.mapping.w_avg.clone(), **save}
    if edit is not None:
        edit(state)
    torch.save(ckpt, path)
    return path


def rosinality_many_layers(path: Path) -> Path:
    def edit(state):
        for i in range(3, 1001):
            state[f"style.{i}.weight"] = torch.zeros(16, 16)
            state[f"style.{i}.bias"] = torch.zeros(16)

    return rosinality(path, edit)


def rosinality_huge_resolution(path: Path) -> Path:
    def edit(state):  # 3 blocks above 4x4 in the fixture, 36 more by name
        for i in range(4, 40):
            state[f"to_rgbs.{i}.bias"] = torch.zeros(1, 3, 1, 1)

    return rosinality(path, edit)


def rosinality_stride0_z(path: Path) -> Path:
    def edit(state):
        state["style.1.weight"] = torch.ones(1).as_strided((16, 10**9), (0, 0))

    return rosinality(path, edit)


def rosinality_integer_weights(path: Path) -> Path:
    def edit(state):
        state["style.1.weight"] = torch.zeros(16, 16, dtype=torch.int64)

    return rosinality(path, edit)


def rosinality_wider_than_its_weights(path: Path) -> Path:
    def edit(state):  # the first mapping layer says w is 17 wide; every other tensor holds 16
        state["style.2.weight"] = torch.zeros(17, 16)
        state["style.2.bias"] = torch.zeros(17)

    return rosinality(path, edit)


def zip_bomb(path: Path) -> Path:
    """A training snapshot whose records are deflated: 64 MB of zeros in a file of a few hundred kilobytes."""
    buf = io.BytesIO()
    rosinality(buf, d={"pad": torch.zeros(2**24)})
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    return path


def legacy_storage_claim(path: Path) -> Path:
    """An old-style torch.save file whose storage claims 2^31 - 1 numbers (8 GB) and holds 123,457."""
    buf = io.BytesIO()
    g = random_generator()
    torch.save({"g_ema": rosinality_state(g), "d": {"w": torch.zeros(123457)}}, buf, _use_new_zipfile_serialization=False)
    raw = buf.getvalue()
    claim = b"J" + struct.pack("<i", 123457)
    assert raw.count(claim) >= 1
    path.write_bytes(raw.replace(claim, b"J" + struct.pack("<i", 2**31 - 1)))
    return path


def stylegan3(path: Path, edit) -> Path:
    """The StyleGAN3 (config T) fixture snapshot with ``edit(g, state)`` applied to G_ema's stored object tree."""
    return nvidia_g_ema(path, edit, random_stylegan3())


def stylegan3_arguments(**changes):
    def edit(g, state):
        child(state, "synthesis").state["_init_kwargs"].update(changes)

    return lambda path: stylegan3(path, edit)


class _ArrayClaim:
    """A numpy array of 2^40 int64 numbers with eight bytes of data: what a crafted pickle can say in a few bytes."""

    def __reduce__(self):
        from numpy._core import multiarray

        return (multiarray._reconstruct, (np.ndarray, (0,), b"b"), (1, (2**40,), np.dtype("int64"), False, b"\0" * 8))


def stylegan3_array_claim(path: Path) -> Path:
    def edit(g, state):
        child(state, f"synthesis.{g.synthesis.layer_names[0]}").state["in_size"] = _ArrayClaim()

    return stylegan3(path, edit)


CASES = {
    # name: (writer, words the one-line error must contain)
    "huge_z_dim": (lambda p: nvidia(p, attrs={"z_dim": 10**9}), ["a network of 16,000,0", "more than promptgen builds", "4,000,000,000"]),
    "z_dim_not_matching_weights": (lambda p: nvidia(p, attrs={"z_dim": 10**6}), ["mapping.fc0.weight", "(16, 1000000)", "do not fill"]),
    "enormous_w_dim": (lambda p: nvidia(p, attrs={"w_dim": 10**40}), ["w_dim", "133-bit", "4,000,000,000"]),
    "huge_img_channels": (lambda p: nvidia(p, attrs={"img_channels": 10**8}), ["a network of 9,200,0", "4,000,000,000"]),
    "img_channels_not_matching_weights": (lambda p: nvidia(p, attrs={"img_channels": 1000}), ["torgb", "(1000, ", "do not fill"]),
    "huge_resolution": (lambda p: nvidia(p, attrs={"img_resolution": 2**30}), ["img_resolution", "1,073,741,824", f"{MAX_RESOLUTION:,}"]),
    "resolution_of_5000_digits": (lambda p: nvidia(p, attrs={"img_resolution": 10**5000}), ["img_resolution", "16,610-bit", f"{MAX_RESOLUTION:,}"]),
    "resolution_not_a_power_of_two": (lambda p: nvidia(p, attrs={"img_resolution": 48}), ["img_resolution", "48", "power of two"]),
    "huge_mapping_layers": (lambda p: nvidia(p, mapping={"num_layers": 200_000}), ["mapping.num_layers", "200,000", f"{MAX_MAPPING_LAYERS}"]),
    "negative_z_dim": (lambda p: nvidia(p, attrs={"z_dim": -16}), ["z_dim", "-16", "at least 1"]),
    "zero_img_channels": (lambda p: nvidia(p, attrs={"img_channels": 0}), ["img_channels", "at least 1"]),
    "zero_mapping_layers": (lambda p: nvidia(p, mapping={"num_layers": 0}), ["mapping.num_layers", "at least 1"]),
    "fractional_w_dim": (lambda p: nvidia(p, attrs={"w_dim": 16.5}), ["w_dim", "16.5", "not a whole number"]),
    "text_z_dim": (lambda p: nvidia(p, attrs={"z_dim": "16"}), ["z_dim", "'16'", "not a whole number"]),
    "boolean_num_layers": (lambda p: nvidia(p, mapping={"num_layers": True}), ["mapping.num_layers", "True", "not a whole number"]),
    "boolean_c_dim": (lambda p: nvidia(p, attrs={"c_dim": True}), ["c_dim", "True", "not a whole number"]),
    "w_dim_not_matching_weights": (lambda p: nvidia(p, attrs={"w_dim": 17}), ["(32, 17)", "but the file holds (32, 16)"]),
    "huge_c_dim_without_embedding": (lambda p: nvidia(p, attrs={"c_dim": 10**9}), ["c_dim", "1,000,000,000", "label embedding"]),
    "huge_width_from_a_stride0_tensor": (stride0_conv_weight, ["synthesis.b32.conv1.weight", "100000", "stores 1"]),
    "huge_filter_from_a_stride0_tensor": (stride0_filter, ["synthesis.b4.resample_filter", "stores 1"]),
    "one_array_under_two_names": (aliased_noise, ["same stored numbers", "several names"]),
    "one_module_under_2^40_names": (shared_module_bomb, ["already holds elsewhere"]),
    "activation_a_nested_list_bomb": (nested_list_bomb, ["unsupported activations", "a list"]),
    "stylegan3_huge_num_layers": (
        stylegan3_arguments(num_layers=10**6), ["synthesis argument num_layers", "1,000,000", "more than 64"]
    ),
    "stylegan3_huge_margin": (
        stylegan3_arguments(margin_size=10**9), ["margin_size", "1,000,000,000", "more than 1,024"]
    ),
    "stylegan3_huge_channels": (
        stylegan3_arguments(channel_base=10**13, channel_max=10**9), ["a network of", "more than promptgen builds"]
    ),
    "stylegan3_array_of_2^40_numbers": (stylegan3_array_claim, ["claims shape (1099511627776,)", "holds 8 bytes"]),
    "stylegan3_unknown_config": (
        stylegan3_arguments(conv_kernel=7), ["unknown configuration", "conv_kernel=7", "config R"]
    ),
    "rosinality_1000_mapping_layers": (rosinality_many_layers, ["1,000 mapping layers", f"{MAX_MAPPING_LAYERS}"]),
    "rosinality_resolution_2^41": (rosinality_huge_resolution, ["39 RGB outputs", "2^41", f"{MAX_RESOLUTION:,}"]),
    "rosinality_z_dim_from_a_stride0_tensor": (rosinality_stride0_z, ["style.1.weight", "1000000000", "stores 1"]),
    "rosinality_integer_weights": (rosinality_integer_weights, ["style.1.weight", "int64", "not floating point"]),
    "rosinality_wider_than_its_weights": (rosinality_wider_than_its_weights, ["17", "but the file holds"]),
    "rosinality_zip_bomb": (zip_bomb, ["unpacks to", "never compresses"]),
    "rosinality_legacy_storage_claim": (legacy_storage_claim, ["damaged"]),
}
CONTROLS = {
    "control_nvidia": lambda p: write_nvidia_pickle(random_generator(), p),
    "control_rosinality": lambda p: write_rosinality_checkpoint(random_generator(), p, training=True),
}

# Runs in a fresh interpreter: loads every file, timing each, and reports peak-RSS growth over the baseline after import.
MEASURE = """
import json, resource, sys, time
import torch
from promptgen.plugin import PromptgenError
from promptgen_plugin_stylegan2.checkpoints import load_generator

def peak_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

def status_kb(field):  # Linux: VmRSS now, VmHWM the peak since the last reset
    try:
        with open("/proc/self/status") as f:
            return int(next(line.split()[1] for line in f if line.startswith(field + ":")))
    except (OSError, StopIteration):
        return None

try:  # reset VmHWM, so that its growth is measured from here and not from import's own peak
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
base = peak_kb()
base_rss = status_kb("VmRSS")
out = {}
for name, path in json.loads(sys.argv[1]):
    t = time.perf_counter()
    try:
        load_generator(path)
        error = None
    except PromptgenError as e:
        error = {"type": type(e).__name__, "message": str(e), "bases": [c.__name__ for c in type(e).__mro__]}
    except BaseException as e:
        error = {"type": type(e).__name__, "message": str(e)[:500], "bases": []}
    hwm = status_kb("VmHWM")
    out[name] = {
        "seconds": time.perf_counter() - t,
        "rss_growth": (peak_kb() - base) * 1024,
        "hwm_growth": (hwm - base_rss) * 1024 if hwm is not None and base_rss is not None else 0,
        "error": error,
    }
print(json.dumps(out))
"""


def suffix(name: str) -> str:
    return ".pt" if name.startswith(("rosinality", "control_rosinality")) else ".pkl"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    out = {}
    for name, write in [*((n, w) for n, (w, _) in CASES.items()), *CONTROLS.items()]:
        out[name] = write(folder / f"{name}{suffix(name)}")
    return out


@pytest.fixture(scope="module")
def measured(files) -> dict[str, dict]:
    cases = [[name, str(path)] for name, path in files.items()]
    proc = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(cases)], check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_there_are_enough_cases():
    assert len(CASES) >= 8


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_configuration_is_refused_in_one_line(name, files, measured):
    result = measured[name]
    error = result["error"]
    record("model configurations from files", f"stylegan2: {name}", [
        *(["not refused"] if error is None else [] if "PromptgenError" in error["bases"] else [f"foreign exception {error['bases'][0]}"]),
        *([] if result["seconds"] < MAX_SECONDS and result["rss_growth"] < MAX_RSS_GROWTH else ["over budget"]),
    ])
    assert error is not None, f"{name} loaded"
    assert "PromptgenError" in error["bases"], error
    message = error["message"]
    assert "\n" not in message and "Traceback" not in message, message
    assert str(files[name]) in message, message  # names the file
    for word in CASES[name][1]:
        assert word in message, (word, message)
    assert result["seconds"] < MAX_SECONDS, result


def test_all_cases_stay_within_5_seconds_each_and_1_gb(measured):
    slowest = max(measured.values(), key=lambda r: r["seconds"])
    assert slowest["seconds"] < MAX_SECONDS, slowest
    growth = max(r["rss_growth"] for r in measured.values())
    assert growth < MAX_RSS_GROWTH, f"peak RSS grew by {growth / 2**20:.0f} MB"
    hwm = max(r["hwm_growth"] for r in measured.values())  # the same, measured from the RSS after import (Linux)
    assert hwm < MAX_RSS_GROWTH, f"peak RSS grew by {hwm / 2**20:.0f} MB over the RSS after import"
    print(f"\nstylegan2 hostile cases: max {slowest['seconds']:.2f} s, ru_maxrss growth {growth / 2**20:.0f} MB, VmHWM growth {hwm / 2**20:.0f} MB")


@pytest.mark.parametrize("name", list(CONTROLS))
def test_the_untampered_fixture_still_loads(name, files, measured):
    assert measured[name]["error"] is None, measured[name]
    g = load_generator(files[name])
    ref = random_generator()
    with torch.no_grad():
        torch.testing.assert_close(g(torch.zeros(1, 16)), ref(torch.zeros(1, 16)), rtol=0, atol=1e-5)


def test_size_errors_are_the_cores_config_size_error(tmp_path):
    for name in ("huge_z_dim", "huge_mapping_layers", "huge_width_from_a_stride0_tensor", "rosinality_1000_mapping_layers"):
        path = CASES[name][0](tmp_path / f"{name}{suffix(name)}")
        with pytest.raises(ConfigSizeError) as e:
            load_generator(path)
        assert isinstance(e.value, CheckpointError) and isinstance(e.value, PromptgenError)


@pytest.mark.parametrize("name", ["huge_z_dim", "huge_mapping_layers", "huge_width_from_a_stride0_tensor", "rosinality_zip_bomb"])
def test_the_cli_refuses_it_in_one_line(name, tmp_path):
    path = CASES[name][0](tmp_path / f"{name}{suffix(name)}")
    result = CliRunner().invoke(app, ["sample", "--gen", f"stylegan2:path={path}", "-n", "1", "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    for word in CASES[name][1]:
        assert word in lines[0], (word, lines[0])
    assert not (tmp_path / "x.png").exists()


def test_a_bound_is_far_above_published_models_and_fast_to_build():
    """The bounds leave room (published: 8 mapping layers, 1024 px) and the largest allowed network builds at once on meta."""
    import time

    from promptgen_plugin_stylegan2.network import StyleGAN2, StyleGAN2Config

    assert MAX_MAPPING_LAYERS >= 8 * 8 and MAX_RESOLUTION >= 1024 * 16
    t = time.perf_counter()
    with torch.device("meta"):
        StyleGAN2(StyleGAN2Config(mapping_layers=MAX_MAPPING_LAYERS, resolution=MAX_RESOLUTION, architecture="resnet", c_dim=10))
    assert time.perf_counter() - t < 2.0
