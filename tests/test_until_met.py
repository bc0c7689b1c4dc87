"""Training that stops when its target holds (``--until-met``), and the guard that raises the realism weights.

- ``--until-met`` stops at the first evaluation whose reading meets every target without junk and whose second,
  fresh batch does too; it records where, and never runs past ``--steps``;
- a run whose target is never met runs all its steps and says so;
- ``--guard realism`` doubles the realism weight of the energies that have one at each reading that made junk,
  records the factor, and a resumed run continues at it.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from promptgen.artifacts.prompt import load_prompt
from promptgen.cli import app
from promptgen.composing import compose
from promptgen.core.registry import build_registry
from promptgen.training.checkpoint import load_checkpoint
from promptgen.training.loop import TrainingRun
from promptgen.training.trainer import TrainConfig
from promptgen.training.watch import MAX_REALISM_FACTOR
from tests.test_realism import FoolPlugin

runner = CliRunner()
SMALL = ["--transforms", "2", "--hidden", "32", "--batch-size", "32", "-q"]


def test_until_met_stops_at_the_first_evaluation_met_twice_and_records_it(tmp_path):
    out = tmp_path / "three"
    args = ["compose", "--energy", "classifier:digit=3", "--steps", "300", "--eval-every", "20", "--eval-batch", "200",
            "--check-samples", "400", "--until-met", *SMALL, "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    t = load_prompt(out).manifest.training
    assert t.config.until_met and t.stopped_at is not None and t.stopped_at < 300 and t.stopped_at % 20 == 0
    # It stopped on the evaluation that met every target, confirmed by a second batch of other noise.
    last = t.watch[-1]
    assert last.step == t.stopped_at and last.confirmed
    assert t.confirmation is not None and t.confirmation.confirmed and t.confirmation.step == t.stopped_at
    assert t.confirmation.n == 200 and t.confirmation.targets[0].value != last.targets[0].value  # other samples
    # No evaluation before it met the targets twice: each earlier one missed on the evaluation's samples, or was not
    # confirmed by the second batch (then the run went on).
    assert all(r.step < t.stopped_at for r in t.watch[:-1])
    assert t.history[-1]["step"] == t.stopped_at and len(t.step_history) == t.stopped_at
    assert f"stopped at step {t.stopped_at} of 300" in " ".join(result.output.split())
    assert "✓ target met" in result.output  # the closing check, on 400 fresh samples, agrees
    info = runner.invoke(app, ["info", str(out)])
    assert f"stopped at step {t.stopped_at} of 300" in " ".join(info.output.split())


def test_until_met_runs_every_step_when_the_target_is_never_met(tmp_path):
    # The fooled prompt meets its digit share by making junk: never met, so it trains to the end and says so.
    reg = build_registry(extra_plugins=[("fool", FoolPlugin())])
    out = tmp_path / "fooled"
    train = TrainConfig(steps=60, batch_size=32, warmup=0.1, eval_every=20, eval_batch=200, guard="off", until_met=True,
                        check_samples=200)
    prompt = compose("blend", ["classifier:digit=3,model=gullible"], out, train=train, flow={"transforms": 2, "hidden": 32},
                     registry=reg, progress=False, preview=0)
    t = prompt.manifest.training
    assert t.stopped_at is None and t.confirmation is None
    assert [r.step for r in t.watch] == [0, 20, 40, 60] and not t.watch[-1].met
    assert len(t.step_history) == 60


def test_the_realism_guard_doubles_the_realism_weights_on_junk_and_a_resumed_run_continues_at_its_factor(tmp_path, monkeypatch):
    reg = build_registry(extra_plugins=[("fool", FoolPlugin())])
    # Two energies: the gullible control, which makes the junk, and the built-in control's "is a digit" term at
    # realism 0.5, the one the guard can raise. guard=realism doubles it at each reading that made junk.
    energies = ["classifier:digit=3,model=gullible", "classifier:digit!=9,realism=0.5@0.1"]
    train = TrainConfig(steps=80, batch_size=32, warmup=0.1, eval_every=10, eval_batch=200, check_samples=200,
                        checkpoint_every=40, guard="realism")
    kw = {"flow": {"transforms": 2, "hidden": 32}, "registry": reg, "progress": False, "preview": 0}
    whole = compose("blend", energies, tmp_path / "whole", train=train, **kw).manifest.training
    unhealthy = [r.step for r in whole.watch[1:] if not r.healthy]
    assert unhealthy
    assert whole.realism_factor == min(2.0 ** len(unhealthy), MAX_REALISM_FACTOR)
    # Interrupted after the step-40 checkpoint, then resumed: it continues at the factor it had reached.
    real_after, real_begin = TrainingRun.after_step, TrainingRun._begin

    def crash(self, step, *args):
        real_after(self, step, *args)
        if step == 50:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainingRun, "after_step", crash)
    with pytest.raises(KeyboardInterrupt):
        compose("blend", energies, tmp_path / "cut", train=train, **kw)
    at_40 = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["realism_factor"]
    assert at_40 == min(2.0 ** sum(s <= 40 for s in unhealthy), MAX_REALISM_FACTOR)
    seen: list[float] = []

    def spy(self, state):
        real_begin(self, state)
        seen.append(self.ebm.terms[1].energy.realism)

    monkeypatch.setattr(TrainingRun, "after_step", real_after)
    monkeypatch.setattr(TrainingRun, "_begin", spy)
    resumed = compose(None, None, tmp_path / "cut", resume=True, progress=False, registry=reg).manifest.training
    assert seen == [0.5 * at_40]
    assert resumed.resumed_at == [40] and resumed.realism_factor == whole.realism_factor


def test_the_cli_says_what_the_realism_guard_did(tmp_path, monkeypatch):
    reg = build_registry(extra_plugins=[("fool", FoolPlugin())])
    monkeypatch.setattr("promptgen.core.registry._REGISTRY", reg)
    args = ["compose", "--gen", "blend", "--energy", "classifier:digit=3,model=gullible", "--energy", "classifier:digit!=9,realism=0.5@0.1",
            "--steps", "80", "--warmup", "0.1", "--eval-every", "10", "--eval-batch", "200", "--check-samples", "200",
            "--guard", "realism", *SMALL, "--out", str(tmp_path / "p")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    factor = load_prompt(tmp_path / "p", reg).manifest.training.realism_factor
    assert factor > 1 and f"raised to {factor:g} times their own" in " ".join(result.output.split())
    info = runner.invoke(app, ["info", str(tmp_path / "p")])
    assert f"raised the realism weights to {factor:g} times" in " ".join(info.output.split())
