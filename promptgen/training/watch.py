"""What a run watches while it trains: the prompt's own samples, judged at each periodic evaluation.

A flow trained against a classifier can meet its target by drawing images its generator rarely makes, which
the classifier takes for what was asked (blobs read as 3s). The only defence that does not trust the control
classifier is to look at the samples with models that define no energy: an evaluator's realism check (the share
of *junk*) and the evaluators' histograms of the asked attributes. compose builds such a watch
(:mod:`promptgen.composing.watch`); the trainer calls it and acts on what it says (:class:`Guard`).

This module holds what the trainer needs to know of a watch: the :class:`Reading` it returns and the
:class:`Watch` protocol. It knows nothing of classifiers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # the command line reads the settings without importing torch
    from torch import Tensor

#: What a run does when a reading is unhealthy (junk above the generator's by more than the margin):
#: ``keep-best`` ends with the flow of the best healthy reading when the last one is not healthy;
#: ``back-off`` halves every energy's weight from then on (and keeps the best, as keep-best);
#: ``realism`` doubles the realism weight of every energy that has one (``realism=`` in its spec), up to
#: :data:`MAX_REALISM_FACTOR` times its own, and keeps the best, as keep-best;
#: ``off`` only reports. (docs/robust-controls.md, "The guard", measured each on the panel.)
GUARDS = ("keep-best", "back-off", "realism", "off")
Guard = Literal["keep-best", "back-off", "realism", "off"]
#: The most the ``realism`` guard multiplies an energy's realism weight by (3 → 24 at the default).
MAX_REALISM_FACTOR = 8.0

#: A KL that cannot be computed (every sample junk) is recorded as this many nats: JSON has no infinity.
NO_FIGURE = 99.0


class TargetReading(BaseModel):
    """One asked attribute, judged on the samples of a reading.

    ``value`` is the KL divergence (nats) of the judged histogram to the target distribution (``kind="kl"``,
    lower is better) or the share of the asked classes (``kind="share"``, higher is better), computed on the
    samples that pass the realism check; ``base`` is the same of the generator on the same noise.
    """

    model_config = ConfigDict(extra="forbid")

    energy: str
    attribute: str
    judges: list[str]
    independent: bool
    kind: Literal["kl", "share"]
    value: float
    base: float
    goal: float
    met: bool
    histogram: list[float] = Field(default_factory=list)
    # What `flag_failures` reads besides the figure (recorded by compose's closing check; empty in older manifests).
    labels: list[str] = Field(default_factory=list, description="the attribute's classes, in the histograms' order")
    target: list[float] | None = Field(default=None, description="the asked distribution over labels, if any")
    asked: list[str] = Field(default_factory=list)
    avoided: list[str] = Field(default_factory=list)
    counted: int = Field(default=0, description="samples the histogram counts (those that pass the realism check)")
    base_histogram: list[float] = Field(default_factory=list, description="the generator's histogram on the same noise")
    base_counted: int = 0
    diversity: float | None = Field(default=None, description="diversity of the samples of the asked classes")
    base_diversity: float | None = None
    diversity_n: int = 0
    base_diversity_n: int = 0

    @property
    def shortfall(self) -> float:
        """How far from perfect (0 is perfect): the KL, or the share of samples not asked for."""
        return self.value if self.kind == "kl" else 1.0 - self.value

    @property
    def unconfirmed(self) -> bool:
        """Met, but by less than the noise of its samples: a share whose one-sided 95 % lower bound
        (:data:`CONFIRM_Z` standard errors, of ``counted`` samples) is under the goal. A KL is not bounded this way:
        its plug-in estimate already reads high on few samples (about (classes − 1) / 2n nats)."""
        if not self.met or self.kind != "share" or self.counted <= 0:
            return False
        se = math.sqrt(max(self.value * (1.0 - self.value), 0.0) / self.counted)
        return self.value - CONFIRM_Z * se < self.goal

    @property
    def closer(self) -> bool:
        """Whether the prompt is closer to the target than the generator is."""
        return self.value < self.base if self.kind == "kl" else self.value > self.base

    def describe(self) -> str:
        judge = "+".join(self.judges) + ("" if self.independent else " (the control classifier: no evaluator is installed)")
        if self.kind == "kl":
            return f"{self.energy}: {self.attribute} KL {self.value:.4f} to the target (generator {self.base:.4f}; goal ≤ {self.goal:g}) by {judge}"
        return f"{self.energy}: {self.value:.1%} {self.attribute} as asked (generator {self.base:.1%}; goal ≥ {self.goal:.0%}) by {judge}"


class Reading(BaseModel):
    """What a watch saw of ``n`` samples of the flow after ``step`` steps (step 0: the generator itself).

    Attributes:
        junk: the share of the prompt's samples the realism check rejects (None: no check).
        base_junk: the same for the generator on the same noise.
        junk_margin: how far ``junk`` may exceed ``base_junk`` and still count as healthy.
        healthy: ``junk`` is within the margin (True when there is no check).
        targets: each asked attribute's figure.
        score: what the guard keeps the lowest of among healthy readings: the targets' shortfalls summed, or the
            training loss when no attribute is judged.
        realism: which check judged the junk.
        unjudged: each asked target nothing installed could judge, and why: a prompt with one is never "met".
    """

    model_config = ConfigDict(extra="forbid")

    step: int
    n: int
    junk: float | None = None
    base_junk: float | None = None
    junk_margin: float | None = None
    healthy: bool = True
    targets: list[TargetReading] = Field(default_factory=list)
    score: float = 0.0
    realism: str | None = None
    unjudged: list[str] = Field(default_factory=list)
    diversity: float | None = Field(default=None, description="mean pairwise feature distance of the samples (closing check)")
    base_diversity: float | None = None
    diversity_features: str | None = Field(default=None, description="whose feature space the diversities are in")

    @property
    def met(self) -> bool:
        """Every target judged and met, without making junk."""
        return self.healthy and not self.unjudged and all(t.met for t in self.targets)

    @property
    def confirmed(self) -> bool:
        """Met, and by more than the noise of the samples judged: no share and no junk within :data:`CONFIRM_Z`
        standard errors of its limit (what ``--until-met`` asks of two readings before it stops)."""
        return self.met and not self.junk_unconfirmed and not any(t.unconfirmed for t in self.targets)

    @property
    def junk_rose(self) -> bool:
        return not self.healthy

    @property
    def allowed_rise(self) -> float:
        """How far the junk may rise over the generator's: the reading's margin, else :data:`JUNK_MARGIN`."""
        return JUNK_MARGIN if self.junk_margin is None else self.junk_margin

    @property
    def junk_unconfirmed(self) -> bool:
        """The junk stayed within the margin, but by less than the noise of ``n`` samples: its rise over the
        generator's, bounded one-sided at 95 % (:func:`junk_rise_bound`), passes the margin."""
        if not self.healthy or self.junk is None or self.base_junk is None:
            return False
        return junk_rise_bound(self.base_junk, self.junk, self.n) > self.allowed_rise

    def describe_junk(self) -> str:
        if self.junk is None or self.base_junk is None:
            return "junk not measured: no realism check judges this generator's images (--realism names one)"
        return f"junk {self.junk:.1%} (generator {self.base_junk:.1%}, allowed up to {self.base_junk + (self.junk_margin or 0):.1%})"


@runtime_checkable
class Watch(Protocol):
    """Judges samples: once the generator's (:meth:`baseline`, its reading at step 0), then the flow's at each
    evaluation (:meth:`read`; ``strict`` holds the junk to the generator's plus :data:`JUNK_MARGIN` exactly)."""

    def baseline(self, images: Tensor) -> Reading: ...

    def read(self, images: Tensor, step: int, loss: float = 0.0, *, strict: bool = False) -> Reading: ...


def better(a: Reading, b: Reading) -> bool:
    """Whether reading ``a`` is strictly better than ``b``: one whose junk stayed within the margin beats one whose
    junk rose; between two that stayed, one that meets every target beats one that does not, then the lower score;
    between two that rose, the lower junk rate."""
    if a.healthy != b.healthy:
        return a.healthy
    if a.healthy:
        if a.met != b.met:
            return a.met
        return a.score < b.score
    return (a.junk or 0.0) < (b.junk or 0.0)


#: A junk rate counts as risen when it exceeds the generator's by more than this (2 points)...
JUNK_MARGIN = 0.02
#: A figure is called met only when it would still meet its goal this many standard errors worse (the one-sided
#: 95 % normal quantile). Issue 24: a closing check of 2,000 samples read a prompt's junk at 5.1 % (allowed 5.3 %)
#: where 5,000 other samples read 6.2 %, and compose printed "met".
CONFIRM_Z = 1.645


def junk_rise_bound(base: float, prompt: float, n: int) -> float:
    """How far the junk rate may have risen over the generator's, one-sided 95 % upper bound, on ``n`` samples each
    (the two rates treated as independent, which overstates the noise of a paired reading: the safe side).

    >>> round(junk_rise_bound(0.033, 0.051, 2000), 4), round(junk_rise_bound(0.085, 0.072, 2000), 4)
    (0.0284, 0.001)
    """
    return prompt - base + CONFIRM_Z * _rise_se(base, prompt, n)


def _rise_se(base: float, prompt: float, n: int) -> float:
    """The standard error of the difference of two junk rates of ``n`` samples each, taken as independent."""
    return math.sqrt((base * (1 - base) + prompt * (1 - prompt)) / max(n, 1))


def junk_margin(base: float, prompt: float, n: int, least: float = JUNK_MARGIN) -> float:
    """How far a junk rate may exceed the generator's on ``n`` samples each before it counts as risen: ``least``
    (:data:`JUNK_MARGIN`), or twice the standard error of the difference of the two rates, whichever is larger
    (so that a few hundred samples do not cry wolf).

    >>> junk_margin(0.01, 0.02, 5000), round(junk_margin(0.1, 0.12, 200), 3)
    (0.02, 0.063)
    """
    return max(least, 2 * _rise_se(base, prompt, n))


def stratified_classes(weights: list[float], n: int) -> Tensor:
    """(n,) mixture components in the proportions ``weights`` (rounded so they sum to ``n``), in order: a watch
    sees each component as often as sampling would, without the noise of drawing them.

    >>> stratified_classes([0.5, 0.25, 0.25], 8).tolist()
    [0, 0, 0, 0, 1, 1, 2, 2]
    """
    import torch

    w = torch.tensor(weights, dtype=torch.float64).clamp_min(0)
    edges = torch.round(torch.cumsum(w / w.sum(), 0) * n).long()
    counts = torch.diff(edges, prepend=torch.zeros(1, dtype=torch.long))
    return torch.repeat_interleave(torch.arange(len(weights)), counts)


__all__ = [
    "CONFIRM_Z",
    "GUARDS",
    "JUNK_MARGIN",
    "MAX_REALISM_FACTOR",
    "NO_FIGURE",
    "Guard",
    "Reading",
    "TargetReading",
    "Watch",
    "better",
    "junk_margin",
    "junk_rise_bound",
    "stratified_classes",
]
