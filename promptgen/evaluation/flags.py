"""Every failure a prompt's figures show, as one warning each: :func:`flag_failures`.

One rule, on plain numbers, for `promptgen eval`, `promptgen report` and compose's closing check alike:

- ``missed``: an asked target's figure short of its goal (KL ≤ 0.02 nats to a target distribution, ≥ 95 % of
  the asked classes);
- ``collapse``: the prompt's diversity (mean pairwise feature distance) below :data:`DIVERSITY_RATIO` times the
  generator's, compared within the asked classes where an energy asks for classes (a prompt asking for 3s is
  compared with the generator's 3s, not with all its digits);
- ``coverage``: a class the generator makes at :data:`COVERAGE_BASE` or more that the prompt nearly never makes
  (under :data:`COVERAGE_LOST` of what it should), although its target did not ask to remove it (a class asked
  away, avoided or given no mass by the target is not counted);
- ``junk``: the prompt's junk rate above the generator's by more than the watch's margin
  (:func:`~promptgen.training.watch.junk_margin`);
- ``frechet``: the prompt's Fréchet distance to real images over :data:`FRECHET_RATIO` times that of exact samples
  of its target.

Each :class:`Flag` names the figure, the generator's figure and a next step. The thresholds were chosen on the
built-in ``mnist`` generator and the digit panel's ``panel-mlp-gan`` (docs/evaluation.md, "Flags").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

from promptgen.core.judging import GOAL_KL, GOAL_SHARE
from promptgen.training.watch import junk_margin

#: A prompt's diversity below this share of the generator's (within the asked classes) is a collapse. Chosen on
#: the four held-out benchmark prompts (docs/evaluation.md, "Flags"): debias:digit on mnist 1.01, classifier:digit=6
#: on panel-mlp-gan 0.92 of its generator's 6s, classifier:digit=3 on mnist 0.52 of its 3s (weight 100 asks for the
#: surest 3s: a narrower target, not a collapse); issue 26's collapsed energy prompt read 0.36 (14.0 -> 5.1).
DIVERSITY_RATIO = 0.45
#: Within the asked classes the threshold is lower: a classifier energy asks for the surest examples of its class, a
#: narrower target than the generator's (README's demo, classifier:digit=3 at the default weight 100 on mnist: 0.42 of
#: the generator's 3s, a clean grid of varied 3s; at weight 30, 0.52). A prompt of a few repeated images reads near 0.
ASKED_DIVERSITY_RATIO = 0.25
#: Where an energy asks for classes but too few samples of them compare, all samples are compared against this far
#: lower ratio: a prompt of one digit reads 0.30 of its generator's over all samples without collapsing.
NARROWED_DIVERSITY_RATIO = 0.15
#: Diversities of fewer samples than this (of the asked classes) are not compared.
MIN_DIVERSITY_SAMPLES = 20
#: A class is judged for coverage when the generator makes at least this share of it ...
COVERAGE_BASE = 0.02
#: ... and counted as lost when the prompt makes under this fraction of what it should (the target's share, or
#: the generator's where the target does not say) ...
COVERAGE_LOST = 0.1
#: ... when that many samples would have shown at least this many of it (so a small -n does not cry wolf).
MIN_EXPECTED = 20.0
#: A prompt's Fréchet distance to the reference over this many times that of exact samples of its target ...
FRECHET_RATIO = 1.5
#: ... judged only where the weights behind the exact samples have this effective sample size.
MIN_ESS = 50.0

Kind = Literal["missed", "collapse", "coverage", "junk", "frechet"]


class Flag(BaseModel):
    """One failure: which kind, the figure and the generator's, and the whole line to print (with a next step)."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")

    kind: Kind
    figure: str
    value: float
    base: float | None = None
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class AttributeFigures:
    """One judged attribute's numbers (shares in [0, 1], in ``labels`` order, of the samples the realism check passed).

    Attributes:
        attribute: its name (a joint one ``a*b``).
        labels: its classes.
        prompt, base: the class histograms of prompt and generator.
        prompt_counted, base_counted: how many samples each histogram counts.
        target: the asked distribution over ``labels``, if any.
        asked, avoided: asked and avoided classes, if any.
        energy: the energy that asks it (its spec); None when the attribute is only judged (``--attr``), so no
            target can be missed.
        interval: the 95 % interval of the prompt's figure (the KL, else the asked share), if measured.
        prompt_diversity, base_diversity: diversity of the samples of the asked (not avoided) classes, if measured.
        prompt_diversity_n, base_diversity_n: how many samples those diversities are of.
    """

    attribute: str
    labels: Sequence[str]
    prompt: Sequence[float]
    base: Sequence[float]
    prompt_counted: int
    base_counted: int
    target: Sequence[float] | None = None
    asked: Sequence[str] = ()
    avoided: Sequence[str] = ()
    energy: str | None = None
    interval: tuple[float, float] | None = None
    prompt_diversity: float | None = None
    base_diversity: float | None = None
    prompt_diversity_n: int = 0
    base_diversity_n: int = 0


@dataclass(frozen=True)
class Figures:
    """A prompt's figures beside its generator's on ``n`` samples each, all plain numbers.

    Attributes:
        n: samples of each side.
        diversity, base_diversity: mean pairwise feature distance of all samples.
        junk, base_junk: share of samples the realism check rejects (None: no check).
        realism: the check's name, for the message.
        frechet: the prompt's Fréchet distance to real images; frechet_exact: that of exact samples of its target;
            exact_ess: the effective sample size of their weights.
        attributes: the judged attributes.
    """

    n: int
    diversity: float | None = None
    base_diversity: float | None = None
    junk: float | None = None
    base_junk: float | None = None
    realism: str | None = None
    frechet: float | None = None
    frechet_exact: float | None = None
    exact_ess: float | None = None
    attributes: Sequence[AttributeFigures] = field(default_factory=tuple)


def _wanted(a: AttributeFigures) -> list[int]:
    asked, avoided = {str(x) for x in a.asked}, {str(x) for x in a.avoided}
    return [i for i, lab in enumerate(a.labels) if (not asked or str(lab) in asked) and str(lab) not in avoided]


def _share(histogram: Sequence[float], wanted: Sequence[int]) -> float:
    return float(sum(histogram[i] for i in wanted))


def _kl(p: Sequence[float], q: Sequence[float]) -> float:
    total_p, total_q = sum(p), sum(q)
    if total_p <= 0 or total_q <= 0:
        return math.inf
    out = 0.0
    for a, b in zip(p, q):
        a, b = a / total_p, b / total_q
        if a > 0:
            if b <= 0:
                return math.inf
            out += a * math.log(a / b)
    return max(0.0, out)


def _missed(a: AttributeFigures) -> Flag | None:
    if a.energy is None or (a.target is None and not a.asked and not a.avoided):
        return None
    within = ""
    if a.target is not None:
        value, base = _kl(a.prompt, a.target), _kl(a.base, a.target)
        if value <= GOAL_KL:
            return None
        figure = f"{a.attribute} KL"
        said = f"{a.attribute} KL {value:.4g} to the target (generator {base:.4g}; goal ≤ {GOAL_KL:g})"
        closer = value < base
        if a.interval is not None and a.interval[0] <= GOAL_KL:
            within = f"; its 95 % interval [{a.interval[0]:.4g}, {a.interval[1]:.4g}] reaches the goal, so judge more samples (-n) first"
    else:
        wanted = _wanted(a)
        value, base = _share(a.prompt, wanted), _share(a.base, wanted)
        if value >= GOAL_SHARE:
            return None
        figure = f"{a.attribute} share"
        said = f"{value:.1%} {a.attribute} as asked (generator {base:.1%}; goal ≥ {GOAL_SHARE:.0%})"
        closer = value > base
        if a.interval is not None and a.interval[1] >= GOAL_SHARE:
            within = f"; its 95 % interval [{a.interval[0]:.1%}, {a.interval[1]:.1%}] reaches the goal, so judge more samples (-n) first"
    if closer:
        step = "train longer (--steps, or --resume) or raise the energy's weight (@w in the spec)"
    else:
        step = (
            "the flow moved it no closer than the generator: look at the samples, check that the energy's classifier "
            "agrees with the evaluator, and compose again (mode=mixture for a distribution, or a lower --lr)"
        )
    return Flag(kind="missed", figure=figure, value=value, base=base, message=f"{a.energy}: missed its target: {said}{within}; {step}")


def _collapse(figures: Figures) -> Flag | None:
    pairs = [
        (a, a.prompt_diversity, a.base_diversity)
        for a in figures.attributes
        if (a.asked or a.avoided) and a.prompt_diversity is not None and a.base_diversity is not None
        and min(a.prompt_diversity_n, a.base_diversity_n) >= MIN_DIVERSITY_SAMPLES and a.base_diversity > 0
    ]
    if pairs:  # compared like with like: the prompt's samples of the asked classes with the generator's
        a, value, base = min(pairs, key=lambda p: p[1] / p[2])
        assert value is not None and base is not None
        within = f" among samples of the asked {a.attribute} classes"
        ratio = ASKED_DIVERSITY_RATIO
    elif any(a.energy is not None and (a.asked or a.avoided) for a in figures.attributes):
        # An energy narrows the classes, but too few of the generator's samples are of them to compare: over all
        # samples a prompt of 3s reads 0.30 on mnist without collapsing, so only a far lower ratio is a collapse.
        if figures.diversity is None or figures.base_diversity is None or figures.base_diversity <= 0:
            return None
        if figures.diversity >= NARROWED_DIVERSITY_RATIO * figures.base_diversity:
            return None
        value, base, within = figures.diversity, figures.base_diversity, " (all samples: too few of the asked classes to compare them alone)"
        ratio = NARROWED_DIVERSITY_RATIO
    elif figures.diversity is not None and figures.base_diversity is not None and figures.base_diversity > 0:
        value, base, within = figures.diversity, figures.base_diversity, ""
        ratio = DIVERSITY_RATIO
    else:
        return None
    if value >= ratio * base:
        return None
    judged = {a.attribute for a in figures.attributes}
    attr_hint = "" if judged else " and judge which classes remain with --attr (e.g. --attr digit)"
    return Flag(
        kind="collapse", figure="diversity", value=value, base=base,
        message=(
            f"diversity {value:.3g}{within} against the generator's {base:.3g} ({value / base:.0%}; mean pairwise feature "
            f"distance): the prompt's samples collapsed onto a few modes; look at the samples{attr_hint}, and compose again "
            "with lower energy weights (@w; measured to help most, docs/evaluation.md) or a forward-KL term (--forward-weight 1)"
        ),
    )


def _coverage(a: AttributeFigures) -> Flag | None:
    wanted = _wanted(a)
    if a.energy is not None and a.asked and len(wanted) < 2:
        return None  # one asked class: the missed target says it all
    base_wanted = _share(a.base, wanted)
    lost = []
    for i in wanted:
        if a.base[i] < COVERAGE_BASE:
            continue
        if a.target is not None:
            expected = float(a.target[i]) / (sum(a.target) or 1.0)
        elif a.energy is not None and (a.asked or a.avoided):
            expected = a.base[i] / base_wanted if base_wanted > 0 else 0.0
        else:
            expected = a.base[i]
        if expected <= 0 or a.prompt_counted * expected < MIN_EXPECTED:
            continue  # asked away by the target, or too few samples to tell
        if a.prompt[i] < COVERAGE_LOST * expected:
            lost.append((i, expected))
    if not lost:
        return None
    said = ", ".join(f"{a.labels[i]} {a.prompt[i]:.1%} (generator {a.base[i]:.1%})" for i, _ in lost)
    worst = min(lost, key=lambda p: a.prompt[p[0]] / p[1])[0]
    return Flag(
        kind="coverage", figure=f"{a.attribute} {a.labels[worst]} share", value=float(a.prompt[worst]), base=float(a.base[worst]),
        message=(
            f"{a.attribute}: the prompt nearly never makes {said}, which its target did not ask to remove: it lost "
            f"{'a class' if len(lost) == 1 else f'{len(lost)} classes'} of its generator; look at the samples, and compose "
            "again with lower energy weights (@w; measured to help most, docs/evaluation.md), a forward-KL term (--forward-weight 1) or mode=mixture"
        ),
    )


def _junk(figures: Figures) -> Flag | None:
    base, prompt = figures.base_junk, figures.junk
    if base is None or prompt is None or prompt - base <= junk_margin(base, prompt, figures.n):
        return None
    check = figures.realism or "realism check"
    return Flag(
        kind="junk", figure="junk rate", value=prompt, base=base,
        message=(
            f"{prompt:.1%} of the prompt's samples fail the {check} against {base:.1%} of the generator's: "
            "the prompt makes images its generator rarely makes, which its control classifiers may take for what was asked; "
            "look at the samples, and try a control that knows what is not a digit/face (realism= in the spec) or a lower weight"
        ),
    )


def _frechet(figures: Figures) -> Flag | None:
    fd, exact = figures.frechet, figures.frechet_exact
    if fd is None or exact is None or (figures.exact_ess or 0) < MIN_ESS or fd <= FRECHET_RATIO * exact:
        return None
    return Flag(
        kind="frechet", figure="Fréchet distance", value=fd, base=exact,
        message=(
            f"the prompt's samples are {fd:.3g} from the reference images (Fréchet distance), {fd / exact:.1f} times the "
            f"{exact:.3g} of exact samples of the same target: the flow found images the energies like but the generator "
            "rarely makes; look at the samples"
        ),
    )


def flag_failures(figures: Figures) -> list[Flag]:
    """Every failure ``figures`` show, one :class:`Flag` each (none for a prompt that met its targets as its
    generator would): junk and Fréchet distance first (they say whether the other figures can be trusted), then
    missed targets, lost classes and a collapse of diversity.

    >>> ok = AttributeFigures("digit", ["0", "1"], prompt=[0.5, 0.5], base=[0.7, 0.3], prompt_counted=1000,
    ...                       base_counted=1000, target=[0.5, 0.5], energy="debias:digit")
    >>> flag_failures(Figures(n=1000, diversity=14.0, base_diversity=14.2, attributes=[ok]))
    []
    >>> [f.kind for f in flag_failures(Figures(n=1000, diversity=5.1, base_diversity=14.0))]
    ['collapse']
    """
    out = [f for f in (_junk(figures), _frechet(figures)) if f is not None]
    out += [f for a in figures.attributes if (f := _missed(a)) is not None]
    out += [f for a in figures.attributes if (f := _coverage(a)) is not None]
    collapse = _collapse(figures)
    return out + ([collapse] if collapse is not None else [])


__all__ = [
    "ASKED_DIVERSITY_RATIO",
    "COVERAGE_BASE",
    "COVERAGE_LOST",
    "DIVERSITY_RATIO",
    "FRECHET_RATIO",
    "MIN_DIVERSITY_SAMPLES",
    "MIN_ESS",
    "MIN_EXPECTED",
    "NARROWED_DIVERSITY_RATIO",
    "AttributeFigures",
    "Figures",
    "Flag",
    "flag_failures",
]
