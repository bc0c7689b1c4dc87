"""Hostile CLIP weights files: refused in one line, before open_clip builds the model or reads the numbers.

A CLIP model's architecture is fixed by its name (one of open_clip's built-in
configurations); a ``path=`` file holds weights only. What a file can still
abuse: tensors whose shapes describe another model (wider, more layers), a
position embedding that open_clip would interpolate onto the model's grid
whatever its shape, stride-0 tensors claiming billions of numbers in a few
bytes, deflated zip records. Each case below is a format-faithful file (what
``torch.save(model.state_dict())`` or ``safetensors`` writes for a tiny
open_clip model) with that one thing changed. All of them are loaded in one
subprocess that measures each case's time and the growth of its peak memory.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from promptgen_plugin_clip.models import ClipCheckpointError, ClipLoadError, load_clip
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.testing.tally import record

MAX_SECONDS = 5.0
MAX_RSS_GROWTH = 2**30
NAME = "promptgen-tiny-clip"  # registered by conftest's tiny_clip fixture


def tiny_state() -> dict[str, torch.Tensor]:
    import open_clip

    torch.manual_seed(11)
    return open_clip.create_model(NAME, pretrained=None).state_dict()


def saved(path: Path, edit=None, *, wrap=None, **save) -> Path:
    state = dict(tiny_state())
    if edit is not None:
        edit(state)
    torch.save(wrap(state) if wrap else state, path, **save)
    return path


def stride0(shape: tuple[int, ...]) -> torch.Tensor:
    """One stored number claiming ``shape``: what a crafted file says in a few bytes."""
    return torch.ones(1).as_strided(shape, (0,) * len(shape))


def set_(key, value):
    def edit(state):
        state[key] = value(state[key]) if callable(value) else value

    return edit


def safetensors_file(path: Path, edit=None) -> Path:
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in tiny_state().items()}
    if edit is not None:
        edit(state)
    save_file(state, str(path))
    return path


def zip_bomb(path: Path) -> Path:
    """The tiny state dict plus 64 MB of zeros, every record deflated: a file of a few megabytes."""
    buf = io.BytesIO()
    state = dict(tiny_state())
    state["pad"] = torch.zeros(2**24)
    torch.save(state, buf)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    return path


def npz_bomb(path: Path) -> Path:
    """A big_vision-style .npz whose one array is 64 MB of zeros, compressed."""
    np.savez_compressed(path, **{"params/img/embedding/kernel": np.zeros(2**24, dtype=np.float32)})
    return path


def legacy_storage_claim(path: Path) -> Path:
    """An old-style torch.save file whose last storage claims 2^31 - 1 numbers (8 GB) and holds 123,457."""
    buf = io.BytesIO()
    state = dict(tiny_state())
    state["pad"] = torch.zeros(123457)
    torch.save(state, buf, _use_new_zipfile_serialization=False)
    claim = b"J" + struct.pack("<i", 123457)
    raw = buf.getvalue()
    assert raw.count(claim) >= 1
    path.write_bytes(raw.replace(claim, b"J" + struct.pack("<i", 2**31 - 1)))
    return path


def bigger_model(path: Path) -> Path:
    """The weights of a wider, deeper model (2 vision layers of width 64): its shapes are its configuration."""
    import open_clip

    cfg = open_clip.get_model_config(NAME)
    cfg["vision_cfg"] = {**cfg["vision_cfg"], "width": 64, "layers": 2}
    torch.save(open_clip.model.CLIP(**cfg).state_dict(), path)
    return path


def drop(key):
    def edit(state):
        del state[key]

    return edit


def extra_layer(state):
    for k in [k for k in state if k.startswith("visual.transformer.resblocks.0.")]:
        state[k.replace("resblocks.0.", "resblocks.1.")] = state[k].clone()


CASES = {
    # name: (writer, words the one-line error must contain)
    "wider_first_layer": (
        lambda p: saved(p, set_("visual.conv1.weight", torch.zeros(64, 3, 8, 8))),
        ["'visual.conv1.weight' has shape (64, 3, 8, 8) in the file but (32, 3, 8, 8)"],
    ),
    "weights_of_a_bigger_model": (bigger_model, ["is not a promptgen-tiny-clip checkpoint", "visual.transformer.resblocks.1"]),
    "one_layer_more": (lambda p: saved(p, extra_layer), ["visual.transformer.resblocks.1.", "does not have"]),
    "a_tensor_missing": (lambda p: saved(p, drop("visual.proj")), ["has no 'visual.proj'"]),
    "position_embedding_of_another_width": (
        lambda p: saved(p, set_("visual.positional_embedding", torch.zeros(2, 4096))),
        ["'visual.positional_embedding' has shape (2, 4096) in the file but (17, 32)"],
    ),
    "position_embedding_grid_not_square": (
        lambda p: saved(p, set_("visual.positional_embedding", torch.zeros(21, 32))),
        ["'visual.positional_embedding' has shape (21, 32)"],
    ),
    "position_embedding_10^10_rows_from_one_number": (
        lambda p: saved(p, set_("visual.positional_embedding", stride0((10**10 + 1, 32)))),
        ["'visual.positional_embedding'", "stores 1", "damaged or crafted"],
    ),
    "text_position_embedding_10^9_rows_from_one_number": (
        lambda p: saved(p, set_("positional_embedding", stride0((10**9, 32)))),
        ["'positional_embedding'", "stores 1"],
    ),
    "right_shape_from_one_number": (lambda p: saved(p, set_("visual.conv1.weight", stride0((32, 3, 8, 8)))), ["visual.conv1.weight", "stores 1"]),
    "logit_scale_of_many_numbers": (lambda p: saved(p, set_("logit_scale", torch.zeros(1000))), ["'logit_scale' has shape (1000,)"]),
    "safetensors_wider_than_the_model": (
        lambda p: safetensors_file(p, set_("visual.conv1.weight", torch.zeros(64, 3, 8, 8))),
        ["'visual.conv1.weight' has shape (64, 3, 8, 8)"],
    ),
    "text_instead_of_a_tensor": (lambda p: saved(p, set_("visual.proj", "a" * 1000)), ["holds a str under 'visual.proj'"]),
    "a_list_not_a_state_dict": (lambda p: saved(p, wrap=lambda s: list(s.values())), ["holds a list, not a state dict"]),
    "zip_bomb": (zip_bomb, ["unpacks to", "never compress"]),
    "npz_bomb": (npz_bomb, ["unpacks to", "never compress"]),
    "legacy_storage_claim": (legacy_storage_claim, ["cannot load CLIP weights"]),
}
CONTROLS = {
    "control_state_dict": lambda p: saved(p),
    "control_safetensors": lambda p: safetensors_file(p),
    "control_training_checkpoint": lambda p: saved(p, wrap=lambda s: {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in s.items()}}),
    "control_position_embedding_of_another_grid": lambda p: saved(p, set_("visual.positional_embedding", torch.zeros(65, 32))),
}
SUFFIX = {"safetensors_wider_than_the_model": ".safetensors", "control_safetensors": ".safetensors", "npz_bomb": ".npz"}

MEASURE = """
import json, logging, resource, sys, time
import open_clip, torch
from promptgen.plugin import PromptgenError
from promptgen_plugin_clip.models import load_clip

open_clip.add_model_config(sys.argv[1])
logging.disable(logging.WARNING)

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
for name, path in json.loads(sys.argv[2]):
    t = time.perf_counter()
    try:
        load_clip(sys.argv[3], "openai", path)
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


def file_name(name: str) -> str:
    return name + SUFFIX.get(name, ".pt")


@pytest.fixture(scope="module")
def files(tiny_clip, tmp_path_factory) -> dict[str, Path]:
    assert tiny_clip == NAME
    folder = tmp_path_factory.mktemp("hostile-clip")
    out = {}
    for name, write in [*((n, w) for n, (w, _) in CASES.items()), *CONTROLS.items()]:
        out[name] = write(folder / file_name(name))
    return out


@pytest.fixture(scope="module")
def measured(files, tmp_path_factory) -> dict[str, dict]:
    import open_clip

    configs = tmp_path_factory.mktemp("clip-configs-subprocess")
    (configs / f"{NAME}.json").write_text(json.dumps(open_clip.get_model_config(NAME)))
    cases = [[name, str(path)] for name, path in files.items()]
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(configs), json.dumps(cases), NAME], check=False, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_there_are_enough_cases():
    assert len(CASES) >= 8


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_weights_file_is_refused_in_one_line(name, files, measured):
    result = measured[name]
    error = result["error"]
    record("model configurations from files", f"clip: {name}", [
        *(["not refused"] if error is None else [] if "PromptgenError" in error["bases"] else [f"foreign exception {error['bases'][0]}"]),
        *([] if result["seconds"] < MAX_SECONDS and result["rss_growth"] < MAX_RSS_GROWTH else ["over budget"]),
    ])
    assert error is not None, f"{name} loaded"
    assert "PromptgenError" in error["bases"] and "ClipLoadError" in error["bases"], error
    message = error["message"]
    assert "\n" not in message and "Traceback" not in message, message
    assert str(files[name]) in message, message
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
    print(f"\nclip hostile cases: max {slowest['seconds']:.2f} s, ru_maxrss growth {growth / 2**20:.0f} MB, VmHWM growth {hwm / 2**20:.0f} MB")


@pytest.mark.parametrize("name", list(CONTROLS))
def test_untampered_files_still_load(name, files, measured):
    assert measured[name]["error"] is None, measured[name]


def test_the_loaded_weights_are_the_files(tiny_clip, files):
    model = load_clip(NAME, "openai", str(files["control_training_checkpoint"]))
    for (k, a), b in zip(tiny_state().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_shape_errors_are_checkpoint_errors(tiny_clip, tmp_path):
    path = CASES["wider_first_layer"][0](tmp_path / "wide.pt")
    with pytest.raises(ClipCheckpointError):
        load_clip(NAME, "openai", str(path))
    assert issubclass(ClipCheckpointError, ClipLoadError)


@pytest.mark.parametrize("name", ["wider_first_layer", "position_embedding_10^10_rows_from_one_number", "zip_bomb"])
def test_the_cli_refuses_it_in_one_line(name, tiny_clip, tmp_path):
    path = CASES[name][0](tmp_path / file_name(name))
    spec = f"clip:cat,model={NAME},path={path},aug=none"
    result = CliRunner().invoke(app, ["compose", "--gen", "mnist", "--energy", spec, "--steps", "1", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    for word in CASES[name][1]:
        assert word in lines[0], (word, lines[0])
    assert not (tmp_path / "out").exists()
