"""``mode=auto`` decided by outcome: each mode trained for a short budget on this generator, the better kept.

A rule fitted on the generators promptgen trained (the mixture when some class is drawn at under half its share)
failed on a stranger's MLP GAN: the mixture it chose there made blobs. So ``auto`` no longer predicts; it
measures. For each energy still undecided after its fit (``Settling`` with ``mode == "auto"``), compose trains a
flow in each mode for :func:`trial_steps` steps, from the same fit and the same seed, and reads both with the
watch on the same fresh noise (:mod:`promptgen.composing.watch`). The better reading wins:

1. a reading whose junk stayed within the margin beats one whose junk rose;
2. between two such, the lower score (the judged targets' shortfalls: KL to the target distribution);
3. between two whose junk rose, the lower junk rate;
4. a tie keeps the tilt, which stays closer to the generator's own images.

The full run then trains the winner from the start. The trials are recorded in the manifest, and advice never
points back at the mode that lost (:meth:`~promptgen.energies.debias_energy.DebiasEnergy.advice`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from rich.console import Console

from promptgen.core.conditions import ConditionRange, draw_conditions
from promptgen.training.config import TrainConfig
from promptgen.training.ebm import EnergyBasedModel, WeightedEnergy
from promptgen.training.fitting import Prefit, energy_states
from promptgen.training.flow import CouplingFlow
from promptgen.training.loop import decode_images, flow_images
from promptgen.training.resume import load_energy_states
from promptgen.training.trainer import train_flow
from promptgen.training.watch import TrialRecord, better

#: The modes a trial compares, the tilt first (it wins ties).
MODES = ("tilt", "mixture")
#: Share of the run's steps each trial trains, and the least it trains.
TRIAL_SHARE = 0.25
MIN_TRIAL_STEPS = 50
#: Samples each trial is read on (fresh noise, the same for both).
TRIAL_SAMPLES = 512


def trial_steps(steps: int) -> int:
    """Steps of each trial for a run of ``steps``: a quarter, at least :data:`MIN_TRIAL_STEPS`, at most the run.

    >>> trial_steps(800), trial_steps(40), trial_steps(100)
    (200, 40, 50)
    """
    return min(steps, max(MIN_TRIAL_STEPS, round(TRIAL_SHARE * steps)))


def undecided(terms: list[WeightedEnergy]) -> list[WeightedEnergy]:
    """The terms whose mode is still ``auto`` after their fit."""
    return [t for t in terms if t.caps.settling and getattr(t.energy, "mode", None) == "auto"]


@dataclass
class TrialSetup:
    """What a trial needs to build and train a flow like the run's."""

    build_flow: Callable[[], CouplingFlow]
    train: TrainConfig
    device: torch.device
    fitted: Prefit
    conditions: list[ConditionRange]


def choose_modes(
    ebm: EnergyBasedModel, setup: TrialSetup, watch, *, console: Console | None = None, progress: bool = True
) -> list[TrialRecord]:
    """Decide every undecided term's mode by trials; returns the trials, the chosen ones marked.

    The energies end settled on the chosen modes, in the state of their fit (a trial's closed loop leaves no
    trace), and the noise generator of ``setup.fitted`` is untouched, so the full run is the one it would
    have been with the chosen mode given.
    """
    records: list[TrialRecord] = []
    fitted_states = energy_states(ebm)
    steps = trial_steps(setup.train.steps)
    config = setup.train.model_copy(update={"steps": steps, "checkpoint_every": steps})
    g = torch.Generator().manual_seed(setup.train.seed + 1)
    eps = torch.randn((TRIAL_SAMPLES, *ebm.generator.latent_shape), generator=g).to(setup.device)
    condition = draw_conditions(setup.conditions, TRIAL_SAMPLES, g).to(setup.device) if setup.conditions else None
    for term in undecided(ebm.terms):
        trials: list[TrialRecord] = []
        for mode in MODES:
            term.energy.settle_mode(mode)
            load_energy_states(ebm.terms, fitted_states, "the fit")
            flow = setup.build_flow()
            t0 = time.perf_counter()
            if console is not None and progress:
                console.print(f"mode=auto: trying {term.label} as the {mode} for {steps} steps", highlight=False)
            train_flow(ebm, flow, config, device=setup.device, console=console, progress=progress,
                       fitted=Prefit(setup.fitted.fits, setup.fitted.generator_state, 0.0), watch=None)
            watch.baseline(decode_images(ebm, eps))
            reading = watch.read(flow_images(ebm, flow, eps, condition), steps)
            trials.append(TrialRecord(energy=term.label, mode=mode, steps=steps, seconds=time.perf_counter() - t0, reading=reading))
        best = trials[0]
        for trial in trials[1:]:
            if better(trial.reading, best.reading):
                best = trial
        best.chosen = True
        term.energy.settle_mode(best.mode)
        load_energy_states(ebm.terms, fitted_states, "the fit")
        records += trials
    return records


def describe(records: list[TrialRecord]) -> list[str]:
    """One line per decided energy: what each trial read and which was kept."""
    lines = []
    for label in dict.fromkeys(r.energy for r in records):
        parts = []
        chosen = ""
        for r in (r for r in records if r.energy == label):
            figures = ", ".join(f"{t.attribute} KL {t.value:.3f}" if t.kind == "kl" else f"{t.value:.0%} {t.attribute}" for t in r.reading.targets)
            junk = f", junk {r.reading.junk:.1%}" if r.reading.junk is not None else ""
            parts.append(f"the {r.mode} {figures or f'score {r.reading.score:.3g}'}{junk}")
            if r.chosen:
                chosen = r.mode
        steps = records[0].steps
        lines.append(f"{label}: mode=auto tried {' and '.join(parts)} ({steps} steps each; judged on {TRIAL_SAMPLES} samples): kept the {chosen}")
    return lines


__all__ = ["MIN_TRIAL_STEPS", "MODES", "TRIAL_SAMPLES", "TRIAL_SHARE", "TrialRecord", "TrialSetup", "better", "choose_modes", "describe", "trial_steps", "undecided"]
