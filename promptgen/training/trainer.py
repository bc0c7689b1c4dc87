"""Training the flow by reverse KL to the energy-based model.

The trainer knows the energy-based model only through
:meth:`~promptgen.training.ebm.EnergyBasedModel.reverse_kl`; it knows nothing of what
the energies are.

The loop is put together from the pieces of :mod:`promptgen.training.loop` (a run's state, one step with its
rollback, the cadence of adaptation, evaluation and checkpoints); the settings are in
:mod:`promptgen.training.config`, resuming in :mod:`promptgen.training.resume`, the energies' fits in
:mod:`promptgen.training.fitting`. Every name of those that the trainer used to define is importable from here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape

from promptgen.core.errors import TrainingDiverged
from promptgen.core.progress import progress_bar
from promptgen.training.bank import ImportanceBank
from promptgen.training.config import (
    LIMITS,
    MAX_BATCH,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_STEPS,
    MIN_SEED,
    TrainConfig,
    TrainingSummary,
)
from promptgen.training.distributed import Dist
from promptgen.training.ebm import EnergyBasedModel
from promptgen.training.fitting import Prefit, adapt_energies, energy_states, fit_energies, mixture_for, prefit
from promptgen.training.flow import CouplingFlow
from promptgen.training.loop import TrainingRun, check_run, evaluate, save_checkpoint, training_classes
from promptgen.training.optim import adam
from promptgen.training.resume import RESUME_HINT, RESUME_KEYS, check_resumable, load_energy_states, same_layout
from promptgen.training.tracking import NoTracker, TensorBoardTracker, Tracker, choose_backend, log_folder, open_tracker
from promptgen.training.watch import Watch


def train_flow(
    ebm: EnergyBasedModel,
    flow: CouplingFlow,
    config: TrainConfig,
    *,
    device: torch.device,
    checkpoint: Path | None = None,
    console: Console | None = None,
    progress: bool = True,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
    resume: dict | None = None,
    dist: Dist | None = None,
    fitted: Prefit | None = None,
    watch: Watch | None = None,
    tracker: Tracker | None = None,
) -> TrainingSummary:
    """Minimise ``E_ε[U(f(ε)) − log|det ∂f/∂ε|]`` over the flow's weights with Adam.

    Args:
        ebm: generator and weighted energies (frozen; moved to ``device``).
        flow: the sampler being trained (moved to ``device``).
        config: steps, batch size, accumulation, clipping, seed...
        device: where to train.
        checkpoint: file to write every ``config.checkpoint_every`` steps (rank 0).
        console: where the progress bar goes.
        progress: show a rich progress bar with the loss and each energy term.
        on_eval: called with (step, metrics) at each periodic evaluation.
        resume: a checkpoint's state (:func:`promptgen.training.checkpoint.load_checkpoint`) to continue from;
            the result equals an uninterrupted run with the same settings.
        dist: this process's rank among several (see :mod:`promptgen.training.distributed`).
        fitted: what :func:`prefit` returned, when the energies were fitted before the flow was built
            (its time counts as training time).
        watch: judges the flow's samples at each periodic evaluation (:mod:`promptgen.training.watch`); with it,
            ``config.guard`` acts on a junk rate that rose above the generator's.
        tracker: where the main process logs every step's loss and energy terms (``train/...``) and each
            evaluation's figures (``eval/...``, ``watch/...``) and sample grid (``samples``); by default the one
            ``config.log`` asks for, writing into ``config.log_dir`` or ``logs/`` beside ``checkpoint``
            (:mod:`promptgen.training.tracking`). The main process closes it at the end, one given here too.

    A step whose loss or gradients are not finite is skipped (the optimiser does
    not move) and counted; ``config.max_bad_steps`` of them in a row roll the flow
    and optimiser back to the last good state and halve the learning rate;
    after ``config.max_rollbacks`` rollbacks training stops with :class:`TrainingDiverged`.
    """
    dist = dist or Dist()
    check_run(ebm, flow, config, dist)
    if tracker is None:
        choose_backend(config.log)  # a tracker that is not installed: one line before the fits, in every process
    show = progress and dist.main
    run = TrainingRun(ebm, flow, config, device, dist, watch)
    if resume is None:
        run.start(fitted, console=console, progress=show)
    else:
        run.restore(resume)
    if not dist.main:
        tracker = NoTracker()  # one process logs, as one writes the checkpoint
    elif tracker is None:
        folder = log_folder(config.log_dir, checkpoint)
        name = checkpoint.parent.name if checkpoint is not None else folder.name if folder is not None else None
        tracker = open_tracker(config.log, folder, run.state.first, name=name, config=config.model_dump(mode="json"))
        if show and console is not None and isinstance(tracker, TensorBoardTracker):
            console.print(
                f"logging to {escape(str(folder))} (view with: tensorboard --logdir {escape(str(folder))})",
                highlight=False,
                soft_wrap=True,
            )
    try:
        run.track(tracker)
        bar = progress_bar(console, show, "training")
        with bar:
            task = bar.add_task(run.describe(), total=config.steps, completed=run.state.first - 1)
            for step in range(run.state.first, config.steps + 1):
                bad = run.step(step)
                run.after_step(step, bad, checkpoint, on_eval)
                if show and (step % 5 == 0 or step == config.steps or run.stopped):
                    bar.update(task, completed=config.steps if run.stopped else step, description=run.describe())
                if run.stopped:
                    break
        run.keep_best()
    finally:
        tracker.close()
    return run.summary()


__all__ = [
    "LIMITS",
    "MAX_BATCH",
    "MAX_SAMPLES",
    "MAX_SEED",
    "MAX_STEPS",
    "MIN_SEED",
    "RESUME_HINT",
    "RESUME_KEYS",
    "ImportanceBank",
    "Prefit",
    "TrainConfig",
    "TrainingDiverged",
    "TrainingSummary",
    "adam",
    "adapt_energies",
    "check_resumable",
    "energy_states",
    "evaluate",
    "fit_energies",
    "load_energy_states",
    "mixture_for",
    "prefit",
    "same_layout",
    "save_checkpoint",
    "train_flow",
    "training_classes",
]
