"""What `promptgen eval` measures: the :class:`EvalReport` models (pydantic; their JSON keys are stable)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from promptgen.evaluation.flags import Flag

EVAL_FORMAT = "promptgen-eval"
#: 4: 95 % bootstrap intervals (``*_ci``, ``intervals``), diversity within the asked classes, ``flags``; every new
#: field has a default, so a format-3 report still loads.
EVAL_FORMAT_VERSION = 4

#: A 95 % interval (low, high) of the figure beside it.
Interval = tuple[float, float]


class _Model(BaseModel):
    # Infinite numbers (a KL against a target with zero mass) are written as the string "Infinity".
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class Moments(_Model):
    """Mean and standard deviation of one energy over the samples (the energy's own units)."""

    mean: float
    std: float


class AttributeSide(_Model):
    """How one side (base or prompt) fares on one attribute.

    With a realism check, every figure below is of the samples that pass it, and the share it rejects is
    ``junk``, beside them: a blob the evaluator reads as a 3 is junk, not a 3. Without one they are of all samples.

    Attributes:
        histogram: share of the counted samples in each class (sums to 1, or to 0 when none is counted), in
            ``labels`` order, by the evaluator's top class.
        junk: share of all samples the realism check rejects (None without one).
        counted: how many samples the histogram counts.
        kl: ``KL(histogram ‖ target)`` in nats, when the target is a distribution.
        tv: total variation ``½ Σ |histogram − target|``, when the target is a distribution.
        share: share of counted samples whose class is asked (and not avoided), when
            classes are asked or avoided.
        histogram_all, kl_all: the histogram and KL of every sample, junk included (as before format 3).
        histogram_ci, junk_ci, kl_ci, share_ci: 95 % bootstrap intervals of each class share, the junk share, the
            KL and the share (see :class:`Intervals`); None in reports before format 4.
        diversity, diversity_n: the diversity (mean pairwise feature distance) of the counted samples of the asked
            (not avoided) classes, and how many samples it is of, when classes are asked or avoided.
    """

    histogram: list[float]
    junk: float | None = None
    counted: int | None = None
    kl: float | None = None
    tv: float | None = None
    share: float | None = None
    histogram_all: list[float] | None = None
    kl_all: float | None = None
    histogram_ci: list[Interval] | None = None
    junk_ci: Interval | None = None
    kl_ci: Interval | None = None
    share_ci: Interval | None = None
    diversity: float | None = None
    diversity_n: int | None = None


class AttributeEval(_Model):
    """One judged attribute.

    Attributes:
        attribute: name; a joint one joins its parts with ``*``.
        labels: its classes, in histogram order.
        origin: ``prompt`` (an energy of the prompt asks it), ``ancestor`` (an
            energy of an ancestor prompt of a chain does) or ``asked`` (``--attr``).
        energy: the spec of the energy that asks it (None for ``--attr``).
        ancestor: the folder of the ancestor prompt, for origin ``ancestor``.
        target, asked, avoided: what is asked (see :class:`~promptgen.core.protocols.AttributeTarget`).
        evaluators: the classifier that judged each part.
        independent: True if every part was judged by an evaluator-role
            classifier, not by a model that can define energies.
        available: False when no installed classifier can judge it (see ``reason``).
    """

    attribute: str
    labels: list[str]
    origin: Literal["prompt", "ancestor", "asked"]
    energy: str | None = None
    ancestor: str | None = None
    target: list[float] | None = None
    asked: list[str] = Field(default_factory=list)
    avoided: list[str] = Field(default_factory=list)
    evaluators: list[str] = Field(default_factory=list)
    independent: bool = False
    available: bool = True
    reason: str | None = None
    base: AttributeSide | None = None
    prompt: AttributeSide | None = None
    met: bool | None = Field(
        default=None, description="the prompt reached the goal (KL ≤ 0.02, or ≥ 95 % asked) without raising the junk rate; None: nothing asked"
    )


class EnergyEval(_Model):
    """Statistics of one of the prompt's energies (unweighted), or why it could not be rebuilt."""

    spec: str
    label: str
    weight: float
    available: bool = True
    reason: str | None = None
    base: Moments | None = None
    prompt: Moments | None = None


class SideEval(_Model):
    """Sample-level numbers of one side.

    Attributes:
        n: samples drawn.
        seconds: time spent drawing them (flow and generator; judging excluded).
        samples_per_second: ``n / seconds``.
        diversity: mean pairwise Euclidean distance in the feature space (of at
            most 1000 samples); a collapse shows as a small value.
        frechet: Fréchet distance to the reference images in the feature space
            (None without ``--data``).
        junk_rate: share of samples the realism check rejects (None without one).
        frechet_ci, junk_rate_ci: their 95 % bootstrap intervals (None before format 4).
    """

    n: int
    seconds: float
    samples_per_second: float
    diversity: float
    frechet: float | None = None
    junk_rate: float | None = None
    frechet_ci: Interval | None = None
    junk_rate_ci: Interval | None = None


class Intervals(_Model):
    """How the ``*_ci`` intervals were made: a bootstrap over each side's ``n`` samples.

    Attributes:
        level: their coverage (0.95).
        resamples: resamples behind shares, junk rates and KL divergences.
        frechet_resamples: resamples behind each Fréchet distance.
        seed: the resamples' seed.
        method: in words.
    """

    level: float
    resamples: int
    frechet_resamples: int
    seed: int
    method: str


class EvalReport(_Model):
    """Everything `promptgen eval` measures; ``--json`` prints it, ``promptgen report`` renders it."""

    format: Literal["promptgen-eval"] = EVAL_FORMAT
    format_version: int = EVAL_FORMAT_VERSION
    created: str = Field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    prompt_path: str | None
    generator: str = Field(description="the base: the prompt's generator spec")
    n: int
    seed: int
    features: str = Field(description="the feature space of diversity and Fréchet distances")
    reference: str | None = Field(default=None, description="the --data the Fréchet distances compare with")
    reference_n: int | None = None
    frechet_base_prompt: float | None = Field(default=None, description="Fréchet distance between base and prompt samples")
    frechet_exact: float | None = Field(
        default=None,
        description="Fréchet distance to the reference of exact samples of the prompt's target: base samples weighted by exp(-sum w E) "
        "(for a mixture prompt, the tilt whose weights its components share: what the mixture stands for)",
    )
    exact_ess: float | None = Field(default=None, description="effective sample size of the weights behind frechet_exact")
    frechet_base_prompt_ci: Interval | None = None
    frechet_exact_ci: Interval | None = None
    intervals: Intervals | None = Field(default=None, description="how the *_ci intervals were made (None before format 4)")
    realism: str | None = Field(default=None, description="the realism check behind the junk rates")
    warnings: list[str] = Field(default_factory=list, description="signs that the prompt's samples left the generator's usual output")
    flags: list[Flag] = Field(
        default_factory=list,
        description="every failure the figures show (missed target, collapse, lost class, junk, Fréchet distance), each "
        "naming the figure, the generator's and a next step (promptgen.evaluation.flags); the warnings are among them",
    )
    verdict: list[str] = Field(default_factory=list, description="each target's figure, the junk rate, and what was not met: the first thing to read")
    met: bool | None = Field(default=None, description="every asked target met without raising the junk rate (None: nothing asked)")
    base: SideEval
    prompt: SideEval
    attributes: list[AttributeEval]
    energies: list[EnergyEval]
    versions: dict[str, str] = Field(default_factory=dict)

    def side(self, name: str) -> SideEval:
        return self.base if name == "base" else self.prompt


@dataclass
class Evaluation:
    """An :class:`EvalReport` with the first samples of each side (for pictures).

    Attributes:
        report: the numbers.
        images: ``"base"`` / ``"prompt"`` -> (k, C, H, W) in [0, 1] on the CPU,
            the first ``keep`` samples that were judged.
        realism: ``"base"`` / ``"prompt"`` -> (n,) realism scores (empty without a realism check).
    """

    report: EvalReport
    images: dict[str, Tensor] = field(default_factory=dict)
    realism: dict[str, Tensor] = field(default_factory=dict)


__all__ = [
    "EVAL_FORMAT",
    "EVAL_FORMAT_VERSION",
    "AttributeEval",
    "AttributeSide",
    "EnergyEval",
    "EvalReport",
    "Evaluation",
    "Interval",
    "Intervals",
    "Moments",
    "SideEval",
]
