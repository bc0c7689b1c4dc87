"""Presenting an :class:`~promptgen.evaluation.results.EvalReport`: text rows, the terminal table, the JSON file."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

from promptgen.core.atomic import writable_target, write_text_atomic
from promptgen.core.errors import PromptgenError, printable
from promptgen.evaluation.results import AttributeEval, EvalReport


def _num(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "—"
    if math.isnan(x):
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "∞" if x > 0 else "−∞"
    return f"{x:.{digits}f}"


def with_interval(x: float | None, interval: Sequence[float] | None, digits: int = 3, percent: bool = False) -> str:
    """``"0.0054 [0.0041, 0.0069]"``: a figure and its 95 % interval (just the figure without one).

    >>> with_interval(0.00541, (0.00412, 0.00693), 4), with_interval(0.071, (0.0615, 0.083), 1, percent=True)
    ('0.0054 [0.0041, 0.0069]', '7.1% [6.2%, 8.3%]')
    >>> with_interval(0.5, None)
    '0.500'
    """
    def one(v: float | None) -> str:
        if percent and v is not None and math.isfinite(v):
            return f"{v:.{digits}%}"
        return _num(v, digits)

    if x is None or interval is None:
        return one(x)
    return f"{one(x)} [{one(interval[0])}, {one(interval[1])}]"


def histogram_text(labels: Sequence[str], histogram: Sequence[float], top: int = 10) -> str:
    """``"3 0.91 · 8 0.05 · …"``: the largest non-zero shares first, at most ``top`` of them.

    >>> histogram_text(["0", "1", "2"], [0.2, 0.5, 0.3], top=2)
    '1 0.50 · 2 0.30 · …'
    >>> histogram_text(["0", "1", "2"], [0.0, 1.0, 0.0])
    '1 1.00'
    """
    order = [i for i in sorted(range(len(labels)), key=lambda i: -histogram[i]) if histogram[i] > 0]
    shown = [f"{labels[i]} {histogram[i]:.2f}" for i in order[:top]]
    return " · ".join(shown + (["…"] if len(order) > top else []))


def attribute_title(a: AttributeEval) -> str:
    """One line naming an attribute, what is asked of it and who judges it."""
    wish = []
    if a.asked:
        wish.append("asked " + ", ".join(a.asked))
    if a.avoided:
        wish.append("avoided " + ", ".join(a.avoided))
    if a.target is not None:
        wish.append("target distribution")
    if a.origin == "ancestor":
        wish.append(f"by ancestor {a.ancestor}")
    elif a.origin == "asked":
        wish.append("--attr")
    head = f"{a.attribute} ({'; '.join(wish)})" if wish else a.attribute
    if not a.available:
        return head
    judge = " × ".join(dict.fromkeys(a.evaluators))
    return f"{head}, judged by {judge}" + ("" if a.independent else " (not independent: it also defines energies)")


def summary_rows(report: EvalReport) -> list[tuple[str, str, str]]:
    """(what, base, prompt) rows of text, shared by the terminal table and the HTML report."""
    rows = [
        ("samples", str(report.base.n), str(report.prompt.n)),
        ("samples / second", _num(report.base.samples_per_second, 1), _num(report.prompt.samples_per_second, 1)),
        ("diversity (mean pairwise distance)", _num(report.base.diversity), _num(report.prompt.diversity)),
    ]
    if report.base.junk_rate is not None and report.prompt.junk_rate is not None:
        rows.append((
            "junk rate (fail the realism check)",
            with_interval(report.base.junk_rate, report.base.junk_rate_ci, 1, percent=True),
            with_interval(report.prompt.junk_rate, report.prompt.junk_rate_ci, 1, percent=True),
        ))
    if report.reference is not None:
        rows.append((
            "Fréchet distance to reference",
            with_interval(report.base.frechet, report.base.frechet_ci),
            with_interval(report.prompt.frechet, report.prompt.frechet_ci),
        ))
        if report.frechet_exact is not None:
            rows.append((
                f"  … of exact samples of the target (weighted base, ESS {report.exact_ess:.0f})", "",
                with_interval(report.frechet_exact, report.frechet_exact_ci),
            ))
    rows.append(("Fréchet distance base ↔ prompt", "", with_interval(report.frechet_base_prompt, report.frechet_base_prompt_ci)))
    for e in report.energies:
        if e.available and e.base is not None and e.prompt is not None:
            rows.append((f"energy {e.label} (mean ± std)", f"{_num(e.base.mean)} ± {_num(e.base.std)}", f"{_num(e.prompt.mean)} ± {_num(e.prompt.std)}"))
        else:
            rows.append((f"energy {e.label}", f"unavailable: {e.reason}", ""))
    for a in report.attributes:
        title = attribute_title(a)
        if not a.available or a.base is None or a.prompt is None:
            rows.append((title, f"unavailable: {a.reason}", ""))
            continue
        rows.append((title, histogram_text(a.labels, a.base.histogram), histogram_text(a.labels, a.prompt.histogram)))
        if a.base.junk is not None and a.prompt.junk is not None:
            rows.append((
                "  junk: not counted above, nor in the figures below",
                with_interval(a.base.junk, a.base.junk_ci, 1, percent=True),
                with_interval(a.prompt.junk, a.prompt.junk_ci, 1, percent=True),
            ))
        if a.base.share is not None:
            if not a.avoided:
                what = "share of asked classes"
            elif not a.asked:
                what = "share outside the avoided classes"
            else:
                what = "share of asked, not avoided classes"
            rows.append((f"  {what}", with_interval(a.base.share, a.base.share_ci), with_interval(a.prompt.share, a.prompt.share_ci)))
            if a.base.diversity is not None or a.prompt.diversity is not None:
                rows.append((
                    "  diversity of the samples of those classes",
                    f"{_num(a.base.diversity)} ({a.base.diversity_n or 0} samples)",
                    f"{_num(a.prompt.diversity)} ({a.prompt.diversity_n or 0} samples)",
                ))
        if a.base.kl is not None:
            rows.append(("  KL(histogram ‖ target), nats", with_interval(a.base.kl, a.base.kl_ci, 4), with_interval(a.prompt.kl, a.prompt.kl_ci, 4)))
            rows.append(("  total variation", _num(a.base.tv), _num(a.prompt.tv)))
            if a.base.junk is not None and a.base.kl_all is not None and a.prompt.kl_all is not None:
                rows.append(("  KL counting junk as classes (misleading when junk rose)", _num(a.base.kl_all, 4), _num(a.prompt.kl_all, 4)))
        if a.met is not None:
            rows.append(("  target met (goal reached, junk within the margin)", "", "yes" if a.met else "NO"))
    return rows


def measured_in(report: EvalReport) -> str:
    """Where the distances were measured, in one sentence."""
    text = f"Distances in the {report.features}"
    if report.reference is not None:
        text += f"; reference: {report.reference} ({report.reference_n} images)"
    if report.realism is not None:
        text += f"; junk by the {report.realism}"
    text += "."
    if report.intervals is not None:
        i = report.intervals
        text += (
            f" In brackets: {i.level:.0%} intervals, a bootstrap over the {report.n} samples of each side "
            f"({i.resamples} resamples; {i.frechet_resamples} for Fréchet distances; KL and Fréchet corrected for their bias)."
        )
    return text


def report_table(report: EvalReport) -> Table:
    """The report as a rich table with base and prompt columns."""
    # Labels and specs come from the prompt's manifest (maybe a stranger's): printable() keeps markup and terminal codes out.
    title = f"eval of {report.prompt_path or 'prompt'} ({report.n} samples each, seed {report.seed})"
    table = Table(title=printable(title), caption=printable(measured_in(report)))
    table.add_column("")
    table.add_column(printable(f"base ({report.generator})"), overflow="fold")
    table.add_column("prompt", overflow="fold")
    for what, b, p in summary_rows(report):
        table.add_row(printable(what), printable(b), printable(p))
    return table


def check_json_output(out: str | Path) -> Path:
    """Refuse an ``--out`` that cannot be written, before any work is done."""
    out = Path(out)
    if out.is_dir():
        raise PromptgenError(f"--out {str(out)!r} is a folder; give a file name such as eval.json")
    writable_target(out, "--out")
    return out


def write_report_json(report: EvalReport, out: str | Path) -> Path:
    """Write the report's JSON atomically."""
    out = check_json_output(out)
    write_text_atomic(out, report.model_dump_json(indent=2) + "\n")
    return out



__all__ = [
    "attribute_title",
    "check_json_output",
    "histogram_text",
    "measured_in",
    "report_table",
    "summary_rows",
    "with_interval",
    "write_report_json",
]
