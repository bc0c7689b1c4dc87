"""Issue 14: every bad input gets one line and exit code 2, changes no file, runs no payload.

The catalog is in ``tests/adversarial.py`` (over 500 cases). Each runs in a
fresh workspace, in-process through the ``promptgen`` command's Typer app;
a few that need a real process (``--nproc``, a full stdout, an ASCII-only
terminal) run the installed command. ``scripts/adversarial_report.py`` runs
the whole catalog through the real command and prints the counts as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.testing.tally import record

sys.path.insert(0, str(Path(__file__).parent))  # the catalog beside this file (pytest imports with importlib)
from adversarial import MARKER, RESULTS, Case, all_cases, build_pristine, check, make_workspace, snapshot

runner = CliRunner()
CASES = all_cases()
PROMPTGEN = shutil.which("promptgen") or str(Path(sys.executable).parent / "promptgen")


@pytest.fixture(scope="session")
def pristine(tmp_path_factory) -> Path:
    return build_pristine(tmp_path_factory.mktemp("pristine"))


@pytest.fixture
def ws(pristine, tmp_path, monkeypatch) -> Path:
    workspace = make_workspace(pristine, tmp_path / "ws")
    monkeypatch.chdir(workspace)
    return workspace


def invoke(args: list[str]):
    return runner.invoke(app, args)


def test_the_catalog_is_large_and_its_names_unique():
    assert len(CASES) > 500
    assert len({c.name for c in CASES}) == len(CASES), [c.name for c in CASES if sum(d.name == c.name for d in CASES) > 1]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case: Case, ws: Path, monkeypatch):
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    if case.setup is not None:
        case.setup(ws)
    before = snapshot(ws)
    with warnings.catch_warnings(record=True) as caught:  # a warning a user would see printed above the line
        warnings.simplefilter("always")
        result = invoke(case.argv(ws))
    after = snapshot(ws)
    crashed = result.exception if not isinstance(result.exception, SystemExit) else None
    problems = check(case, ws, result.exit_code, result.stdout, result.stderr, before, after)
    # What Python shows a user by default (it hides deprecation and resource warnings outside __main__).
    hidden = (DeprecationWarning, PendingDeprecationWarning, ResourceWarning)
    shown = [w for w in caught if not issubclass(w.category, hidden)]
    if shown:
        problems.append(f"a warning printed: {shown[0].category.__name__}: {str(shown[0].message)[:120]}")
    if crashed is not None:
        problems.append(f"traceback: {type(crashed).__name__}")
    RESULTS.append((case.name, problems))  # reported at the end of the run (tests/conftest.py)
    record(case.klass, case.name, problems)
    assert crashed is None, f"{type(crashed).__name__}: {crashed}"
    assert not problems, problems


def test_the_undamaged_workspace_works(ws: Path):
    """The control: without the damage, the same commands succeed (so the cases fail for their damage)."""
    ok = [
        ["sample", "--gen", "mnist", "-n", "2", "-o", str(ws / "ok.png"), "-q"],
        ["sample", str(ws / "p"), "-n", "2", "-o", str(ws / "ok.png"), "-q", "--cost-json", str(ws / "cost.json")],
        ["sample", str(ws / "p"), "-n", "2", "-o", str(ws / "priv.png"), "-q"],
        ["sample", "--gen", "mnist", "-n", "2", "-o", str(ws / "ok.png"), "--device", "cpu:0", "--seed", "-1", "-q"],
        ["sample", "--gen", "mnist", "-n", "2", "-o", str(ws / "imgs"), "-q"],
        ["info", str(ws / "p")],
        ["eval", str(ws / "p"), "-n", "4", "-q", "-o", str(ws / "ok.json")],
        ["report", str(ws / "p"), "-n", "4", "-o", str(ws / "ok.html"), "-q"],
        ["compose", "--resume", str(ws / "r"), "-q"],
        ["compose", "--energy", "classifier:digit=3", "--steps", "1", "--batch-size", "8", "--eval-batch", "8",
         "--out", str(ws / "o"), "-q"],
        ["compose", "--gen", f"prompt:{ws / 'p'}", "--energy", "classifier:digit=3", "--steps", "1", "--batch-size", "8",
         "--eval-batch", "8", "--out", str(ws / "o2"), "-q"],
    ]
    for args in ok:
        result = invoke(args)
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
    assert sorted(p.name for p in (ws / "imgs").iterdir()) == ["000000.png", "000001.png"]
    # A file written over keeps its permissions: a private file stays private.
    assert (ws / "priv.png").stat().st_mode & 0o777 == 0o600
    assert (ws / "priv.png").read_bytes().startswith(b"\x89PNG")
    assert not (ws / MARKER).exists()


def test_a_run_json_from_before_flow_auto_resumes_with_splines(tmp_path):
    """run.json files written before `--flow auto` hold no kind: they meant splines, and resume as such."""
    from promptgen.composing import compose
    from promptgen.training.trainer import TrainConfig

    run = tmp_path / "old"
    config = TrainConfig(steps=2, eval_every=1, eval_batch=8, batch_size=8, fit_samples=16, checkpoint_every=1)
    compose("mnist", ["classifier:digit=3"], run, train=config, flow={"kind": "spline-coupling", "transforms": 2,
            "hidden": 8}, preview=0, progress=False)
    for name in ("manifest.json", "flow.safetensors"):
        (run / name).unlink()
    data = json.loads((run / "run.json").read_text())
    del data["flow"]["kind"]
    (run / "run.json").write_text(json.dumps(data))
    result = invoke(["compose", "--resume", str(run), "-q"])
    assert result.exit_code == 0, result.stderr
    assert json.loads((run / "manifest.json").read_text())["flow"]["kind"] == "spline-coupling"


def test_a_failed_overwrite_puts_back_the_old_prompt(ws: Path, monkeypatch):
    """Training that fails after every check passed (here: diverged) leaves the overwritten prompt exactly as it was."""
    import promptgen.composing.workflow as compose_module
    from promptgen.training.trainer import TrainingDiverged

    def diverge(*args, **kwargs):
        (ws / "p" / "checkpoint.pt").write_bytes(b"half a run")  # what training leaves before it fails
        raise TrainingDiverged("training diverged: a test")

    before = snapshot(ws)
    monkeypatch.setattr(compose_module, "train_flow", diverge)
    result = invoke(["compose", "--energy", "classifier:digit=3", "--steps", "2", "--batch-size", "8", "--eval-batch", "8",
                     "--out", str(ws / "p"), "--overwrite", "-q"])
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == ["error: training diverged: a test"], result.stderr
    assert snapshot(ws) == before  # run.json was rewritten before training, and is put back


@pytest.mark.parametrize("failure", ["preview", "manifest"])
def test_an_overwrite_that_fails_while_saving_leaves_the_old_prompt_whole(ws: Path, monkeypatch, failure):
    """Issue 25: the preview (or the manifest) fails after the new weights were written, as a full disk would make it:
    the old prompt is byte-identical and still samples."""
    import promptgen.composing.workflow as compose_module
    from promptgen.artifacts.prompt import load_prompt, sample_images
    from promptgen.core.errors import PromptgenError

    prompt = ws / "p"
    old = load_prompt(prompt)
    old_images = sample_images(old, 4, seed=3)
    if failure == "preview":
        (prompt / "samples.png").write_bytes(b"the old preview")

        def fail(*args, **kwargs):
            raise PromptgenError(f"cannot write {str(prompt / 'samples.png')!r}: No space left on device")

        monkeypatch.setattr(compose_module, "save_preview", fail)
    else:
        real = compose_module.save_prompt

        def fail(out, manifest, flow):  # the weights are written, then the disk fills
            real(out, manifest, flow)
            raise PromptgenError(f"cannot write {str(prompt / 'manifest.json')!r}: No space left on device")

        monkeypatch.setattr(compose_module, "save_prompt", fail)
    before = snapshot(ws)
    result = invoke(["compose", "--energy", "classifier:digit=3", "--steps", "2", "--batch-size", "8", "--eval-batch", "8",
                     "--seed", "7", "--check-samples", "0", "--out", str(prompt), "--overwrite", "-q"])
    same = snapshot(ws) == before
    record("failed overwrite", f"the {failure} fails", [] if same else ["changed files: the old prompt"])
    assert result.exit_code == 2 and "No space left on device" in result.stderr, result.stderr
    assert same
    assert torch.equal(sample_images(load_prompt(prompt), 4, seed=3), old_images)


def test_sample_refuses_more_images_than_memory_holds(ws: Path, monkeypatch):
    import promptgen.core.images

    monkeypatch.setattr(promptgen.core.images, "memory_bytes", lambda: 2**30)  # a 1 GiB machine
    before = snapshot(ws)
    result = invoke(["sample", "--gen", "mnist", "-n", "1000000", "-o", str(ws / "ok.npz")])
    assert result.exit_code == 2 and "more than half this machine's memory" in result.stderr, result.stderr
    result = invoke(["sample", str(ws / "p"), "--method", "langevin", "-n", "1000000", "-o", str(ws / "ok.npz")])
    assert result.exit_code == 2 and "ask for at most" in result.stderr, result.stderr
    assert snapshot(ws) == before


def test_a_chain_400_prompts_deep_loads_and_samples(pristine, tmp_path):
    """Chains are walked and decoded without recursion (the docs promise any length)."""
    from promptgen.artifacts.prompt import load_prompt

    previous = pristine / "p"
    for i in range(400):
        folder = tmp_path / f"c{i}"
        shutil.copytree(pristine / "p", folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["generator"]["spec"] = f"prompt:{previous}"
        manifest["lineage"] = []
        (folder / "manifest.json").write_text(json.dumps(manifest))
        previous = folder
    prompt = load_prompt(previous)
    assert len(prompt.chain()) == 401
    images = prompt.decode(torch.randn(2, 32))
    assert images.shape == (2, 1, 28, 28)
    result = invoke(["sample", str(previous), "-n", "2", "-o", str(tmp_path / "deep.png"), "-q"])
    assert result.exit_code == 0, result.stderr


# --- cases that need a real process ------------------------------------------------------------------------


def run(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, **kwargs.pop("env", {})}
    return subprocess.run([PROMPTGEN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False, **kwargs)


def test_nproc_runs_no_module_from_the_current_folder(ws: Path):
    """rich.py, torch.py, typer.py... in the working folder: the torchrun relaunch must not import them."""
    result = run(["compose", "--energy", "classifier:digit=3", "--steps", "1", "--batch-size", "4", "--eval-batch", "4",
                  "--nproc", "2", "--out", str(ws / "o"), "-q"], cwd=ws)
    assert result.returncode == 0, result.stderr
    assert not (ws / MARKER).exists(), (ws / MARKER).read_text()
    assert "Traceback" not in result.stderr


def test_nproc_failure_in_the_processes_is_one_line(ws: Path):
    """A mistake only the training processes meet: one line, exit 2, no torchrun traceback."""
    state = torch.load(ws / "r" / "checkpoint.pt", weights_only=True)  # checked only in the processes
    state["eval_eps"] = torch.zeros(3, 5)
    torch.save(state, ws / "r" / "checkpoint.pt")
    before = snapshot(ws)
    result = run(["compose", "--resume", str(ws / "r"), "--nproc", "2", "-q"], cwd=ws)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "error:" in lines[0] and "eval_eps" in lines[0], result.stderr
    assert snapshot(ws) == before


def test_a_full_stdout_is_one_line(ws: Path):
    for args in (["list"], ["info", str(ws / "p")]):
        with open("/dev/full", "w") as full:
            result = subprocess.run([PROMPTGEN, *args], cwd=ws, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and "standard output" in lines[0], result.stderr


@pytest.mark.parametrize("closed", ["stdout", "stderr", "both"])
def test_a_closed_stdout_or_stderr_is_no_traceback(ws: Path, closed: str):
    """Issue 25: `promptgen info P >&-` printed an AttributeError traceback (Python sets sys.stdout to None)."""
    for args in (["info", str(ws / "p")], ["sample", str(ws / "p"), "-n", "2", "-o", str(ws / "closed.png"), "-q"]):
        result = subprocess.run([PROMPTGEN, *args], cwd=ws, capture_output=True, text=True, timeout=120, check=False,
                                stdin=subprocess.DEVNULL, pass_fds=(),
                                preexec_fn=lambda: [os.close(fd) for fd in {"stdout": [1], "stderr": [2], "both": [1, 2]}[closed]])
        record("closed standard streams", f"{args[0]} with {closed} closed",
               [*(["traceback"] if "Traceback" in result.stderr else []),
                *([] if result.returncode == (0 if closed == "stderr" else 2) else [f"exit code {result.returncode}"])])
        assert result.returncode == (0 if closed == "stderr" else 2), (args, result.returncode)
        if closed == "stdout":
            assert result.stderr.strip().splitlines() == [
                "error: standard output is closed (>&-); send it somewhere instead, e.g. >/dev/null or >out.txt"], result.stderr
    assert not (ws / "closed.png").exists() or closed == "stderr"


def test_an_ascii_terminal_gets_escapes_not_a_traceback(ws: Path):
    env = {"PYTHONIOENCODING": "ascii"}
    result = run(["sample", "--gen", "mnist", "-n", "2", "-o", str(ws / "ok.png")], cwd=ws, env=env)
    assert result.returncode == 0 and "\\u2713" in result.stdout, (result.stdout, result.stderr)
    result = run(["info", str(ws / "p")], cwd=ws, env=env)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    result = run(["sample", "--gen", "nosuch\u00e9"], cwd=ws, env=env)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("name", ["manifest.json", "flow.safetensors"])
def test_an_unreadable_prompt_file_is_called_unreadable_not_missing(ws: Path, monkeypatch, name):
    """Root reads any file, so the refusal is simulated where promptgen asks the system about the file."""
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if str(path).endswith(f"p/{name}"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    for args in (["info", str(ws / "p")], ["sample", str(ws / "p"), "-n", "2", "-o", str(ws / "ok.png")]):
        result = invoke(args)
        assert result.exit_code == 2 and "permission denied" in result.stderr, result.stderr
        assert "missing" not in result.stderr and "No such file" not in result.stderr
