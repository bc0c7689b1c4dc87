"""The flags of compose's closing check: :func:`~promptgen.evaluation.flags.flag_failures` on what it measured.

compose's closing check (:func:`promptgen.composing.watch.closing_check`) judges fresh samples of the prompt
against its generator's on the same noise and keeps the reading in the manifest (``check``). The same rule that
flags `promptgen eval`'s figures reads it here, so compose, `promptgen info` and eval warn alike: a missed target,
junk, a class the prompt lost, a collapse of diversity (within the asked classes where an energy asks for some).
"""

from __future__ import annotations

from promptgen.evaluation.flags import AttributeFigures, Figures, Flag, flag_failures
from promptgen.training.watch import Reading


def check_figures(reading: Reading) -> Figures:
    """The plain numbers of a closing check's reading that :func:`flag_failures` reads."""
    attributes = [
        AttributeFigures(
            attribute=t.attribute,
            labels=t.labels,
            prompt=t.histogram,
            base=t.base_histogram,
            prompt_counted=t.counted,
            base_counted=t.base_counted,
            target=t.target,
            asked=t.asked,
            avoided=t.avoided,
            energy=t.energy,
            prompt_diversity=t.diversity,
            base_diversity=t.base_diversity,
            prompt_diversity_n=t.diversity_n,
            base_diversity_n=t.base_diversity_n,
        )
        for t in reading.targets
        if t.labels and len(t.base_histogram) == len(t.histogram) == len(t.labels)  # older manifests: not recorded
    ]
    return Figures(
        n=reading.n, diversity=reading.diversity, base_diversity=reading.base_diversity, junk=reading.junk,
        base_junk=reading.base_junk, realism=reading.realism, attributes=attributes,
    )  # fmt: skip


def check_flags(reading: Reading | None) -> list[Flag]:
    """Every failure a closing check's reading shows (none without a reading)."""
    return [] if reading is None else flag_failures(check_figures(reading))


__all__ = ["check_figures", "check_flags"]
