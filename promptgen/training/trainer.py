"""Training the flow by reverse KL to the energy-based model.

The trainer knows the energy-based model only through
:meth:`~promptgen.training.ebm.EnergyBasedModel.reverse_kl`; it knows nothing of what
the energies are.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.markup import escape

from promptgen.core.atomic import write_atomic
from promptgen.core.errors import ArtifactError, PromptgenError, SpecError, one_line
from promptgen.core.progress import progress_bar
from promptgen.core.protocols import BaseSample
from promptgen.training.checkpoint import FORMAT as CHECKPOINT_FORMAT
from promptgen.training.checkpoint import VERSION as CHECKPOINT_VERSION
from promptgen.training.checkpoint import check_tensors, describe
from promptgen.training.distributed import Dist, any_true
from promptgen.training.ebm import EnergyBasedModel, WeightedEnergy, mixture_term
from promptgen.training.flow import CouplingFlow

#: Largest settings TrainConfig takes: far above any useful value, far below what would exhaust memory
#: or overflow before the first step.
MAX_STEPS = 10_000_000
MAX_BATCH = 65_536
MAX_SAMPLES = 10_000_000
MAX_SEED = 2**64 - 1  # torch.manual_seed's range
MIN_SEED = -(2**63)
#: The limits a new run is held to (check_limits); a manifest written before them still reads.
LIMITS: dict[str, float] = {
    "steps": MAX_STEPS, "batch_size": MAX_BATCH, "accumulate": 1024, "lr": 10.0, "eval_every": MAX_STEPS,
    "eval_batch": MAX_BATCH, "checkpoint_every": MAX_STEPS, "fit_samples": MAX_SAMPLES,
    "forward_samples": MAX_SAMPLES, "forward_weight": 1e6,
}


class TrainConfig(BaseModel):
    """Training settings; recorded in the prompt's manifest.

    The defaults are the ones measured in ``benchmarks/compose_mnist.py`` to
    train the built-in digit prompt in well under a minute on a 2-core CPU.
    """

    # Every number finite, every size one that fits in memory: a setting that cannot work is refused
    # here, before a file is written, not as a crash steps later.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    steps: int = Field(default=800, ge=1)
    batch_size: int = Field(default=64, ge=1)
    accumulate: int = Field(default=1, ge=1, description="micro-batches per optimiser step")
    lr: float = Field(default=1e-3, gt=0)
    clip_grad: float | None = Field(default=10.0, gt=0, description="max gradient norm; None disables")
    seed: int = Field(default=0, ge=MIN_SEED, le=MAX_SEED)
    eval_every: int = Field(default=100, ge=1)
    eval_batch: int = Field(default=256, ge=1)
    checkpoint_every: int = Field(default=200, ge=1)
    fit_samples: int = Field(default=2048, ge=1, description="base samples for energies that fit first")
    warmup: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="share of the steps over which the energies' weights ramp linearly from 0 to their value",
    )

    forward_weight: float = Field(
        default=0.0,
        ge=0,
        description="weight of a forward-KL term: the flow's negative log-likelihood of base samples drawn "
        "in proportion to their importance weights exp(-sum w E); teaches the flow the rare parts of the target "
        "that reverse KL alone under-covers",
    )
    forward_samples: int = Field(default=16384, ge=1, description="base samples behind the forward-KL term")
    schedule: Literal["constant", "cosine"] = Field(
        default="cosine", description="learning rate over the steps: constant, or cosine decay to zero"
    )
    settle: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="share of the steps at the end in which energies that close a loop stop adapting",
    )
    max_bad_steps: int = Field(
        default=10, ge=1, description="non-finite steps in a row before rolling back to the last good state at half the rate"
    )
    max_rollbacks: int = Field(default=3, ge=0, description="rollbacks before training stops as diverged")

    def check_limits(self) -> None:
        """Refuse, in one line naming the option, a setting above what a new run takes (:data:`LIMITS`).

        The model itself takes larger values, so a manifest written before the limits still reads.
        """
        for name, most in LIMITS.items():
            value = getattr(self, name)
            if value > most:
                raise SpecError(f"--{name.replace('_', '-')} {value!r} is above {most:g}, the most a run takes; "
                                f"see `promptgen compose --help`")

    def adapting(self, step: int) -> bool:
        """Whether energies that close a loop (``adapt_every``) adapt after step ``step``."""
        return self.anneal(step) >= 1.0 and step <= (1.0 - self.settle) * self.steps

    def anneal(self, step: int) -> float:
        """Multiplier of the energy weights at optimiser step ``step`` (1-based)."""
        ramp = self.warmup * self.steps
        return 1.0 if ramp <= 0 else min(1.0, step / ramp)


def load_energy_states(terms: list[WeightedEnergy], states: object, where: str) -> None:
    """Give each energy the fitted state a checkpoint kept for it; one-line errors for states that do not fit."""
    if not isinstance(states, dict):
        raise ArtifactError(f"{where!r}: 'energies' is a {type(states).__name__}, not {{energy label: state}}; {RESUME_HINT}")
    by_label = {t.label: t for t in terms}
    for label, state in states.items():
        term = by_label.get(label)
        if term is None:
            raise ArtifactError(f"{where!r} holds state for energy {str(label)[:80]!r}, which this run does not have; {RESUME_HINT}")
        if not term.caps.stateful:
            raise ArtifactError(f"{where!r} holds state for energy {str(label)[:80]!r}, which keeps none; {RESUME_HINT}")
        try:
            term.caps.load_state(state)
        except PromptgenError:
            raise
        except Exception as exc:  # noqa: BLE001 - an energy's own loader may fail in many ways on edited numbers
            raise ArtifactError(
                f"{where!r}: the state of energy {str(label)[:80]!r} does not fit it ({type(exc).__name__}: {one_line(str(exc))[:120]}); {RESUME_HINT}"
            ) from None


RESUME_HINT = "the checkpoint is damaged or from another run; start the run again without --resume"

#: What the trainer reads from a checkpoint to resume, besides load_checkpoint's required keys.
RESUME_KEYS = (
    "scheduler", "generator", "torch_rng", "energies", "fits", "history", "adaptations", "eval_eps", "skipped",
    "rollbacks", "resumed_at", "seconds", "checkpoint_seconds",
)


def same_layout(found: object, want: object, where: str) -> None:
    """Raise a one-line :class:`ArtifactError` unless ``found`` has the structure of ``want``.

    Same keys, lengths, tensor shapes and kinds of value (numbers finite);
    the numbers themselves may differ. Used on optimiser and scheduler states
    read from a checkpoint, against the state of fresh ones.
    """

    def fail(what: str) -> None:
        raise ArtifactError(f"'checkpoint': {where} {what}; {RESUME_HINT}")

    if isinstance(want, torch.Tensor):
        if not isinstance(found, torch.Tensor) or found.shape != want.shape or found.is_floating_point() != want.is_floating_point():
            fail(f"holds {describe(found)} where {describe(want)} belongs")
        if found.is_floating_point() and not bool(torch.isfinite(found).all()):
            fail("holds NaN or infinite values")
    elif isinstance(want, dict):
        if not isinstance(found, dict) or set(found) != set(want):
            fail(f"has keys {sorted(map(str, found))[:6] if isinstance(found, dict) else describe(found)}, not {sorted(map(str, want))[:6]}")
        for k in want:
            same_layout(found[k], want[k], f"{where}[{str(k)[:40]}]")
    elif isinstance(want, (list, tuple)):
        if not isinstance(found, (list, tuple)) or len(found) != len(want):
            fail(f"is {describe(found)}, not a list of {len(want)}")
        for i, (a, b) in enumerate(zip(found, want)):
            same_layout(a, b, f"{where}[{i}]")
    elif isinstance(want, bool) or want is None or isinstance(want, str):
        if type(found) is not type(want):
            fail(f"is {describe(found)}, not {describe(want)}")
    elif isinstance(want, (int, float)) and (
        isinstance(found, bool) or not isinstance(found, (int, float)) or not math.isfinite(found)
    ):
        fail(f"is {describe(found)}, not a finite number")


def check_resumable(resume: dict, flow: CouplingFlow, opt: torch.optim.Optimizer, schedule: object,
                    g: torch.Generator, config: TrainConfig) -> None:
    """Check, before anything is restored, that a checkpoint's state fits this run's flow, optimiser and settings."""
    missing = [k for k in RESUME_KEYS if k not in resume]
    if missing:
        raise ArtifactError(f"'checkpoint' has no {missing[0]!r}, which resuming needs; {RESUME_HINT}")
    check_tensors(resume["flow"], flow.state_dict(), "checkpoint", "it was written for another flow; start a new run")
    # The optimiser's state after a step: a moment per parameter, of its shape.
    params = [torch.zeros_like(p, device="cpu", requires_grad=True) for p in flow.parameters()]
    fresh = adam(params, config.lr)
    for q in params:
        q.grad = torch.zeros_like(q)
    fresh.step()
    want = fresh.state_dict()
    found = resume["optimizer"]
    if found["state"]:  # empty before the first step
        same_layout(dict(found["state"]), dict(want["state"]), "optimizer state")
    groups, fresh_groups = list(found["param_groups"]), list(opt.state_dict()["param_groups"])
    if len(groups) != len(fresh_groups):
        raise ArtifactError(f"'checkpoint': the optimiser has {len(groups)} parameter groups, the flow needs {len(fresh_groups)}; {RESUME_HINT}")
    for i, (group, fresh_group) in enumerate(zip(groups, fresh_groups)):
        # Only what Adam reads: flags such as fused/foreach differ between devices and torch versions.
        keys = [k for k in ("lr", "betas", "eps", "weight_decay", "amsgrad", "params", "initial_lr") if k in fresh_group]
        missing = [k for k in keys if k not in group]
        if missing:
            raise ArtifactError(f"'checkpoint': the optimiser's group {i} has no {missing[0]!r}; {RESUME_HINT}")
        same_layout({k: group[k] for k in keys}, {k: fresh_group[k] for k in keys}, f"optimizer param_groups[{i}]")
    if [g_["params"] for g_ in found["param_groups"]] != [g_["params"] for g_ in opt.state_dict()["param_groups"]]:
        raise ArtifactError(f"'checkpoint': the optimiser's parameter groups do not match the flow; {RESUME_HINT}")
    for group in found["param_groups"]:
        if not 0 <= group["lr"] <= 10:  # the cosine schedule ends at 0
            raise ArtifactError(f"'checkpoint': the optimiser's learning rate is {group['lr']!r}; {RESUME_HINT}")
    fresh_schedule = schedule.state_dict()
    if not isinstance(resume["scheduler"], dict):
        raise ArtifactError(f"'checkpoint': 'scheduler' is not a scheduler's state; {RESUME_HINT}")
    # The keys this torch's scheduler reads; torch versions add private ones (_is_initial...): compare those both have.
    core = [k for k in ("base_lrs", "last_epoch", "T_max", "eta_min", "_last_lr") if k in fresh_schedule]
    missing = [k for k in core if k not in resume["scheduler"]]
    if missing:
        raise ArtifactError(f"'checkpoint': the scheduler's state has no {missing[0]!r}; {RESUME_HINT}")
    shared = [k for k in fresh_schedule if k in resume["scheduler"]]
    same_layout({k: resume["scheduler"][k] for k in shared}, {k: fresh_schedule[k] for k in shared}, "scheduler")
    same_layout(resume["generator"], g.get_state(), "generator state")
    same_layout(resume["torch_rng"], torch.get_rng_state(), "torch_rng")
    same_layout(resume["eval_eps"], torch.zeros((config.eval_batch, *flow.latent_shape)), "eval_eps")
    if not 0 <= resume["step"] <= config.steps:
        raise ArtifactError(f"'checkpoint' is at step {resume['step']}, outside this run's {config.steps} steps; {RESUME_HINT}")
    bank = resume.get("bank")
    if bank is not None:
        latents, log_weights = bank["latents"], bank["log_weights"]
        n = latents.shape[0] if latents.dim() else 0
        same_layout(latents, torch.zeros((max(n, 1), *flow.latent_shape)), "bank latents")
        same_layout(log_weights, torch.zeros(max(n, 1)), "bank log_weights")


class TrainingSummary(BaseModel):
    """How the flow was trained and where it ended; stored in the prompt's manifest."""

    model_config = ConfigDict(extra="forbid")

    config: TrainConfig
    device: str
    seconds: float
    final_loss: float
    final_terms: dict[str, float]
    history: list[dict[str, float]] = Field(default_factory=list)
    fits: dict[str, dict[str, float]] = Field(default_factory=dict)
    adaptations: list[dict[str, float]] = Field(
        default_factory=list, description="what energies that close a loop saw of the flow, by step"
    )
    skipped_steps: int = Field(default=0, description="steps skipped because the loss or a gradient was not finite")
    rollbacks: int = Field(default=0, description="returns to the last good state after repeated non-finite steps")
    processes: int = Field(default=1, description="training processes (torchrun); the batch is split among them")
    resumed_at: list[int] = Field(default_factory=list, description="steps after which training was resumed from a checkpoint")
    checkpoint_seconds: float = Field(default=0.0, description="time spent writing checkpoints")


def fit_energies(
    ebm: EnergyBasedModel,
    n: int,
    generator: torch.Generator,
    device: torch.device,
    *,
    console: Console | None = None,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Give energies that need it their one-off fit on ``n`` base samples."""
    needy = [t for t in ebm.terms if t.caps.fittable]
    if not needy:
        return {}
    # An energy may ask for more base samples than the default (rare classes need many).
    n = max([n] + [t.caps.fit_samples for t in needy])
    z = torch.randn((n, *ebm.generator.latent_shape), generator=generator, device="cpu").to(device)
    fits = {}
    with progress_bar(console, progress, "fitting") as bar:
        for t in needy:
            task = bar.add_task(escape(t.label), total=n)  # labels come from specs or manifests: never markup

            def decode(chunk: torch.Tensor, task: int = task) -> torch.Tensor:
                images = ebm.generator.decode(chunk)
                bar.advance(task, chunk.shape[0])
                return images

            # Decoded a chunk at a time when the energy asks: 8,192 StyleGAN images at 1024² would not fit in memory.
            fits[t.label] = dict(t.caps.fit(BaseSample(latents=z, decode=decode)))
    return fits


def adam(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam for the flow: the fused kernel where this torch has it for the parameters' device (one pass over
    all tensors; on the CPU a fifth of the plain loop's time, which matters beside a small generator)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # a device without the fused kernel
        return torch.optim.Adam(params, lr=lr, foreach=True)


@dataclass
class Prefit:
    """What :func:`prefit` did: each energy's fit report by label, the noise generator's state after, and how long it took."""

    fits: dict[str, dict[str, float]]
    generator_state: torch.Tensor
    seconds: float


def prefit(
    ebm: EnergyBasedModel, config: TrainConfig, device: torch.device, *, console: Console | None = None, progress: bool = False
) -> Prefit:
    """The energies' one-off fits exactly as :func:`train_flow` would make them first.

    For callers that need the fitted energies before the flow is built (a
    de-biasing energy in ``mode=auto`` decides at its fit whether the prompt
    is a mixture). Pass the result to :func:`train_flow` as ``fitted``; the run
    is then the same as if it had fitted them itself, its time included.
    """
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    ebm.to(device)
    fits = fit_energies(ebm, config.fit_samples, g, device, console=console, progress=progress)
    return Prefit(fits, g.get_state(), time.perf_counter() - t0)


def mixture_for(terms: list[WeightedEnergy], config: TrainConfig) -> WeightedEnergy | None:
    """The term that makes the prompt a mixture (:func:`~promptgen.training.ebm.mixture_term`), checked against the settings.

    Raises:
        SpecError: two such terms, or ``forward_weight`` (the forward-KL bank has no components).
    """
    mixture = mixture_term(terms)
    if mixture is not None and config.forward_weight > 0:
        raise SpecError(f"--forward-weight does not apply to a mixture prompt ({mixture.label!r}); remove it, or add mode=tilt")
    return mixture


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


@torch.no_grad()
def evaluate(ebm: EnergyBasedModel, flow: CouplingFlow, eps: torch.Tensor) -> dict[str, float]:
    """Mean loss, prior, log-det and each unweighted energy on fixed noise ``eps``.

    A mixture flow is evaluated on every component in turn (see :func:`training_classes`).
    """
    out: dict[str, list[float]] = {}
    chunks = eps.split(256)
    classes = training_classes(flow.config.classes, eps.shape[0])
    per_chunk = [None] * len(chunks) if classes is None else classes.to(eps.device).split(256)
    for chunk, c in zip(chunks, per_chunk, strict=True):
        loss, pot, log_det = ebm.reverse_kl(flow, chunk, classes=c)
        row = {"loss": loss, "prior": pot.prior, "log_det": log_det, **pot.energies}
        for k, v in row.items():
            out.setdefault(k, []).append(float(v.sum()))
    return {k: sum(v) / len(eps) for k, v in out.items()}


class ImportanceBank:
    """Base latents with self-normalised importance weights for the model ``p*``.

    With ``z_i ~ N(0, I)`` (the generator's prior), ``p*(z_i) / N(z_i) ∝
    exp(−Σ w E(G(z_i)))``, so resampling the bank by these weights gives
    (approximate) samples of ``p*`` for a forward-KL term.
    """

    def __init__(self, ebm: EnergyBasedModel, n: int, generator: torch.Generator, device: torch.device) -> None:
        self.ebm = ebm
        self.latents = torch.randn((n, *ebm.generator.latent_shape), generator=generator).to(device)
        self.reweight()

    @torch.no_grad()
    def reweight(self) -> None:
        """Recompute the weights (after an energy changed, e.g. de-biasing's β was refitted)."""
        parts = []
        for chunk in self.latents.split(512):
            pot = self.ebm.potential(chunk)
            parts.append(-(pot.total - pot.prior))
        self.log_weights = torch.cat(parts)
        w = torch.softmax(self.log_weights, 0)
        self.ess = float(1.0 / (w * w).sum())

    def state(self) -> dict[str, torch.Tensor]:
        return {"latents": self.latents.cpu(), "log_weights": self.log_weights.cpu()}

    @classmethod
    def restore(cls, ebm: EnergyBasedModel, state: dict[str, torch.Tensor], device: torch.device) -> ImportanceBank:
        bank = cls.__new__(cls)
        bank.ebm = ebm
        bank.latents = state["latents"].to(device)
        bank.log_weights = state["log_weights"].to(device)
        w = torch.softmax(bank.log_weights, 0)
        bank.ess = float(1.0 / (w * w).sum())
        return bank

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.multinomial(torch.softmax(self.log_weights, 0).cpu(), n, replacement=True, generator=generator)
        return self.latents[idx.to(self.latents.device)]


def adapt_energies(ebm: EnergyBasedModel, flow: CouplingFlow, step: int, generator: torch.Generator, device: torch.device) -> dict[str, float]:
    """Show energies that close a loop (``adapt_every``) samples of the flow as it is now."""
    row: dict[str, float] = {}
    for t in ebm.terms:
        every = t.caps.adapt_every
        if not every or step % every:
            continue
        n = t.caps.adapt_samples
        with torch.no_grad():
            eps = torch.randn((n, *flow.latent_shape), generator=generator).to(device)
            z = torch.cat([flow(chunk)[0] for chunk in eps.split(256)])
        report = t.caps.adapt(BaseSample(latents=z, decode=ebm.generator.decode))
        row.update({f"{t.label} {k}": float(v) for k, v in report.items()})
    return row




class TrainingDiverged(PromptgenError):
    """Training kept producing non-finite losses or gradients after every rollback."""


def energy_states(ebm: EnergyBasedModel) -> dict[str, dict[str, list[float]]]:
    """The fitted or adapted state (e.g. de-biasing's β) of each energy that keeps one, by label (for checkpoints)."""
    return {t.label: t.caps.state() for t in ebm.terms if t.caps.stateful}


def save_checkpoint(path: Path, state: dict) -> None:
    """Everything needed to continue training, in one file, written atomically.

    A reader never sees half a file: the state goes to a temporary file that is
    renamed over the old checkpoint, so a process killed while writing leaves
    the previous checkpoint intact. Loadable with ``torch.load(weights_only=True)``.
    """
    write_atomic(path, lambda p: torch.save(state, p))


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

    A step whose loss or gradients are not finite is skipped (the optimiser does
    not move) and counted; ``config.max_bad_steps`` of them in a row roll the flow
    and optimiser back to the last good state and halve the learning rate;
    after ``config.max_rollbacks`` rollbacks training stops with :class:`TrainingDiverged`.
    """
    dist = dist or Dist()
    components = flow.config.classes

    def asked() -> int:  # the components the energies ask for (an auto energy settles at its fit)
        mixture = mixture_for(ebm.terms, config)
        return mixture.caps.mixture_components if mixture else 0

    if asked() != components:
        raise PromptgenError(
            f"the flow has {components} classes but the energies ask for a mixture of {asked()} components; "
            "build it with FlowConfig(classes=...) to match"
        )
    if config.batch_size % dist.world:
        raise PromptgenError(f"--batch-size {config.batch_size} does not split evenly over {dist.world} processes; use a multiple of {dist.world}")
    local = config.batch_size // dist.world
    part = slice(dist.rank * local, (dist.rank + 1) * local)
    show = progress and dist.main
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    ebm.to(device)
    flow.to(device)
    t0 = time.perf_counter()
    params = list(flow.parameters())
    opt = adam(params, config.lr)
    # Decaying the rate lets the flow settle on one distribution instead of
    # wandering between nearby ones (which shows when sharp energies are evened out).
    schedule = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps)
        if config.schedule == "cosine"
        else torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    )
    bank: ImportanceBank | None = None
    if resume is None:
        elapsed_before = checkpoint_seconds = 0.0
        if fitted is None:
            fits = fit_energies(ebm, config.fit_samples, g, device, console=console, progress=show)
            if asked() != components:
                raise PromptgenError(
                    "an energy chose its mode at its fit (debias mode=auto) and the flow no longer matches it; "
                    "call prefit() before building the flow, as compose does, or give the energy mode=tilt or mode=mixture"
                )
        else:
            fits, elapsed_before = fitted.fits, fitted.seconds
            g.set_state(fitted.generator_state)
        eval_eps = torch.randn((config.eval_batch, *flow.latent_shape), generator=g).to(device)
        bank = ImportanceBank(ebm, config.forward_samples, g, device) if config.forward_weight > 0 else None
        first, history, adaptations = 1, [], []
        skipped = rollbacks = 0
        resumed_at: list[int] = []
    else:
        check_resumable(resume, flow, opt, schedule, g, config)
        try:
            flow.load_state_dict(resume["flow"])
            opt.load_state_dict(resume["optimizer"])
            schedule.load_state_dict(resume["scheduler"])
            g.set_state(resume["generator"])
            torch.set_rng_state(resume["torch_rng"])
        except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise ArtifactError(f"'checkpoint' cannot be restored ({type(exc).__name__}: {one_line(str(exc))[:120]}); {RESUME_HINT}") from None
        load_energy_states(ebm.terms, resume["energies"], "checkpoint")
        fits, history, adaptations = resume["fits"], resume["history"], resume["adaptations"]
        eval_eps = resume["eval_eps"].to(device)
        if resume.get("bank") is not None:
            bank = ImportanceBank.restore(ebm, resume["bank"], device)
        first = int(resume["step"]) + 1
        skipped, rollbacks = int(resume["skipped"]), int(resume["rollbacks"])
        resumed_at = [*resume["resumed_at"], int(resume["step"])]
        elapsed_before, checkpoint_seconds = float(resume["seconds"]), float(resume["checkpoint_seconds"])
    model = torch.nn.parallel.DistributedDataParallel(flow) if dist.active else flow
    labels = [t.label for t in ebm.terms]
    running: dict[str, float] = {}
    bad_in_a_row = 0

    def snapshot(step: int) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "step": step,
            "flow": {k: v.detach().cpu().clone() for k, v in flow.state_dict().items()},
            "optimizer": copy.deepcopy(opt.state_dict()),
            "scheduler": schedule.state_dict(),
            "generator": g.get_state(),
            "torch_rng": torch.get_rng_state(),
            "energies": energy_states(ebm),
            "fits": fits,
            "history": list(history),
            "adaptations": list(adaptations),
            "eval_eps": eval_eps.cpu(),
            "bank": bank.state() if bank is not None else None,
            "skipped": skipped,
            "rollbacks": rollbacks,
            "resumed_at": resumed_at,
            "seconds": elapsed_before + time.perf_counter() - t0,
            "checkpoint_seconds": checkpoint_seconds,
            "config": config.model_dump(mode="json"),
        }

    good = snapshot(first - 1)

    def describe() -> str:
        parts = [f"loss {running.get('loss', math.nan):8.3f}"]
        parts += [f"{escape(lab)} {running.get(lab, math.nan):.3f}" for lab in labels]
        if skipped:
            parts.append(f"skipped {skipped}")
        return "  ".join(parts)

    bar = progress_bar(console, show, "training")
    with bar:
        task = bar.add_task(describe(), total=config.steps, completed=first - 1)
        step = first
        while step <= config.steps:
            opt.zero_grad(set_to_none=True)
            stats: dict[str, float] = {}
            anneal = config.anneal(step)
            finite = True
            for micro in range(config.accumulate):
                # Every process draws the whole batch and keeps its slice: the same noise as one process.
                eps = torch.randn((config.batch_size, *flow.latent_shape), generator=g)[part].to(device)
                # A mixture's components in turn, continuing from one batch to the next.
                offset = ((step - 1) * config.accumulate + micro) * config.batch_size
                classes = training_classes(components, config.batch_size, offset)
                classes = None if classes is None else classes[part].to(device)
                loss, pot, _ = ebm.reverse_kl(model, eps, anneal, classes)
                total = loss.mean()
                if bank is not None:
                    nll = -flow.log_prob(bank.draw(config.batch_size, g)[part]).mean()
                    total = total + anneal * config.forward_weight * nll
                finite = finite and bool(torch.isfinite(total))
                (total / config.accumulate).backward()
                for k, v in {"loss": loss, **pot.energies}.items():
                    stats[k] = stats.get(k, 0.0) + float(v.detach().mean()) / config.accumulate
            # One reduction gives both the clipping and the check: the norm is not finite iff a gradient is not.
            norm = torch.nn.utils.clip_grad_norm_(params, config.clip_grad if config.clip_grad is not None else math.inf)
            bad = any_true(dist, not (finite and bool(torch.isfinite(norm))), device)
            if bad:
                opt.zero_grad(set_to_none=True)
                skipped += 1
                bad_in_a_row += 1
                schedule.step()  # the schedule keeps time with the steps
                if bad_in_a_row >= config.max_bad_steps:
                    if rollbacks >= config.max_rollbacks:
                        raise TrainingDiverged(
                            f"training diverged: {bad_in_a_row} steps in a row with a non-finite loss or gradient at step {step}, "
                            f"after {rollbacks} rollbacks to lower learning rates; lower --lr or the energies' weights, or check the energies"
                        )
                    flow.load_state_dict(good["flow"])
                    opt.load_state_dict(good["optimizer"])
                    rollbacks += 1
                    bad_in_a_row = 0
                    for group in opt.param_groups:
                        group["lr"] *= 0.5
                    schedule.base_lrs = [lr * 0.5 for lr in schedule.base_lrs]
            else:
                bad_in_a_row = 0
                opt.step()
                schedule.step()
                for k, v in stats.items():  # exponential moving average for the display
                    running[k] = v if k not in running else 0.9 * running[k] + 0.1 * v
            if config.adapting(step):
                row = adapt_energies(ebm, flow, step, g, device)
                if row and bank is not None:
                    bank.reweight()
                    row["forward ess"] = bank.ess
                if row:
                    adaptations.append({"step": float(step), **row})
            if dist.main and (step % config.eval_every == 0 or step == config.steps):
                metrics = evaluate(ebm, flow, eval_eps)
                history.append({"step": float(step), "seconds": elapsed_before + time.perf_counter() - t0, **metrics})
                if on_eval is not None:
                    on_eval(step, metrics)
            if step % config.checkpoint_every == 0 and not bad:
                good = snapshot(step)
                if checkpoint is not None and dist.main:
                    t = time.perf_counter()
                    save_checkpoint(checkpoint, good)
                    checkpoint_seconds += time.perf_counter() - t
            if show and (step % 5 == 0 or step == config.steps):
                bar.update(task, completed=step, description=describe())
            step += 1
    if skipped >= config.steps:  # the flow never moved: saving it would pass the base generator off as trained
        raise TrainingDiverged(
            f"training failed: all {config.steps} steps had a non-finite loss or gradient, so the flow never moved and "
            "nothing was saved; lower --lr or the energies' weights, or check the energies"
        )
    final = history[-1] if history else {"loss": math.nan}
    return TrainingSummary(
        config=config,
        device=str(device),
        seconds=elapsed_before + time.perf_counter() - t0,
        final_loss=final["loss"],
        final_terms={k: final[k] for k in labels if k in final},
        history=history,
        fits=fits,
        adaptations=adaptations,
        skipped_steps=skipped,
        rollbacks=rollbacks,
        processes=dist.world,
        resumed_at=resumed_at,
        checkpoint_seconds=checkpoint_seconds,
    )
