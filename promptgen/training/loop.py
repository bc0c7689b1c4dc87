"""The pieces of the training loop: one run's state, an optimiser step with its rollback, and the cadence of
adaptation, evaluation and checkpoints (put together by :func:`promptgen.training.trainer.train_flow`)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape

from promptgen.core.atomic import write_atomic
from promptgen.core.conditions import draw_conditions
from promptgen.core.errors import ArtifactError, PromptgenError, TrainingDiverged, one_line
from promptgen.training.bank import ImportanceBank
from promptgen.training.checkpoint import FORMAT as CHECKPOINT_FORMAT
from promptgen.training.checkpoint import VERSION as CHECKPOINT_VERSION
from promptgen.training.config import TrainConfig, TrainingSummary
from promptgen.training.distributed import Dist, any_true, from_main
from promptgen.training.ebm import EnergyBasedModel, mixture_term
from promptgen.training.fitting import Prefit, adapt_energies, asked_components, energy_states, fit_energies
from promptgen.training.flow import CouplingFlow
from promptgen.training.optim import adam, lr_schedule
from promptgen.training.resume import RESUME_HINT, check_resumable, load_energy_states
from promptgen.training.tracking import NoTracker, StepHistory, Tracker
from promptgen.training.watch import MAX_REALISM_FACTOR, Reading, Watch, better, stratified_classes

#: Images in the sample grid a tracker receives at each evaluation.
GRID_IMAGES = 64


def training_classes(components: int, n: int, offset: int = 0) -> torch.Tensor | None:
    """Mixture components for ``n`` training samples: every component in turn, from ``offset``.

    Each component is trained on its own energy, so each gets the same share of
    every batch whatever its weight when sampling (a rare one is learnt as well
    as a common one). ``None`` for a flow without components.

    >>> training_classes(3, 5, offset=2).tolist()
    [2, 0, 1, 2, 0]
    """
    if not components:
        return None
    return (torch.arange(n) + offset) % components


def training_conditions(ebm: EnergyBasedModel, n: int, g: torch.Generator) -> torch.Tensor | None:
    """(n, C) conditions drawn from their training distributions with the run's generator; None without conditions.

    Drawn only for a conditional model, so an unconditional run's random stream is unchanged.
    """
    return draw_conditions(ebm.conditions, n, g) if ebm.conditions else None


@torch.no_grad()
def evaluate(ebm: EnergyBasedModel, flow: CouplingFlow, eps: torch.Tensor, condition: torch.Tensor | None = None) -> dict[str, float]:
    """Mean loss, prior, log-det and each unweighted energy on fixed noise ``eps`` (and fixed ``condition``).

    A mixture flow is evaluated on every component in turn (see :func:`training_classes`).
    """
    out: dict[str, list[float]] = {}
    chunks = eps.split(256)
    classes = training_classes(flow.config.classes, eps.shape[0])
    per_chunk = [None] * len(chunks) if classes is None else classes.to(eps.device).split(256)
    conditions = [None] * len(chunks) if condition is None else condition.to(eps.device).split(256)
    for chunk, c, a in zip(chunks, per_chunk, conditions, strict=True):
        loss, pot, log_det = ebm.reverse_kl(flow, chunk, classes=c, condition=a)
        row = {"loss": loss, "prior": pot.prior, "log_det": log_det, **pot.energies}
        for k, v in row.items():
            out.setdefault(k, []).append(float(v.sum()))
    return {k: sum(v) / len(eps) for k, v in out.items()}


@torch.no_grad()
def decode_images(ebm: EnergyBasedModel, z: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """The generator's images of latents ``z``, ``chunk`` at a time, clamped to [0, 1]."""
    return torch.cat([ebm.generator.decode(part).clamp(0, 1) for part in z.split(chunk)])


@torch.no_grad()
def flow_images(ebm: EnergyBasedModel, flow: CouplingFlow, eps: torch.Tensor, condition: torch.Tensor | None = None,
                chunk: int = 256) -> torch.Tensor:
    """The images of ``eps`` through ``flow`` as its prompt samples them: a mixture's components in the
    proportions of its weights (:func:`~promptgen.training.watch.stratified_classes`), at ``condition`` (B, C)."""
    mixture = mixture_term(ebm.terms)
    classes = stratified_classes(mixture.caps.energy.mixture_weights(), eps.shape[0]) if mixture is not None and flow.config.classes else None
    out = []
    for i in range(0, eps.shape[0], chunk):
        part = slice(i, i + chunk)
        c = None if classes is None else classes[part].to(eps.device)
        a = None if condition is None else condition[part].to(eps.device)
        out.append(ebm.decode(flow(eps[part], c, a)[0], a).clamp(0, 1))
    return torch.cat(out)


def save_checkpoint(path: Path, state: dict) -> None:
    """Everything needed to continue training, in one file, written atomically.

    A reader never sees half a file: the state goes to a temporary file that is
    renamed over the old checkpoint, so a process killed while writing leaves
    the previous checkpoint intact. Loadable with ``torch.load(weights_only=True)``.
    """
    write_atomic(path, lambda p: torch.save(state, p))


def check_run(ebm: EnergyBasedModel, flow: CouplingFlow, config: TrainConfig, dist: Dist) -> None:
    """Refuse a flow whose components differ from the mixture the energies ask for, or whose condition input
    differs from the model's conditions, and a batch that does not split."""
    if flow.config.conditions != len(ebm.conditions):
        raise PromptgenError(
            f"the flow takes {flow.config.conditions} conditions but the model has {len(ebm.conditions)} "
            f"({', '.join(ebm.condition_names) or 'none'}); build it with FlowConfig(conditions=...) to match"
        )
    components = flow.config.classes
    if asked_components(ebm, config) != components:
        raise PromptgenError(
            f"the flow has {components} classes but the energies ask for a mixture of {asked_components(ebm, config)} components; "
            "build it with FlowConfig(classes=...) to match"
        )
    if config.batch_size % dist.world:
        raise PromptgenError(f"--batch-size {config.batch_size} does not split evenly over {dist.world} processes; use a multiple of {dist.world}")


@dataclass
class RunState:
    """What a run has done, besides the weights and random states: everything else a checkpoint keeps.

    Attributes:
        first: the first step this process runs (1, or the step after the checkpoint's).
        fits: each energy's fit report, by label.
        eval_eps: the fixed noise of the periodic evaluations.
        eval_condition: the fixed conditions of the periodic evaluations (None without conditions).
        bank: the forward-KL term's importance bank (None without the term).
        history: the periodic evaluations.
        adaptations: what energies that close a loop saw of the flow, by step.
        skipped: steps skipped for a non-finite loss or gradient.
        rollbacks: returns to the last good state.
        resumed_at: steps after which training was resumed.
        elapsed_before: training seconds before this process started (fits or earlier processes).
        checkpoint_seconds: time spent writing checkpoints.
        readings: what the watch saw, the generator's first (step 0).
        best: the healthy reading with the lowest score so far: its step, score and the flow's weights then.
        backoff: the factor on every energy's weight (guard back-off halves it at each unhealthy reading).
        realism: the factor on every energy's realism weight (guard realism doubles it at each unhealthy reading).
        stopped_at: the step ``--until-met`` stopped at; ``confirmation`` the second batch's reading that confirmed it.
        kept_step: the step whose flow :meth:`TrainingRun.keep_best` kept instead of the last one.
        steps: every step's loss and energy terms (:class:`~promptgen.training.tracking.StepHistory`).
    """

    first: int
    fits: dict[str, dict[str, float]]
    eval_eps: torch.Tensor
    eval_condition: torch.Tensor | None = None
    bank: ImportanceBank | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    adaptations: list[dict[str, float]] = field(default_factory=list)
    skipped: int = 0
    rollbacks: int = 0
    resumed_at: list[int] = field(default_factory=list)
    elapsed_before: float = 0.0
    checkpoint_seconds: float = 0.0
    readings: list[Reading] = field(default_factory=list)
    best: dict | None = None
    backoff: float = 1.0
    realism: float = 1.0
    stopped_at: int | None = None
    confirmation: Reading | None = None
    kept_step: int | None = None
    steps: StepHistory = field(default_factory=StepHistory)


class TrainingRun:
    """One run of :func:`~promptgen.training.trainer.train_flow`: the flow, its optimiser and schedule, the noise
    generator, and the run's state; the loop calls :meth:`step` and :meth:`after_step` for each step.

    Creating it seeds torch and the noise generator from ``config.seed`` and moves the models to ``device``;
    :meth:`start` or :meth:`restore` then sets up the state, and :meth:`track` gives it a tracker (none by default).
    """

    def __init__(
        self, ebm: EnergyBasedModel, flow: CouplingFlow, config: TrainConfig, device: torch.device, dist: Dist, watch: Watch | None = None
    ) -> None:
        self.ebm, self.flow, self.config, self.device, self.dist = ebm, flow, config, device, dist
        self.watch = watch if dist.main else None  # the main process judges, as it evaluates
        self.components = flow.config.classes
        local = config.batch_size // dist.world
        self.part = slice(dist.rank * local, (dist.rank + 1) * local)
        torch.manual_seed(config.seed)
        self.g = torch.Generator().manual_seed(config.seed)
        ebm.to(device)
        flow.to(device)
        self.t0 = time.perf_counter()
        self.params = list(flow.parameters())
        self.opt = adam(self.params, config.lr)
        self.schedule = lr_schedule(self.opt, config)
        self.labels = [t.label for t in ebm.terms]
        self.running: dict[str, float] = {}
        self.bad_in_a_row = 0
        self.tracker: Tracker = NoTracker()
        #: Each energy's realism weight as built, for the realism guard's factor (energies without one: none).
        self.realism_weights = {
            i: float(t.energy.realism) for i, t in enumerate(ebm.terms) if isinstance(getattr(t.energy, "realism", None), int | float)
        }

    # -- setting up -------------------------------------------------------------------------------------------------
    def start(self, fitted: Prefit | None, *, console: Console | None, progress: bool) -> None:
        """A new run: the energies' fits (or those of :func:`~promptgen.training.fitting.prefit`), the evaluation
        noise and the forward-KL bank, all drawn from the run's noise generator."""
        config, g = self.config, self.g
        elapsed_before = 0.0
        if fitted is None:
            fits = fit_energies(self.ebm, config.fit_samples, g, self.device, console=console, progress=progress)
            if asked_components(self.ebm, config) != self.components:
                raise PromptgenError(
                    "an energy chose its mode at its fit (debias mode=auto) and the flow no longer matches it; "
                    "call prefit() before building the flow, as compose does, or give the energy mode=tilt or mode=mixture"
                )
        else:
            fits, elapsed_before = fitted.fits, fitted.seconds
            g.set_state(fitted.generator_state)
        eval_eps = torch.randn((config.eval_batch, *self.flow.latent_shape), generator=g).to(self.device)
        eval_condition = training_conditions(self.ebm, config.eval_batch, g)
        bank = ImportanceBank(self.ebm, config.forward_samples, g, self.device) if config.forward_weight > 0 else None
        self._begin(RunState(first=1, fits=fits, eval_eps=eval_eps, eval_condition=eval_condition, bank=bank, elapsed_before=elapsed_before))

    def restore(self, resume: dict) -> None:
        """Continue from a checkpoint's state (checked first: a state that does not fit is a one-line ArtifactError)."""
        check_resumable(resume, self.flow, self.opt, self.schedule, self.g, self.config)
        mine = self._conditions()
        if "conditions" not in resume and mine:  # a conditional run's checkpoint always records its ranges
            raise ArtifactError(f"'checkpoint' has no record of its conditions, and this run trains on {mine}; {RESUME_HINT}")
        if resume.get("conditions", mine) != mine:
            raise ArtifactError(f"'checkpoint' was written for other conditions than this run's ({mine}); {RESUME_HINT}")
        self._check_eval_condition(resume.get("eval_condition"), int(resume["eval_eps"].shape[0]))
        try:
            self.flow.load_state_dict(resume["flow"])
            self.opt.load_state_dict(resume["optimizer"])
            self.schedule.load_state_dict(resume["scheduler"])
            self.g.set_state(resume["generator"])
            torch.set_rng_state(resume["torch_rng"])
        except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise ArtifactError(f"'checkpoint' cannot be restored ({type(exc).__name__}: {one_line(str(exc))[:120]}); {RESUME_HINT}") from None
        load_energy_states(self.ebm.terms, resume["energies"], "checkpoint")
        eval_eps = resume["eval_eps"].to(self.device)
        eval_condition = resume.get("eval_condition")
        bank = ImportanceBank.restore(self.ebm, resume["bank"], self.device) if resume.get("bank") is not None else None
        self._begin(RunState(
            first=int(resume["step"]) + 1,
            fits=resume["fits"],
            eval_eps=eval_eps,
            eval_condition=eval_condition,
            bank=bank,
            history=resume["history"],
            adaptations=resume["adaptations"],
            skipped=int(resume["skipped"]),
            rollbacks=int(resume["rollbacks"]),
            resumed_at=[*resume["resumed_at"], int(resume["step"])],
            elapsed_before=float(resume["seconds"]),
            checkpoint_seconds=float(resume["checkpoint_seconds"]),
            readings=[Reading.model_validate(r) for r in resume.get("readings", [])],
            best=resume.get("best"),
            backoff=float(resume.get("backoff", 1.0)),
            realism=float(resume.get("realism_factor", 1.0)),
            # A checkpoint written before the history was kept: the steps after it only.
            steps=StepHistory.restore(resume["step_history"], "checkpoint", RESUME_HINT) if "step_history" in resume else StepHistory(),
        ))

    def _begin(self, state: RunState) -> None:
        self.state = state
        self._apply_realism()
        self.model = torch.nn.parallel.DistributedDataParallel(self.flow) if self.dist.active else self.flow
        if self.watch is not None:
            # The generator's own images on the watch's noise: what the prompt's junk and figures are held against.
            baseline = self.watch.baseline(decode_images(self.ebm, state.eval_eps))
            if not state.readings:
                state.readings.append(baseline)
        self.good = self.snapshot(state.first - 1)  # what a rollback returns to

    def track(self, tracker: Tracker) -> None:
        """Log to ``tracker`` from now on (the main process's; the others keep none); a new run's first figures
        are the generator's own reading (step 0)."""
        self.tracker = tracker
        if self.state.first == 1 and self.state.readings:
            tracker.log_scalars(0, _reading_figures(self.state.readings[0]))

    def _check_eval_condition(self, value: torch.Tensor | None, batch: int) -> None:
        """The evaluations' fixed conditions from a checkpoint: one row per evaluation sample, one column per
        condition, each value inside its training range (they were drawn from it)."""
        conditions = self.ebm.conditions
        if value is None:
            if conditions:
                raise ArtifactError(f"'checkpoint' has no eval_condition, and this run trains on conditions; {RESUME_HINT}")
            return
        if not conditions:
            raise ArtifactError(f"'checkpoint' has an eval_condition, and this run has no conditions; {RESUME_HINT}")
        if tuple(value.shape) != (batch, len(conditions)):
            raise ArtifactError(
                f"'checkpoint' has an eval_condition of shape {tuple(value.shape)}, not ({batch}, {len(conditions)}); {RESUME_HINT}"
            )
        for i, c in enumerate(conditions):
            column = value[:, i].double()
            slack = 1e-5 * max(1.0, abs(c.low), abs(c.high))  # drawn in float32
            if not bool(torch.isfinite(column).all()) or bool((column < c.low - slack).any()) or bool((column > c.high + slack).any()):
                raise ArtifactError(
                    f"'checkpoint' has eval_condition values for {c.name} outside its range {c.low:g}:{c.high:g}; {RESUME_HINT}"
                )

    def _conditions(self) -> list[list]:
        return [[c.name, c.low, c.high, c.distribution, c.reference] for c in self.ebm.conditions]

    # -- the state --------------------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Training seconds so far, those before this process included."""
        return self.state.elapsed_before + time.perf_counter() - self.t0

    def snapshot(self, step: int) -> dict:
        """Everything needed to continue after ``step``: the checkpoint's contents."""
        s = self.state
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "step": step,
            "flow": {k: v.detach().cpu().clone() for k, v in self.flow.state_dict().items()},
            "optimizer": copy.deepcopy(self.opt.state_dict()),
            "scheduler": self.schedule.state_dict(),
            "generator": self.g.get_state(),
            "torch_rng": torch.get_rng_state(),
            "energies": energy_states(self.ebm),
            "fits": s.fits,
            "history": list(s.history),
            "adaptations": list(s.adaptations),
            "eval_eps": s.eval_eps.cpu(),
            "eval_condition": None if s.eval_condition is None else s.eval_condition.cpu(),
            "conditions": self._conditions(),
            "bank": s.bank.state() if s.bank is not None else None,
            "skipped": s.skipped,
            "rollbacks": s.rollbacks,
            "resumed_at": s.resumed_at,
            "seconds": self.elapsed(),
            "checkpoint_seconds": s.checkpoint_seconds,
            "config": self.config.model_dump(mode="json"),
            "readings": [r.model_dump(mode="json") for r in s.readings],
            "best": s.best,
            "backoff": s.backoff,
            "realism_factor": s.realism,
            "step_history": s.steps.state(),
        }

    def describe(self) -> str:
        """The progress bar's line: the running loss, each energy term and the skipped steps."""
        parts = [f"loss {self.running.get('loss', math.nan):8.3f}"]
        parts += [f"{escape(lab)} {self.running.get(lab, math.nan):.3f}" for lab in self.labels]
        if self.state.skipped:
            parts.append(f"skipped {self.state.skipped}")
        return "  ".join(parts)

    # -- one step ---------------------------------------------------------------------------------------------------
    def step(self, step: int) -> bool:
        """One optimiser step over ``config.accumulate`` micro-batches; True when it was skipped as not finite."""
        stats, finite = self._gradients(step)
        # One reduction gives both the clipping and the check: the norm is not finite iff a gradient is not.
        clip = self.config.clip_grad if self.config.clip_grad is not None else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.params, clip)
        bad = any_true(self.dist, not (finite and bool(torch.isfinite(norm))), self.device)
        stats = self._whole_batch(stats)
        if bad:
            self._skip(step)
            self.tracker.log_scalars(step, {"train/skipped_steps": float(self.state.skipped)})
        else:
            self.bad_in_a_row = 0
            lr = float(self.opt.param_groups[0]["lr"])
            self.opt.step()
            self.schedule.step()
            for k, v in stats.items():  # exponential moving average for the display
                self.running[k] = v if k not in self.running else 0.9 * self.running[k] + 0.1 * v
            self.state.steps.add(step, stats)
            self.tracker.log_scalars(step, {**{f"train/{k}": v for k, v in stats.items()}, "train/lr": lr})
        return bad

    def _whole_batch(self, stats: dict[str, float]) -> dict[str, float]:
        """This process's means of its slice of the batch -> the whole batch's means (the same in every process)."""
        if not self.dist.active:
            return stats
        import torch.distributed as torch_dist

        keys = sorted(stats)
        t = torch.tensor([stats[k] for k in keys], dtype=torch.float64, device=self.device)
        torch_dist.all_reduce(t)  # every slice is the same size: the mean of the means is the batch's mean
        return dict(zip(keys, (t / self.dist.world).tolist(), strict=True))

    def _gradients(self, step: int) -> tuple[dict[str, float], bool]:
        """Accumulate the gradients of the step's micro-batches; (mean loss and energy terms, whether all were finite)."""
        config, flow, bank = self.config, self.flow, self.state.bank
        self.opt.zero_grad(set_to_none=True)
        stats: dict[str, float] = {}
        anneal = config.anneal(step) * self.state.backoff
        finite = True
        for micro in range(config.accumulate):
            # Every process draws the whole batch and keeps its slice: the same noise as one process.
            eps = torch.randn((config.batch_size, *flow.latent_shape), generator=self.g)[self.part].to(self.device)
            # A mixture's components in turn, continuing from one batch to the next.
            offset = ((step - 1) * config.accumulate + micro) * config.batch_size
            classes = training_classes(self.components, config.batch_size, offset)
            classes = None if classes is None else classes[self.part].to(self.device)
            condition = training_conditions(self.ebm, config.batch_size, self.g)
            condition = None if condition is None else condition[self.part].to(self.device)
            loss, pot, _ = self.ebm.reverse_kl(self.model, eps, anneal, classes, condition)
            total = loss.mean()
            if bank is not None:
                nll = -flow.log_prob(bank.draw(config.batch_size, self.g)[self.part]).mean()
                total = total + config.anneal(step) * config.forward_weight * nll  # not backed off: it pulls towards the generator
            finite = finite and bool(torch.isfinite(total))
            (total / config.accumulate).backward()
            for k, v in {"loss": loss, **pot.energies}.items():
                stats[k] = stats.get(k, 0.0) + float(v.detach().mean()) / config.accumulate
        return stats, finite

    def _skip(self, step: int) -> None:
        """Count a non-finite step; after ``max_bad_steps`` in a row, roll back (or, out of rollbacks, stop)."""
        config, s = self.config, self.state
        self.opt.zero_grad(set_to_none=True)
        s.skipped += 1
        self.bad_in_a_row += 1
        self.schedule.step()  # the schedule keeps time with the steps
        if self.bad_in_a_row >= config.max_bad_steps:
            if s.rollbacks >= config.max_rollbacks:
                raise TrainingDiverged(
                    f"training diverged: {self.bad_in_a_row} steps in a row with a non-finite loss or gradient at step {step}, "
                    f"after {s.rollbacks} rollbacks to lower learning rates; lower --lr or the energies' weights, or check the energies"
                )
            self._roll_back()

    def _roll_back(self) -> None:
        """Return the flow and optimiser to the last good state, at half the learning rate."""
        self.flow.load_state_dict(self.good["flow"])
        self.opt.load_state_dict(self.good["optimizer"])
        self.state.rollbacks += 1
        self.bad_in_a_row = 0
        for group in self.opt.param_groups:
            group["lr"] *= 0.5
        self.schedule.base_lrs = [lr * 0.5 for lr in self.schedule.base_lrs]

    # -- after a step -----------------------------------------------------------------------------------------------
    def after_step(
        self, step: int, bad: bool, checkpoint: Path | None, on_eval: Callable[[int, dict[str, float]], None] | None
    ) -> None:
        """What follows a step, each at its own cadence: adapting energies, evaluating, keeping a checkpoint."""
        self._adapt(step)
        self._evaluate(step, on_eval)
        if self.dist.active and (step % self.config.eval_every == 0 or step == self.config.steps):
            # Only the main process watches: every process trains at its weights and stops with it.
            said = torch.tensor(
                [self.state.backoff, self.state.realism, -1 if self.state.stopped_at is None else self.state.stopped_at],
                dtype=torch.float64, device=self.device,
            )
            from_main(self.dist, [said])
            self.state.backoff, self.state.realism = float(said[0]), float(said[1])
            self.state.stopped_at = None if int(said[2]) < 0 else int(said[2])
            self._apply_realism()
        if step % self.config.checkpoint_every == 0 and not bad:
            self._keep(step, checkpoint)

    def _adapt(self, step: int) -> None:
        """Let energies that close a loop see the flow (while ``config.adapting``), and reweight the bank after them."""
        if not self.config.adapting(step):
            return
        row = adapt_energies(self.ebm, self.flow, step, self.g, self.device)
        bank = self.state.bank
        if row and bank is not None:
            bank.reweight()
            row["forward ess"] = bank.ess
        if row:
            self.state.adaptations.append({"step": float(step), **row})

    def _evaluate(self, step: int, on_eval: Callable[[int, dict[str, float]], None] | None) -> None:
        """Every ``eval_every`` steps and at the last (main process): evaluate on the fixed noise, into the history."""
        if not (self.dist.main and (step % self.config.eval_every == 0 or step == self.config.steps)):
            return
        s = self.state
        metrics = evaluate(self.ebm, self.flow, s.eval_eps, s.eval_condition)
        s.history.append({"step": float(step), "seconds": self.elapsed(), **metrics})
        figures = {f"eval/{k}": v for k, v in metrics.items()}
        logging = not isinstance(self.tracker, NoTracker)
        images = None
        if self.watch is not None:
            images = flow_images(self.ebm, self.flow, s.eval_eps, s.eval_condition)
            figures.update(_reading_figures(self._watch(step, metrics["loss"], images)))
            if self.config.guard == "back-off":
                figures["watch/backoff"] = s.backoff
            if self.config.guard == "realism":
                figures["watch/realism_factor"] = s.realism
        elif logging:
            n = min(GRID_IMAGES, s.eval_eps.shape[0])
            images = flow_images(self.ebm, self.flow, s.eval_eps[:n], None if s.eval_condition is None else s.eval_condition[:n])
        if logging and images is not None:
            self.tracker.log_scalars(step, figures)
            # Evenly spaced: a mixture's images come in blocks of its components (stratified_classes).
            pick = torch.linspace(0, images.shape[0] - 1, min(GRID_IMAGES, images.shape[0])).round().long()
            self.tracker.log_images(step, "samples", images[pick.to(images.device)])
        if on_eval is not None:
            on_eval(step, metrics)

    def _watch(self, step: int, loss: float, images: torch.Tensor) -> Reading:
        """Judge the flow's ``images`` of the evaluation noise; keep the best healthy flow; back off on junk (guard)."""
        s = self.state
        assert self.watch is not None
        reading = self.watch.read(images, step, loss)
        s.readings.append(reading)
        if reading.healthy and (s.best is None or reading.score <= s.best["score"]):
            s.best = {"step": step, "score": reading.score, "flow": {k: v.detach().cpu().clone() for k, v in self.flow.state_dict().items()}}
        if not reading.healthy and self.config.guard == "back-off":
            s.backoff *= 0.5
        if not reading.healthy and self.config.guard == "realism" and self.realism_weights:
            s.realism = min(2.0 * s.realism, MAX_REALISM_FACTOR)
            self._apply_realism()
        if self.config.until_met and step < self.config.steps and reading.confirmed:
            self._confirm(step, images.shape[0])
        return reading

    @property
    def stopped(self) -> bool:
        """Whether ``--until-met`` ended the run (every process knows after the evaluation that decided it)."""
        return self.state.stopped_at is not None

    def _apply_realism(self) -> None:
        """Set every energy's realism weight to its own times the guard's factor."""
        for i, weight in self.realism_weights.items():
            self.ebm.terms[i].energy.realism = weight * self.state.realism  # type: ignore[attr-defined]

    def _confirm(self, step: int, n: int) -> None:
        """``--until-met``: the evaluation after ``step`` met every target; judge ``n`` fresh samples of the flow
        (against the generator's on the same noise) and stop when they meet them too. The fresh noise comes from its
        own generator, so the run's random stream is the same whether it stops or not."""
        s, config = self.state, self.config
        assert self.watch is not None
        g = torch.Generator().manual_seed((config.seed + 7 + 1_000_003 * step) % 2**64)
        eps = torch.randn((n, *self.flow.latent_shape), generator=g).to(self.device)
        condition = training_conditions(self.ebm, n, g)
        condition = None if condition is None else condition.to(self.device)
        self.watch.baseline(decode_images(self.ebm, eps))
        second = self.watch.read(flow_images(self.ebm, self.flow, eps, condition), step)
        self.watch.baseline(decode_images(self.ebm, s.eval_eps))  # later readings are held against the evaluation noise's
        if second.confirmed:
            s.stopped_at, s.confirmation = step, second

    def _keep(self, step: int, checkpoint: Path | None) -> None:
        """Make the state after ``step`` the one a rollback returns to, and write it to ``checkpoint`` (main process)."""
        self.good = self.snapshot(step)
        if checkpoint is not None and self.dist.main:
            t = time.perf_counter()
            save_checkpoint(checkpoint, self.good)
            self.state.checkpoint_seconds += time.perf_counter() - t

    # -- the end ----------------------------------------------------------------------------------------------------
    def keep_best(self) -> None:
        """After the last step, :meth:`_keep_best` in the main process, which watches; every process ends with its flow."""
        self._keep_best()
        if self.dist.active and self.config.guard != "off":
            kept = torch.tensor([-1 if self.state.kept_step is None else self.state.kept_step], device=self.device)
            from_main(self.dist, [*(p.data for p in self.flow.parameters()), *self.flow.buffers(), kept])
            self.state.kept_step = None if int(kept.item()) < 0 else int(kept.item())

    def _keep_best(self) -> None:
        """After the last step (guard keep-best or back-off): judge the last flow on ``check_samples`` fresh samples,
        holding its junk to the generator's plus 2 points; when it made junk, judge the best healthy flow of the
        periodic readings on the same samples and keep it if it reads better (:func:`~promptgen.training.watch.better`).

        The periodic readings, on ``eval_batch`` samples, allow for their noise; the decision that replaces the
        last flow is taken on the closing check's number of samples, so noise neither keeps junk nor throws away a
        good flow.
        """
        s, config = self.state, self.config
        if config.guard == "off" or self.watch is None or s.best is None or not s.readings or s.best["step"] == s.readings[-1].step:
            return
        if s.stopped_at is not None:  # it stopped on a reading that met every target without junk, twice
            return
        g = torch.Generator().manual_seed((config.seed + 3) % 2**64)
        n = max(config.check_samples, config.eval_batch)
        eps = torch.randn((n, *self.flow.latent_shape), generator=g).to(self.device)
        condition = training_conditions(self.ebm, n, g)
        condition = None if condition is None else condition.to(self.device)
        self.watch.baseline(decode_images(self.ebm, eps))
        last = self.watch.read(flow_images(self.ebm, self.flow, eps, condition), s.readings[-1].step, strict=True)
        if last.healthy:
            return
        final = {k: v.detach().clone() for k, v in self.flow.state_dict().items()}
        self.flow.load_state_dict(s.best["flow"])
        best = self.watch.read(flow_images(self.ebm, self.flow, eps, condition), int(s.best["step"]), strict=True)
        if better(best, last):
            s.kept_step = int(s.best["step"])
        else:
            self.flow.load_state_dict(final)

    def summary(self) -> TrainingSummary:
        """How the run went; refuses a run whose every step was skipped (the flow never moved)."""
        config, s = self.config, self.state
        if s.skipped >= config.steps:  # the flow never moved: saving it would pass the base generator off as trained
            raise TrainingDiverged(
                f"training failed: all {config.steps} steps had a non-finite loss or gradient, so the flow never moved and "
                "nothing was saved; lower --lr or the energies' weights, or check the energies"
            )
        final = s.history[-1] if s.history else {"loss": math.nan}
        return TrainingSummary(
            config=config,
            device=str(self.device),
            seconds=self.elapsed(),
            final_loss=final["loss"],
            final_terms={k: final[k] for k in self.labels if k in final},
            history=s.history,
            fits=s.fits,
            adaptations=s.adaptations,
            skipped_steps=s.skipped,
            rollbacks=s.rollbacks,
            processes=self.dist.world,
            resumed_at=s.resumed_at,
            checkpoint_seconds=s.checkpoint_seconds,
            watch=s.readings,
            kept_step=s.kept_step,
            stopped_at=s.stopped_at,
            confirmation=s.confirmation,
            realism_factor=s.realism,
            step_history=s.steps.points(),
        )


def _reading_figures(reading: Reading) -> dict[str, float]:
    """A watch's reading as a tracker's scalars: the junk rates, health, score and each target's figure."""
    figures = {"watch/healthy": float(reading.healthy), "watch/score": reading.score}
    if reading.junk is not None:
        figures["watch/junk"] = reading.junk
    if reading.base_junk is not None:
        figures["watch/generator_junk"] = reading.base_junk
    for t in reading.targets:
        figures[f"watch/{t.energy} {t.attribute} {'KL' if t.kind == 'kl' else 'share'}"] = t.value
    return figures


__all__ = [
    "RunState", "TrainingRun", "check_run", "decode_images", "evaluate", "flow_images", "save_checkpoint", "training_classes",
    "training_conditions",
]
