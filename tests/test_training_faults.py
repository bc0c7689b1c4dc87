"""Training that survives faults: non-finite steps, kill -9 and --resume, several processes (issue 6)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.composing import compose
from promptgen.core.errors import PromptgenError
from promptgen.core.hooks import hookimpl
from promptgen.core.registry import EnergyEntry, build_registry
from promptgen.testing import one_line_error
from promptgen.training.trainer import TrainConfig, TrainingDiverged

runner = CliRunner()


class NaNAt:
    """An energy that is NaN on the training steps it is told (one call per step when eval_every > steps)."""

    default_weight = 1.0
    needs_fit = False

    def __init__(self, bad: set[int]) -> None:
        self.bad, self.calls, self.label = bad, 0, "nan-at"

    def fit(self, base):
        return {}

    def __call__(self, images, latents):
        self.calls += 1
        e = (images.flatten(1).mean(1) - 0.2).square()
        return e * float("nan") if self.calls in self.bad else e

    def to(self, device):
        return self


def registry_with(energy: NaNAt):
    class Plugin:
        @hookimpl
        def promptgen_energies(self):
            return [EnergyEntry("nan-at", lambda spec, options, registry: energy)]

    return build_registry(extra_plugins=[("nan-at-test", Plugin())])


def train(tmp_path: Path, bad: set[int], steps: int = 30, **config) -> tuple[object, NaNAt]:
    energy = NaNAt(bad)
    cfg = TrainConfig(steps=steps, batch_size=8, eval_every=1000, eval_batch=8, warmup=0.0, **config)
    prompt = compose("mnist", ["nan-at"], tmp_path / "p", train=cfg, registry=registry_with(energy), progress=False, preview=0)
    return prompt, energy


def finite_weights(folder: Path) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in load_file(folder / "flow.safetensors").values() if t.is_floating_point())


def test_non_finite_steps_are_skipped_and_counted(tmp_path):
    prompt, _ = train(tmp_path, bad={5, 6, 17})
    t = prompt.manifest.training
    assert t.skipped_steps == 3 and t.rollbacks == 0
    assert finite_weights(prompt.path)
    # The same run without the bad steps moves the flow on those steps: skipping really skipped them.
    clean, _ = train(tmp_path / "clean", bad=set())
    a, b = load_file(prompt.path / "flow.safetensors"), load_file(clean.path / "flow.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_repeated_failures_roll_back_at_half_the_rate(tmp_path):
    prompt, _ = train(tmp_path, bad=set(range(8, 8 + 4)), max_bad_steps=4, checkpoint_every=5)
    t = prompt.manifest.training
    assert t.skipped_steps == 4 and t.rollbacks == 1
    assert finite_weights(prompt.path)


def test_persistent_failures_stop_with_one_line_and_save_nothing(tmp_path):
    with pytest.raises(TrainingDiverged) as e:
        train(tmp_path, bad=set(range(3, 1000)), max_bad_steps=3, max_rollbacks=2)
    assert "diverged" in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, PromptgenError)
    assert not (tmp_path / "p" / "manifest.json").exists() and not (tmp_path / "p" / "flow.safetensors").exists()


def test_a_run_whose_every_step_was_skipped_saves_nothing(tmp_path):
    """Fewer bad steps than a rollback needs, but no good one: the flow never moved, so it is not saved as trained."""
    with pytest.raises(TrainingDiverged) as e:
        train(tmp_path, bad=set(range(2, 1000)), steps=3)
    assert "all 3 steps" in str(e.value) and "nothing was saved" in str(e.value)
    assert not (tmp_path / "p" / "manifest.json").exists() and not (tmp_path / "p" / "flow.safetensors").exists()
    prompt, _ = train(tmp_path / "one-good", bad=set(range(2, 4)), steps=3)  # one good step is enough
    assert prompt.manifest.training.skipped_steps == 2


# --- kill -9 and --resume ---------------------------------------------------------------------------------

ARGS = ["--gen", "mnist", "--energy", "debias:thickness,refit=4", "--energy", "classifier:digit=3",
        "--steps", "48", "--batch-size", "16", "--checkpoint-every", "2", "--eval-every", "8", "--eval-batch", "32", "-q"]


def cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same arithmetic in every run
    return subprocess.Popen([sys.executable, "-m", "promptgen", "compose", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def comparable(folder: Path) -> tuple[dict, dict]:
    m = json.loads((folder / "manifest.json").read_text())
    t = m["training"]
    for k in ("seconds", "resumed_at", "checkpoint_seconds"):
        t.pop(k)
    for row in t["history"]:
        row.pop("seconds")
    m.pop("created", None)
    return m, load_file(folder / "flow.safetensors")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    p = cli(*ARGS, "--out", str(out))
    assert p.wait(timeout=600) == 0, p.stderr.read()
    return comparable(out)


@pytest.mark.parametrize("trial", range(3))
def test_kill_9_at_random_moments_then_resume_gives_the_same_artifact(tmp_path, reference, trial):
    rng = random.Random(trial)
    out = tmp_path / "run"
    p = cli(*ARGS, "--out", str(out))
    kills = 0
    # Kill once or twice, each time at a random moment after the first checkpoint exists (writes every 2 steps,
    # so some kills land while one is being written).
    for _ in range(1 + trial % 2):
        deadline = time.time() + 300
        while not (out / "checkpoint.pt").exists() and p.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
            kills += 1
            assert not (out / "manifest.json").exists()
            p = cli("--resume", str(out))
    assert p.wait(timeout=600) == 0, p.stderr.read()
    manifest, weights = comparable(out)
    ref_manifest, ref_weights = reference
    assert weights.keys() == ref_weights.keys()
    assert all(torch.equal(weights[k], ref_weights[k]) for k in weights)
    assert manifest == ref_manifest
    assert kills >= 1 or trial > 0  # the first trial must have been interrupted to mean anything
    assert not list(out.glob(".checkpoint.pt.*.tmp"))


def test_a_half_written_checkpoint_never_replaces_the_good_one(tmp_path, reference):
    out = tmp_path / "run"
    p = cli(*ARGS, "--out", str(out))
    while not (out / "checkpoint.pt").exists() and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    # What a kill in the middle of torch.save leaves: a partial temporary file beside the checkpoint.
    good = (out / "checkpoint.pt").read_bytes()
    (out / ".checkpoint.pt.abc123.tmp").write_bytes(good[: len(good) // 3])
    p = cli("--resume", str(out))
    assert p.wait(timeout=600) == 0, p.stderr.read()
    assert not (out / ".checkpoint.pt.abc123.tmp").exists()
    manifest, weights = comparable(out)
    assert all(torch.equal(weights[k], reference[1][k]) for k in weights) and manifest == reference[0]


def test_resume_mistakes_get_one_line(tmp_path):
    one_line_error(runner.invoke(app, ["compose", "--resume", str(tmp_path / "nope")]), "not a folder")
    (tmp_path / "empty").mkdir()
    one_line_error(runner.invoke(app, ["compose", "--resume", str(tmp_path / "empty")]), "run.json")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{broken")
    one_line_error(runner.invoke(app, ["compose", "--resume", str(tmp_path / "run")]), "damaged")
    one_line_error(runner.invoke(app, ["compose", "--resume", str(tmp_path / "run"), "--energy", "classifier:digit=3"]), "drop --energy")


# --- several processes -------------------------------------------------------------------------------------

DDP_ARGS = ["--gen", "mnist", "--energy", "classifier:digit=3", "--steps", "12", "--batch-size", "16",
            "--eval-every", "6", "--eval-batch", "32", "-q", "--seed", "3"]


def test_torchrun_with_two_processes_matches_one_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "promptgen", "compose", *DDP_ARGS, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "promptgen",
                          "compose", *DDP_ARGS, "--out", str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert two.returncode == 0, two.stderr[-3000:]
    # One artifact, written once.
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    a, b = load_file(tmp_path / "one" / "flow.safetensors"), load_file(tmp_path / "two" / "flow.safetensors")
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < 1e-4, worst  # the same steps up to the order of floating-point sums
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["training"]["processes"] == 2
    # And the --nproc shortcut does the same.
    three = subprocess.run([sys.executable, "-m", "promptgen", "compose", *DDP_ARGS, "--nproc", "2", "--out", str(tmp_path / "three")],
                           capture_output=True, text=True, env=env, timeout=600, check=False)
    assert three.returncode == 0, three.stderr[-3000:]
    c = load_file(tmp_path / "three" / "flow.safetensors")
    assert all(torch.equal(b[k], c[k]) for k in b)


def one_and_two_processes(args: list[str], tmp_path: Path) -> tuple[dict, dict]:
    """``compose *args`` in one process (``tmp_path/one``) and with ``--nproc 2`` (``tmp_path/two``): both flows' weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "promptgen", "compose", *args, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "promptgen", "compose", *args, "--nproc", "2", "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    assert two.returncode == 0, two.stderr[-3000:]
    return load_file(tmp_path / "one" / "flow.safetensors"), load_file(tmp_path / "two" / "flow.safetensors")


def test_torchrun_runs_mode_auto_and_the_guard_as_one_process_does(tmp_path):
    # Only the main process watches: its guard's decisions (back-off, the flow kept) and the closing check's reading,
    # which decides whether the mixture is trained too, must be every process's, or the processes part ways and hang.
    args = ["--gen", "mnist", "--energy", "debias:digit=0.4/0.3/0.05/0.05/0.05/0.05/0.025/0.025/0.025/0.025", "--steps", "8", "--batch-size", "16", "--eval-every", "2",
            "--eval-batch", "32", "--check-samples", "64", "--guard", "back-off", "-q", "--seed", "4"]
    a, b = one_and_two_processes(args, tmp_path)
    m1, m2 = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("one", "two"))
    assert [(t["mode"], t["chosen"]) for t in m2["trials"]] == [(t["mode"], t["chosen"]) for t in m1["trials"]]
    assert len(m1["trials"]) == 2  # 8 steps miss the target: the mixture was trained too, in both processes
    assert m2["training"]["kept_step"] == m1["training"]["kept_step"]
    # The same steps up to the order of floating-point sums, which Adam can turn into up to lr per step (16 steps).
    assert a.keys() == b.keys() and max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 16e-3


def test_torchrun_trains_a_conditional_prompt_as_one_process_does(tmp_path):
    # Each process draws the whole batch's conditions and keeps its slice; the twins go through DDP in the same pass.
    args = ["--gen", "mnist", "--energy", "slant", "--energy", "digit-id", "--cond", "slant=-0.3:0.3", "--steps", "6",
            "--batch-size", "8", "--eval-every", "3", "--eval-batch", "8", "-q", "--seed", "2"]
    a, b = one_and_two_processes(args, tmp_path)
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 1e-4
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["training"]["processes"] == 2 and [c["name"] for c in manifest["conditions"]] == ["slant"]


def test_energy_labels_are_shown_literally_in_progress_bars(tmp_path):
    # A label such as "[/red]" (from a spec or a stranger's manifest) must not break rich's markup.
    from rich.console import Console

    energy = NaNAt(set())
    energy.label = "nan-at[/red][bold]x"
    console = Console(record=True, width=200, force_terminal=False)
    cfg = TrainConfig(steps=5, batch_size=8, eval_every=1000, eval_batch=8, warmup=0.0)
    compose("mnist", ["nan-at"], tmp_path / "p", train=cfg, registry=registry_with(energy), progress=True, preview=0, console=console)
    assert "nan-at[/red][bold]x" in console.export_text()


def test_nproc_mistakes_are_one_line_before_any_process_starts(tmp_path):
    out = tmp_path / "x"
    one_line_error(runner.invoke(app, ["compose", "--energy", "classifier:digit=3", "--batch-size", "15", "--nproc", "2", "--out", str(out)]),
                   "--batch-size 15", "multiple of 2")
    one_line_error(runner.invoke(app, ["compose", "--energy", "clasifier:digit=3", "--nproc", "2", "--out", str(out)]), "did you mean 'classifier'")
    assert not out.exists()
