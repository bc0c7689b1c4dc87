"""Training settings (:class:`TrainConfig`, with the limits a new run is held to) and what a run reports (:class:`TrainingSummary`)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from promptgen.core.errors import SettingsError, SpecError, one_line
from promptgen.training.tracking import LogChoice
from promptgen.training.watch import Guard, Reading

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
    "forward_samples": MAX_SAMPLES, "forward_weight": 1e6, "check_samples": MAX_SAMPLES,
}


class Checked(BaseModel):
    """A settings model whose direct construction (``TrainConfig(steps=-1)``) refuses a value with a one-line
    :class:`~promptgen.core.errors.SettingsError` (a :class:`SpecError`), not pydantic's multi-line error."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(map(str, err["loc"]))
            shown = repr(err.get("input"))
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise SettingsError(
                f"{type(self).__name__}: {field + '=' + shown + ': ' if field else ''}{one_line(err['msg']).rstrip('.').lower()}; "
                f"see help(promptgen.{type(self).__name__})",
                exc.errors(),
            ) from None


class TrainConfig(Checked):
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
    eval_batch: int = Field(default=512, ge=1, description="samples of each periodic evaluation and of the watch's readings")
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
    guard: Guard = Field(
        default="keep-best",
        description="what a run does when its watch sees the junk rate rise above the generator's: keep-best (end with the "
        "best flow whose junk stayed within the margin), back-off (also halve the energies' weights), realism (also double "
        "the realism weight of the energies that have one, up to 8 times their own), off (only report)",
    )
    until_met: bool = Field(
        default=False,
        description="stop at the first periodic evaluation where every asked target is met without junk, confirmed on a "
        "second batch of fresh samples; never past steps",
    )
    check_samples: int = Field(default=2000, ge=0, description="samples of the closing check compose prints (0: none)")
    log: LogChoice = Field(
        default="auto",
        description="where every step's loss and energy terms, and each evaluation's figures and samples, are logged: auto "
        "(TensorBoard when it is installed, else nothing), tensorboard, wandb (Weights & Biases) or none",
    )
    log_dir: str | None = Field(
        default=None, min_length=1, max_length=4096, pattern=r"^[^\x00]+$", description="the logs' folder (default: logs/ in the run's folder)"
    )

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
    watch: list[Reading] = Field(default_factory=list, description="what the watch saw at each evaluation (step 0: the generator)")
    kept_step: int | None = Field(
        default=None, description="the step whose flow was kept instead of the last one, when the last made junk (guard keep-best)"
    )
    stopped_at: int | None = Field(
        default=None, description="the step --until-met stopped at, its targets met on the evaluation's samples and on a second batch"
    )
    confirmation: Reading | None = Field(default=None, description="--until-met's reading of the second batch, which confirmed the stop")
    realism_factor: float = Field(
        default=1.0, description="what the realism guard multiplied the energies' realism weights by (1: it never acted)"
    )
    step_history: list[dict[str, float]] = Field(
        default_factory=list,
        description="every step's loss and energy terms ({'step', 'loss', label...}), averaged over windows of steps past "
        "2,000 steps (promptgen.training.tracking.StepHistory)",
    )


class TrialRecord(BaseModel):
    """One mode's whole run under ``mode=auto`` (:mod:`promptgen.composing.trials`): the energy, the mode, its steps
    and seconds, the closing check's reading of it, whether it was kept, and (for a mode kept from the side) how
    its training went."""

    model_config = ConfigDict(extra="forbid")

    energy: str
    mode: str
    steps: int
    seconds: float
    reading: Reading
    chosen: bool = False
    training: TrainingSummary | None = None
    states: dict[str, dict[str, list[float]]] = Field(default_factory=dict, description="the energies' states at the end of the run")


__all__ = ["LIMITS", "MAX_BATCH", "MAX_SAMPLES", "MAX_SEED", "MAX_STEPS", "MIN_SEED", "TrainConfig", "TrainingSummary", "TrialRecord"]


class FlowConfig(Checked):
    """Shape of the flow; stored in the prompt's manifest so it can be rebuilt.

    Attributes:
        features: the coordinates the flow changes (the latent's size, less ``passthrough``).
        latent_shape: shape of one latent; defaults to ``(features + passthrough,)``.
        passthrough: trailing coordinates left unchanged: a generator's own noise.
        transforms: number of coupling layers.
        hidden: width of the two hidden layers of each coupling's network.
        mask_seed: seed of the random coupling masks.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["affine-coupling", "spline-coupling"] = "spline-coupling"
    features: int = Field(gt=1)
    latent_shape: tuple[int, ...] | None = None
    passthrough: int = Field(default=0, ge=0, le=2**40)
    transforms: int = Field(default=4, ge=1, le=64)
    hidden: int = Field(default=128, ge=1, le=8192)
    mask_seed: int = Field(default=0, ge=0, lt=2**63)
    bins: int = Field(default=8, ge=2, le=64, description="spline bins (spline-coupling only)")
    conditions: int = Field(
        default=0,
        ge=0,
        le=64,
        description="coordinates of a conditional prompt's condition: each coupling also sees them (0: none)",
    )
    classes: int = Field(
        default=0,
        ge=0,
        le=4096,
        description="components of a mixture prompt: each coupling also sees a one-hot of the component (0: none)",
    )

    @model_validator(mode="after")
    def _shape_matches_features(self) -> FlowConfig:
        # A manifest is read from a file: a shape that disagrees with features would only fail while sampling.
        shape = self.latent_shape
        total = self.features + self.passthrough
        if shape and (any(d < 1 for d in shape) or math.prod(shape) != total):
            raise ValueError(
                f"latent_shape {shape} must be positive sizes whose product is features + passthrough = {total}"
            )
        return self

    def shape(self) -> tuple[int, ...]:
        return tuple(self.latent_shape) if self.latent_shape else (self.features + self.passthrough,)

    def size_bound(self) -> int:
        """An upper bound on the numbers in the flow's state_dict (weights and masks), without building it.

        Each coupling's network maps at most ``features`` inputs through two hidden
        layers to at most ``features`` × (parameters per feature) outputs. Used to
        refuse a manifest that describes a far larger flow than its weights file
        holds before allocating it.

        >>> from promptgen.training.flow import CouplingFlow
        >>> config = FlowConfig(features=32, transforms=4, hidden=16)
        >>> actual = sum(t.numel() for t in CouplingFlow(config).state_dict().values())
        >>> actual <= config.size_bound() <= 4 * actual
        True
        """
        per_feature = 3 * self.bins - 1 if self.kind == "spline-coupling" else 2
        f, h = self.features, self.hidden
        return self.transforms * (f + (f + self.classes + self.conditions) * h + h + h * h + h + (h + 1) * f * per_feature)
