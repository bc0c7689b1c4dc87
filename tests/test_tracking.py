"""Experiment logging (issue 26): every step's loss and energy terms and each evaluation's figures and samples go to
TensorBoard or Weights & Biases, and the manifest keeps every step's loss in ``training.step_history``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.composing import compose
from promptgen.core.errors import ArtifactError, SpecError
from promptgen.core.hooks import hookimpl
from promptgen.core.registry import EnergyEntry, build_registry
from promptgen.testing import one_line_error
from promptgen.training.config import TrainConfig, TrainingSummary
from promptgen.training.tracking import (
    WANDB_ID,
    NoTracker,
    StepHistory,
    WandbTracker,
    choose_backend,
    open_tracker,
)

runner = CliRunner()
LABEL = "classifier:digit=3"
TINY = [
    "--steps",
    "7",
    "--batch-size",
    "8",
    "--eval-every",
    "3",
    "--eval-batch",
    "16",
    "--check-samples",
    "0",
    "--transforms",
    "2",
    "--hidden",
    "16",
]


def events(folder: Path):
    """Everything TensorBoard shows of the run logged in ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def steps_of(acc, tag: str) -> list[int]:
    return [e.step for e in acc.Scalars(tag)]


# --- TensorBoard, end to end ------------------------------------------------------------------------------------


def test_compose_logs_every_step_and_each_evaluation_to_tensorboard(tmp_path):
    out = tmp_path / "three"
    result = runner.invoke(app, ["compose", "--energy", LABEL, *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    # auto: TensorBoard is installed (the test extra), so it logs, and says where in one line.
    assert f"logging to {out / 'logs'}" in result.output
    acc = events(out / "logs")
    # Every step's loss and energy term, and the learning rate.
    for tag in ("train/loss", f"train/{LABEL}", "train/lr"):
        assert steps_of(acc, tag) == list(range(1, 8)), tag
    # Each evaluation (every 3 steps and the last): the evaluation's figures, the watch's and a sample grid.
    for tag in (
        "eval/loss",
        f"eval/{LABEL}",
        "eval/prior",
        "eval/log_det",
        "watch/junk",
        "watch/generator_junk",
        f"watch/{LABEL} digit share",
    ):
        assert steps_of(acc, tag)[-3:] == [3, 6, 7], tag
    assert steps_of(acc, "watch/junk") == [0, 3, 6, 7]  # step 0: the generator's own reading
    grids = acc.Images("samples")
    assert [g.step for g in grids] == [3, 6, 7]
    assert grids[0].width > 4 * 28 and grids[0].height > 4 * 28  # a grid of 16 digits, not one

    # The manifest keeps the same per-step numbers, step by step.
    m = json.loads((out / "manifest.json").read_text())
    history = m["training"]["step_history"]
    assert [h["step"] for h in history] == [float(s) for s in range(1, 8)]
    assert all(set(h) == {"step", "loss", LABEL} for h in history)
    logged = {e.step: e.value for e in acc.Scalars("train/loss")}
    for h in history:
        assert math.isclose(h["loss"], logged[int(h["step"])], rel_tol=1e-5)
    junk = {e.step: e.value for e in acc.Scalars("watch/junk")}
    assert all(math.isclose(junk[r["step"]], r["junk"], rel_tol=1e-6) for r in m["training"]["watch"])


def test_log_none_and_log_dir(tmp_path):
    result = runner.invoke(
        app, ["compose", "--energy", LABEL, *TINY, "--steps", "2", "--log", "none", "--out", str(tmp_path / "a"), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "a" / "logs").exists()
    # --log-dir: the logs go there, and run.json keeps it (absolute) for --resume.
    elsewhere = tmp_path / "tb"
    result = runner.invoke(
        app,
        [
            "compose",
            "--energy",
            LABEL,
            *TINY,
            "--steps",
            "2",
            "--log",
            "tensorboard",
            "--log-dir",
            str(elsewhere),
            "--out",
            str(tmp_path / "b"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "b" / "logs").exists()
    assert steps_of(events(elsewhere), "train/loss") == [1, 2]
    assert json.loads((tmp_path / "b" / "run.json").read_text())["train"]["log_dir"] == str(elsewhere.absolute())


# --- resume continues the log -----------------------------------------------------------------------------------


class FailsAt:
    """An energy that raises on its ``fail``-th batch (one a step while no evaluation runs; compose's check of the
    energy, on two images, does not count): a run that stops after its last checkpoint, as a killed one does."""

    default_weight = 1.0
    needs_fit = False

    def __init__(self, fail: int | None) -> None:
        self.fail, self.calls, self.label = fail, 0, "fails-at"

    def fit(self, base):
        return {}

    def __call__(self, images, latents):
        self.calls += images.shape[0] > 2
        if self.calls == self.fail:
            raise RuntimeError("stopped")
        return (images.flatten(1).mean(1) - 0.2).square()

    def to(self, device):
        return self


def registry_with(energy: FailsAt):
    class Plugin:
        @hookimpl
        def promptgen_energies(self):
            return [EnergyEntry("fails-at", lambda spec, options, registry: energy)]

    return build_registry(extra_plugins=[("fails-at-test", Plugin())])


def test_resume_continues_the_same_log_without_the_steps_it_takes_again(tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(
        steps=10, batch_size=8, eval_every=1000, eval_batch=8, checkpoint_every=3, check_samples=0, log="tensorboard"
    )
    # Steps 1-7 are logged, the checkpoint is at step 6, step 8 fails: the resumed run takes step 7 again.
    with pytest.raises(RuntimeError, match="stopped"):
        compose(
            "mnist",
            ["fails-at"],
            out,
            train=config,
            flow={"transforms": 2, "hidden": 16},
            registry=registry_with(FailsAt(8)),
            progress=False,
            preview=0,
        )
    assert steps_of(events(out / "logs"), "train/loss") == list(range(1, 8))
    prompt = compose(None, None, out, resume=True, registry=registry_with(FailsAt(None)), progress=False)
    assert prompt.manifest.training.resumed_at == [6]
    acc = events(out / "logs")
    assert len(list((out / "logs").glob("events.out.tfevents.*"))) == 2  # the same folder, a file per process
    # Each step once: the stale step 7 of the stopped process is purged, the resumed run's shown.
    assert steps_of(acc, "train/loss") == list(range(1, 11))
    assert steps_of(acc, "train/fails-at") == list(range(1, 11))
    assert steps_of(acc, "watch/junk") == [0, 10]
    # The manifest's history holds the steps before the checkpoint (from it) and after.
    history = prompt.manifest.training.step_history
    assert [h["step"] for h in history] == [float(s) for s in range(1, 11)]
    logged = {e.step: e.value for e in acc.Scalars("train/loss")}
    assert all(math.isclose(h["loss"], logged[int(h["step"])], rel_tol=1e-5) for h in history)


# --- Weights & Biases, through a stand-in module -----------------------------------------------------------------


class FakeWandb(types.ModuleType):
    """What promptgen calls of ``wandb``, recorded."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.inits: list[dict] = []
        self.logged: list[tuple[int, dict]] = []
        self.finished = 0
        fake = self

        class Image:
            def __init__(self, data) -> None:
                self.data = data

        class Run:
            def log(self, data: dict, step: int) -> None:
                fake.logged.append((step, data))

            def finish(self) -> None:
                fake.finished += 1

        self.Image = Image
        self._run = Run

    def init(self, **kwargs):
        self.inits.append(kwargs)
        return self._run()


@pytest.fixture
def fake_wandb(monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    monkeypatch.delenv("WANDB_NAME", raising=False)
    return fake


def test_compose_logs_to_wandb(tmp_path, fake_wandb):
    out = tmp_path / "three"
    result = runner.invoke(app, ["compose", "--energy", LABEL, *TINY, "--log", "wandb", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert len(fake_wandb.inits) == 1 and fake_wandb.finished == 1
    init = fake_wandb.inits[0]
    assert init["project"] == "promptgen" and init["name"] == "three" and init["dir"] == str(out / "logs")
    assert init["id"] == (out / "logs" / WANDB_ID).read_text().strip() and init["resume"] == "allow"
    assert init["config"]["steps"] == 7 and init["config"]["log"] == "wandb"
    by_step: dict[int, set[str]] = {}
    for step, data in fake_wandb.logged:
        by_step.setdefault(step, set()).update(data)
    assert sorted(by_step) == list(range(8))
    for step in range(1, 8):
        assert {"train/loss", f"train/{LABEL}", "train/lr"} <= by_step[step]
        assert ("eval/loss" in by_step[step]) == (step in (3, 6, 7))
        assert ("samples" in by_step[step]) == (step in (3, 6, 7))
    assert "watch/junk" in by_step[0] and "watch/junk" in by_step[7]
    grid = next(d["samples"] for s, d in fake_wandb.logged if "samples" in d)
    assert isinstance(grid, fake_wandb.Image) and grid.data.ndim == 3 and grid.data.shape[2] == 3
    steps = [s for s, d in fake_wandb.logged if "train/loss" in d]
    assert steps == sorted(steps)  # wandb drops a step logged after a later one


def test_wandb_resume_continues_its_run_and_a_new_run_starts_another(tmp_path, fake_wandb, monkeypatch):
    WandbTracker(tmp_path, 1, name="a").close()
    WandbTracker(tmp_path, 7, name="a").close()
    WandbTracker(tmp_path, 1, name="a").close()
    first, resumed, fresh = (i["id"] for i in fake_wandb.inits)
    assert resumed == first and fresh != first and fake_wandb.finished == 3
    monkeypatch.setenv("WANDB_PROJECT", "elsewhere")
    WandbTracker(tmp_path, 1, name="a").close()
    assert fake_wandb.inits[-1]["project"] == "elsewhere"


# --- what is not installed ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["tensorboard", "wandb"])
def test_a_tracker_that_is_not_installed_is_one_line_before_anything_starts(tmp_path, monkeypatch, backend):
    monkeypatch.setitem(sys.modules, backend, None)  # as if not installed
    out = tmp_path / "p"
    one_line_error(
        runner.invoke(app, ["compose", "--energy", LABEL, "--log", backend, "--out", str(out)]),
        f"pip install {backend} ",
        "--log none",
    )
    assert not out.exists()
    with pytest.raises(SpecError, match=f"pip install {backend} "):
        choose_backend(backend)


def test_auto_without_tensorboard_logs_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    assert choose_backend("auto") == "none"
    assert isinstance(open_tracker("auto", tmp_path / "logs"), NoTracker)
    assert not (tmp_path / "logs").exists()


def test_resume_of_a_run_that_logs_to_a_missing_tracker(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    request = {"generator": "mnist", "energies": [LABEL], "train": {"steps": 2, "log": "wandb"}}
    (out / "run.json").write_text(json.dumps(request))
    monkeypatch.setitem(sys.modules, "wandb", None)
    one_line_error(runner.invoke(app, ["compose", "--resume", str(out)]), "pip install wandb ")
    one_line_error(runner.invoke(app, ["compose", "--resume", str(out), "--log", "none"]), "drop --log")


# --- several processes ---------------------------------------------------------------------------------------------


def test_only_the_main_process_logs_and_the_history_is_the_whole_batchs(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [
        "--energy",
        LABEL,
        "--steps",
        "4",
        "--batch-size",
        "8",
        "--eval-every",
        "2",
        "--eval-batch",
        "8",
        "--check-samples",
        "0",
        "--transforms",
        "2",
        "--hidden",
        "16",
        "-q",
        "--seed",
        "3",
    ]
    for name, extra in (("one", []), ("two", ["--nproc", "2"])):
        proc = subprocess.run(
            [sys.executable, "-m", "promptgen", "compose", *args, *extra, "--out", str(tmp_path / name)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
            cwd=tmp_path,  # torchrun's processes leave the current folder off their import path
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((tmp_path / "two" / "logs").glob("events.out.tfevents.*"))) == 1
    assert steps_of(events(tmp_path / "two" / "logs"), "train/loss") == [1, 2, 3, 4]
    one, two = (
        json.loads((tmp_path / d / "manifest.json").read_text())["training"]["step_history"] for d in ("one", "two")
    )
    assert [h["step"] for h in two] == [1.0, 2.0, 3.0, 4.0]
    # Each process's slice averaged over both: the same numbers as one process, up to the order of sums.
    for a, b in zip(one, two, strict=True):
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-3) and math.isclose(
            a[LABEL], b[LABEL], rel_tol=1e-3, abs_tol=1e-4
        )


# --- the manifest's step history ----------------------------------------------------------------------------------


def test_step_history_keeps_every_step_up_to_its_limit_then_averages_windows():
    h = StepHistory(limit=2000)
    for step in range(1, 2001):
        h.add(step, {"loss": 2.0 * step, "term": 1.0})
    points = h.points()
    assert [p["step"] for p in points] == [float(s) for s in range(1, 2001)]
    for step in range(2001, 5001):
        h.add(step, {"loss": 2.0 * step, "term": 1.0})
    points = h.points()
    assert 1000 <= len(points) <= 2000
    assert points[0]["step"] == 2.5 and points[-1]["step"] == 4998.5  # windows of 4 steps: 1-4 ... 4997-5000
    for p in points:  # each point the mean of its window
        assert p["loss"] == pytest.approx(2 * p["step"], rel=1e-5) and p["term"] == 1.0
    long = StepHistory()
    for step in range(1, 100_001):
        long.add(step, {"loss": 1.0})
    assert 1000 <= len(long.points()) <= 2000
    assert len(json.dumps(long.points())) < 100_000  # the manifest stays small


def test_step_history_leaves_out_skipped_steps_and_numbers_that_are_not_finite():
    h = StepHistory(limit=4)
    h.add(1, {"loss": 1.0, "term": float("nan")})
    h.add(3, {"loss": 3.0, "term": 5.0})  # step 2 was skipped
    assert h.points() == [{"step": 1.0, "loss": 1.0}, {"step": 3.0, "loss": 3.0, "term": 5.0}]
    for step in range(4, 10):
        h.add(step, {"loss": float(step)})
    first = h.points()[0]  # the window of steps 1-4: steps 1, 3 and 4 in the loss, step 3 alone in the term
    assert first["step"] == first["loss"] == pytest.approx(8 / 3, rel=1e-5) and first["term"] == 5.0
    assert len(h.points()) <= 4


def test_step_history_survives_a_checkpoint():
    whole, first = StepHistory(limit=8), StepHistory(limit=8)
    for step in range(1, 30):
        whole.add(step, {"loss": step * 0.5})
        if step <= 13:
            first.add(step, {"loss": step * 0.5})
    again = StepHistory.restore(first.state())
    for step in range(14, 30):
        again.add(step, {"loss": step * 0.5})
    assert again.points() == whole.points()
    for bad in (
        None,
        {"limit": 8},
        {"limit": 8, "width": 1, "windows": [[0, 1, 1, {"loss": ["x", 1]}]]},
        {"limit": 8, "width": 1, "windows": [[1, 1, 2, {}], [0, 1, 1, {}]]},
    ):
        with pytest.raises(ArtifactError, match="step_history"):
            StepHistory.restore(bad)


def test_a_manifest_written_before_step_history_still_reads():
    summary = {"config": {"steps": 3}, "device": "cpu", "seconds": 1.0, "final_loss": 0.5, "final_terms": {}}
    assert TrainingSummary.model_validate(summary).step_history == []
    assert TrainConfig.model_validate({"steps": 3}).log == "auto"


def test_a_checkpoint_written_before_the_logging_settings_still_resumes():
    """Settings added since a checkpoint was written take their defaults when compose --resume compares them."""
    from promptgen.composing.workflow import _same_settings

    train = TrainConfig(steps=5)
    old = {k: v for k, v in train.model_dump(mode="json").items() if k not in ("log", "log_dir")}
    assert _same_settings(old, train)
    assert not _same_settings({**old, "steps": 6}, train)
    assert not _same_settings({"steps": "many"}, train) and not _same_settings(None, train)
