"""An :class:`EvalReport`'s flags (:func:`report_flags`), and among them the signs that a prompt's samples left its
generator's usual output (:func:`realism_warnings`). The rule itself is :func:`promptgen.evaluation.flags.flag_failures`."""

from __future__ import annotations

from promptgen.evaluation.flags import (
    FRECHET_RATIO,
    MIN_ESS,
    AttributeFigures,
    Figures,
    Flag,
    flag_failures,
)
from promptgen.evaluation.results import EvalReport
from promptgen.training.watch import JUNK_MARGIN, junk_margin

#: The flags that say the samples left the generator's usual output (the report's ``warnings``).
REALISM_KINDS = ("junk", "frechet")


def report_figures(report: EvalReport) -> Figures:
    """The plain numbers of ``report`` that :func:`~promptgen.evaluation.flags.flag_failures` reads."""
    attributes = []
    # An attribute only judged (--attr) that shares a part with one an energy asks about is not judged for lost
    # classes: asking for 3s removes the other digits on purpose, in digit*thickness too.
    asked_parts = {p for a in report.attributes if a.energy is not None and a.met is not None for p in a.attribute.split("*")}
    for a in report.attributes:
        if not a.available or a.base is None or a.prompt is None:
            continue
        if a.energy is None and asked_parts & set(a.attribute.split("*")):
            continue
        interval = a.prompt.kl_ci if a.target is not None else a.prompt.share_ci
        attributes.append(AttributeFigures(
            attribute=a.attribute, labels=a.labels, prompt=a.prompt.histogram, base=a.base.histogram,
            prompt_counted=a.prompt.counted if a.prompt.counted is not None else report.n,
            base_counted=a.base.counted if a.base.counted is not None else report.n,
            target=a.target, asked=a.asked, avoided=a.avoided, energy=a.energy if a.met is not None else None, interval=interval,
            prompt_diversity=a.prompt.diversity, base_diversity=a.base.diversity,
            prompt_diversity_n=a.prompt.diversity_n or 0, base_diversity_n=a.base.diversity_n or 0,
        ))
    return Figures(
        n=report.n, diversity=report.prompt.diversity, base_diversity=report.base.diversity, junk=report.prompt.junk_rate,
        base_junk=report.base.junk_rate, realism=report.realism, frechet=report.prompt.frechet, frechet_exact=report.frechet_exact,
        exact_ess=report.exact_ess, attributes=attributes,
    )


def report_flags(report: EvalReport) -> list[Flag]:
    """Every failure ``report``'s figures show (:func:`~promptgen.evaluation.flags.flag_failures`)."""
    return flag_failures(report_figures(report))


def realism_warnings(report: EvalReport) -> list[str]:
    """One line per sign that the prompt's samples left the generator's usual output: the ``junk`` and ``frechet``
    flags of :func:`report_flags`.

    - the junk rate rose more than :data:`JUNK_MARGIN` above the generator's, and
      more than twice the standard error of that difference on ``n`` samples
      (so a small ``-n`` does not warn of noise);
    - the Fréchet distance to the reference is more than :data:`FRECHET_RATIO`
      times that of exact samples of the same target (judged where their
      weights' effective sample size is at least :data:`MIN_ESS`).
    """
    return [f.message for f in report_flags(report) if f.kind in REALISM_KINDS]


__all__ = [
    "FRECHET_RATIO",
    "JUNK_MARGIN",
    "MIN_ESS",
    "REALISM_KINDS",
    "junk_margin",
    "realism_warnings",
    "report_figures",
    "report_flags",
]
