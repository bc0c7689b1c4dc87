"""Hostile deca_model.tar files (issue 25): refused in one line, each within 5 s and the lot within 1 GB.

Every file is written in DECA's format (``torch.save`` of the dict of state dicts, see
``promptgen_plugin_deca.testing``) and then tampered with: tensors whose shapes claim a huge network
(stored as views of one number, a few bytes on disk), other shapes, missing keys, tensors that are not
float weights, another model's file, a pickle that would take long to read. The loader cases run in one
fresh process that measures each one's wall time and its peak memory's growth over the baseline after
import; the untampered file, last, must load.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from promptgen_plugin_deca.checkpoints import MAX_PICKLE_CALLS, CheckpointError, load_encoder
from promptgen_plugin_deca.network import FlameEncoder
from promptgen_plugin_deca.testing import deca_checkpoint, write_deca_model
from typer.testing import CliRunner

from promptgen import plugin
from promptgen.cli import app
from promptgen.testing.tally import record

SECONDS = 5.0
GROWTH = 2**30  # bytes

PLUGIN = Path(__file__).resolve().parents[1]


def standin(**changes) -> dict[str, torch.Tensor]:
    """E_flame's keys and shapes, each one zero broadcast (a few bytes); ``a__b=None`` drops key ``a.b``."""
    with torch.device("meta"):
        shapes = {k: (v.shape, v.dtype) for k, v in FlameEncoder().state_dict().items()}
    state = {k: torch.zeros((), dtype=dtype).expand(shape) for k, (shape, dtype) in shapes.items()}
    for k, v in changes.items():
        k = k.replace("__", ".")
        if v is None:
            state.pop(k)
        else:
            state[k] = v
    return state


def huge(*shape: int) -> torch.Tensor:
    """A tensor of ``shape`` that is one stored zero: the file claims the size, and costs nothing."""
    return torch.zeros(()).expand(*shape)


def save(path: Path, obj: object, legacy: bool = False) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def nvae_checkpoint(path: Path) -> Path:
    """What NVAE's train.py saves: weights, optimiser, and its arguments as an argparse.Namespace."""
    args = argparse.Namespace(dataset="celeba_64", num_channels_enc=64, num_latent_scales=3, batch_size=16)
    return save(
        path,
        {
            "epoch": 3,
            "state_dict": {"stem.conv.weight": torch.zeros(64, 3, 3, 3)},
            "optimizer": {"state": {}, "param_groups": []},
            "args": args,
            "arch_instance": "res_mbconv",
            "global_step": 1200,
        },
    )


def many_tensors(n: int) -> dict[str, torch.Tensor]:
    one = torch.zeros(())
    return {f"extra.{i}": one.expand(3) for i in range(n)}


#: name -> (writer(path), words the one-line refusal must hold)
CASES = {
    # the FLAME parameter count is the regressor's output: a file claiming 10 million outputs
    "huge-regressor": (
        lambda p: write_deca_model(p, encoder=standin(layers__2__weight=huge(10**7, 1024), layers__2__bias=huge(10**7))),
        "shape (10000000, 1024)",
    ),
    # a trunk a million channels wide, and in the legacy format
    "huge-stem-legacy": (
        lambda p: save(p, deca_checkpoint(encoder=standin(encoder__conv1__weight=huge(2**20, 3, 7, 7))), legacy=True),
        "shape (1048576, 3, 7, 7)",
    ),
    "wrong-shape": (
        lambda p: write_deca_model(p, encoder=standin(layers__0__weight=torch.zeros(1024, 512))),
        "has shape (1024, 512), DECA's encoder has (1024, 2048)",
    ),
    "missing-keys": (
        lambda p: write_deca_model(p, encoder=standin(layers__2__weight=None, layers__2__bias=None)),
        "2 of its 322 keys are missing ('layers.2.bias', 'layers.2.weight')",
    ),
    "int-weights": (
        lambda p: write_deca_model(p, encoder=standin(layers__0__weight=torch.zeros(1024, 2048, dtype=torch.int32))),
        "holds torch.int32 values, not floating point",
    ),
    "meta-tensor": (
        lambda p: write_deca_model(p, encoder=standin(layers__2__bias=torch.empty(236, device="meta"))),
        "holds a tensor without values (saved from the meta device)",
    ),
    "sparse-tensor": (
        lambda p: write_deca_model(p, encoder=standin(layers__2__bias=torch.zeros(236).to_sparse())),
        "holds a sparse_coo tensor",
    ),
    "float8": (
        lambda p: write_deca_model(p, encoder=standin(layers__2__bias=torch.zeros(236).to(torch.float8_e4m3fn))),
        "holds torch.float8_e4m3fn values",
    ),
    "nvae-checkpoint": (nvae_checkpoint, "holds an argparse.Namespace"),
    "bare-encoder": (lambda p: save(p, standin()), "it looks like a bare state dict"),
    # 10,000 one-number tensors, a few hundred KB: over the bound on calls (100,000 would take over 10 s to read)
    "many-tensors": (
        lambda p: save(p, {**deca_checkpoint(), "E_detail": many_tensors(10_000)}),
        f"more than {MAX_PICKLE_CALLS:,} calls",
    ),
    "many-tensors-legacy": (
        lambda p: save(p, {**deca_checkpoint(), "E_detail": many_tensors(10_000)}, legacy=True),
        f"more than {MAX_PICKLE_CALLS:,} calls",
    ),
    "huge-pickle": (
        lambda p: save(p, {**deca_checkpoint(), "notes": "x" * 3_000_000}),
        "its pickle (data.pkl) is 3,0",
    ),
}

RUNNER = r"""
import json, os, resource, sys, time
# ru_maxrss of a process keeps the peak of the one that spawned it (pytest's, hundreds of MB): measure in a fork
# made before anything is imported, whose peak starts at its own.
pid = os.fork()
if pid:
    sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
from promptgen import plugin
from promptgen.core.registry import build_registry
import promptgen_plugin_deca.checkpoints, promptgen_plugin_deca.energy  # what building imports
registry = build_registry()
scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, kilobytes on Linux
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
base = peak()
out = {}
for name, path in json.loads(sys.argv[1]):
    start = time.perf_counter()
    try:
        registry.build_energy(f"deca-pose:path={path}")
        kind, message = "loaded", ""
    except plugin.PromptgenError as e:
        kind, message = "PromptgenError", str(e)
    except BaseException as e:
        kind, message = "not a PromptgenError: " + type(e).__name__, str(e)[:400]
    out[name] = {"seconds": time.perf_counter() - start, "growth": peak() - base, "kind": kind, "message": message}
print(json.dumps({"baseline": base, "cases": out}))
"""


def run_in_fresh_process(cases: list[tuple[str, Path]]) -> dict[str, dict]:
    """Each case's seconds, peak memory growth (bytes), kind of outcome and message, read in one new process."""
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps([(n, str(p)) for n, p in cases])],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"baseline after import: {found['baseline'] / 2**20:.0f} MB")  # shown with pytest -s
    return found["cases"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    return {name: write(folder / f"{name}.tar") for name, (write, _words) in CASES.items()}


def test_hostile_files_are_refused_in_one_line_within_the_budget(hostile, tmp_path):
    control = write_deca_model(tmp_path / "deca_model.tar", seed=0)
    results = run_in_fresh_process([*hostile.items(), ("control", control)])
    report = {name: (round(r["seconds"], 2), round(r["growth"] / 2**20)) for name, r in results.items()}
    print("seconds, MB of growth:", report)  # shown with pytest -s
    for name, (_write, words) in CASES.items():
        r = results[name]
        record("model configurations from files", f"deca: {name}", [
            *([] if r["kind"] == "PromptgenError" else [f"foreign exception {r['kind']}"]),
            *([] if r["seconds"] < SECONDS and r["growth"] < GROWTH else ["over budget"]),
        ])
        assert r["kind"] == "PromptgenError", (name, r)
        assert "\n" not in r["message"] and len(r["message"]) < 500, (name, r["message"])
        assert words in r["message"] and hostile[name].name in r["message"], (name, r["message"])
        assert r["seconds"] < SECONDS, (name, r)
        assert r["growth"] < GROWTH, (name, r)
    assert results["control"]["kind"] == "loaded", results["control"]
    assert results["control"]["seconds"] < SECONDS and results["control"]["growth"] < GROWTH, results["control"]


def test_the_refusals_are_checkpoint_errors(hostile):
    for name in ("huge-regressor", "meta-tensor", "nvae-checkpoint", "many-tensors"):
        with pytest.raises(CheckpointError) as info:
            load_encoder(hostile[name])
        assert isinstance(info.value, plugin.PromptgenError) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["huge-regressor", "meta-tensor", "many-tensors-legacy"])
def test_the_cli_refuses_in_one_line(hostile, tmp_path, name):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["compose", "--gen", "mnist", "--energy", f"deca-pose:path={hostile[name]}", "--steps", "2", "--out", str(out), "-q"],
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert CASES[name][1] in lines[0] and "Traceback" not in result.output
    assert not (out / "manifest.json").exists()


# --- the wording (issue 25, item 8) ---------------------------------------------------------------


def test_an_nvae_checkpoint_is_named_for_what_it_holds(hostile):
    with pytest.raises(CheckpointError) as info:
        load_encoder(hostile["nvae-checkpoint"])
    message = str(info.value)
    assert "holds an argparse.Namespace" in message and "NVAE" in message and "deca_model.tar" in message
    # a namespace of arguments is not code: the message must not call it that
    assert not re.search(r"\b(run|runs|code|execute)\b", message), message


def test_code_in_a_file_is_still_called_code(tmp_path):
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "evil.tar"
    path.write_bytes(pickle.dumps({"E_flame": Payload()}))
    with pytest.raises(CheckpointError, match="asks to run posix.system"):
        load_encoder(path)


def test_the_docs_say_conditional_prompts_can_be_composed():
    readme = (PLUGIN / "README.md").read_text()
    module = (PLUGIN / "src" / "promptgen_plugin_deca" / "__init__.py").read_text()
    for text in (readme, module):
        assert "once conditional prompts land" not in text.replace("\n", " ")
        assert "--cond yaw=-0.35:0.35" in text
    assert "no release calls" not in readme and "cannot compose" not in readme
    assert "docs/conditions.md" in readme


def test_the_network_builds_on_meta_and_build_matching_guards_it():
    # build_matching builds FlameEncoder on the meta device first: its constructor does no data-dependent work
    with torch.device("meta"):
        net = FlameEncoder()
    assert all(t.is_meta for t in net.state_dict().values())
    with pytest.raises(plugin.ConfigSizeError, match=r"'layers\.2\.weight' would have shape \(236, 1024\)"):
        plugin.build_matching(FlameEncoder, standin(layers__2__weight=huge(10**7, 1024)), "'x.tar'")
    counters_absent = {k: v for k, v in standin().items() if not k.endswith("num_batches_tracked")}
    assert isinstance(plugin.build_matching(FlameEncoder, counters_absent, "'x.tar'"), FlameEncoder)
