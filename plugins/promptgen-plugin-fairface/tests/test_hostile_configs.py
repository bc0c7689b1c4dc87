"""Hostile FairFace weights files (issue 25): refused in one line, each within 5 s and the lot within 1 GB.

Every file is a ``torch.save(state_dict)`` as the released ``res34_fair_align_multi_7_20190809.pt``
(``promptgen_plugin_fairface.testing``), then tampered with: tensors whose shapes claim a huge network
(stored as views of one number, a few bytes on disk), other shapes, missing keys, tensors that are not float
weights, another model's file, a pickle that would take long to read. The loader cases run in one fresh
process that measures each one's wall time and its peak memory's growth over the baseline after import; the
untampered file, last, must load.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from promptgen_plugin_fairface.model import MAX_PICKLE_BYTES, MAX_PICKLE_CALLS, fairface_resnet34, load_fairface
from promptgen_plugin_fairface.testing import write_weights
from torchvision.models import resnet50
from typer.testing import CliRunner

from promptgen import plugin
from promptgen.cli import app
from promptgen.testing.tally import record

SECONDS = 5.0
GROWTH = 2**30  # bytes
ZERO = torch.zeros(())


def zeros_like_meta(build) -> dict[str, torch.Tensor]:
    """The keys and shapes of ``build()``'s state dict, each one zero broadcast (a few bytes)."""
    with torch.device("meta"):
        shapes = {k: (v.shape, v.dtype) for k, v in build().state_dict().items()}
    return {k: torch.zeros((), dtype=dtype).expand(shape) for k, (shape, dtype) in shapes.items()}


def standin(**changes) -> dict[str, torch.Tensor]:
    """FairFace's keys and shapes as zeros broadcast; ``a__b=None`` drops key ``a.b``."""
    state = zeros_like_meta(fairface_resnet34)
    for k, v in changes.items():
        k = k.replace("__", ".")
        if v is None:
            state.pop(k)
        else:
            state[k] = v
    return state


def huge(*shape: int) -> torch.Tensor:
    """A tensor of ``shape`` that is one stored zero: the file claims the size, and costs nothing."""
    return ZERO.expand(*shape)


def save(path: Path, obj: object, legacy: bool = False) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def many_tensors(n: int) -> dict[str, torch.Tensor]:
    return {f"extra.{i}": ZERO.expand(3) for i in range(n)}


#: name -> (writer(path), words the one-line refusal must hold)
CASES = {
    # the number of classes is fc's: a file claiming a billion of them
    "huge-fc": (lambda p: save(p, standin(fc__weight=huge(10**9, 512), fc__bias=huge(10**9))), "fc.weight has shape (1000000000, 512), expected (18, 512)"),
    "huge-stem-legacy": (
        lambda p: save(p, standin(conv1__weight=huge(2**24, 3, 7, 7)), legacy=True),
        "conv1.weight has shape (16777216, 3, 7, 7), expected (64, 3, 7, 7)",
    ),
    "wrong-shape": (
        lambda p: save(p, standin(layer4__0__conv1__weight=huge(512, 256, 1, 1))),
        "layer4.0.conv1.weight has shape (512, 256, 1, 1), expected (512, 256, 3, 3)",
    ),
    "missing-keys": (lambda p: save(p, standin(fc__weight=None, fc__bias=None)), "2 keys missing (e.g. 'fc.weight')"),
    "int-weights": (
        lambda p: save(p, standin(fc__weight=torch.zeros(18, 512, dtype=torch.int64))),
        "fc.weight holds torch.int64 values, not floating point",
    ),
    "meta-tensor": (
        lambda p: save(p, standin(fc__bias=torch.empty(18, device="meta"))),
        "fc.bias holds a tensor without values (saved from the meta device)",
    ),
    "sparse-tensor": (lambda p: save(p, standin(fc__weight=torch.zeros(18, 512).to_sparse())), "fc.weight holds a sparse_coo tensor"),
    "nan": (lambda p: save(p, standin(fc__bias=torch.full((18,), float("nan")))), "fc.bias holds non-finite values"),
    "resnet50": (lambda p: save(p, zeros_like_meta(resnet50)), "is not FairFace's ResNet-34: "),
    "many-tensors": (lambda p: save(p, standin() | many_tensors(5_000)), f"more than {MAX_PICKLE_CALLS:,} calls"),
    "huge-pickle": (lambda p: save(p, standin() | {"x" * 2_000_000: ZERO}), "its pickle (data.pkl) is 2,0"),
    "huge-pickle-legacy": (
        lambda p: save(p, standin() | {"x" * 2_000_000: ZERO}, legacy=True),
        f"its pickle is more than {MAX_PICKLE_BYTES:,} bytes",
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
import promptgen_plugin_fairface.model  # what building imports
registry = build_registry()
scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, kilobytes on Linux
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
base = peak()
out = {}
for name, path in json.loads(sys.argv[1]):
    start = time.perf_counter()
    try:
        registry.build_classifier("fairface", {"path": path})
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
    return {name: write(folder / f"{name}.pt") for name, (write, _words) in CASES.items()}


def test_hostile_files_are_refused_in_one_line_within_the_budget(hostile, tmp_path):
    control = write_weights(tmp_path / "res34_fair_align_multi_7_20190809.pt", legacy=True)  # as released, in 2019
    results = run_in_fresh_process([*hostile.items(), ("control", control)])
    report = {name: (round(r["seconds"], 2), round(r["growth"] / 2**20)) for name, r in results.items()}
    print("seconds, MB of growth:", report)  # shown with pytest -s
    for name, (_write, words) in CASES.items():
        r = results[name]
        record("model configurations from files", f"fairface: {name}", [
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


def test_the_refusals_are_promptgen_errors(hostile):
    for name in ("huge-fc", "meta-tensor", "resnet50", "many-tensors"):
        with pytest.raises(plugin.PromptgenError) as info:
            load_fairface(hostile[name])
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["huge-fc", "int-weights", "huge-pickle"])
def test_the_cli_refuses_in_one_line(hostile, tmp_path, name):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["compose", "--gen", "mnist", "--energy", f"classifier:gender=female,path={hostile[name]}", "--out", str(out), "-q"],
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert CASES[name][1] in lines[0] and "Traceback" not in result.output
    assert not out.exists()


def test_the_network_is_built_on_meta_first():
    # building FairFace's ResNet-34 on the meta device must work: build_matching checks the file against it
    with torch.device("meta"):
        net = fairface_resnet34()
    assert all(t.is_meta for t in net.state_dict().values())
    assert net.fc.weight.shape == (18, 512)
