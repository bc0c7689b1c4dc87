"""One self-contained HTML page about a prompt (what `promptgen report` does).

The page needs nothing but itself: the CSS is inline and every picture is a
base64 PNG ``data:`` URI, so it can be mailed, archived or opened offline. It
shows the prompt's energies, sample grids of the base and of the prompt side by
side, one histogram per judged attribute (base and prompt bars, the target
drawn over them), the training curves from the manifest, the numbers of
:func:`promptgen.evaluation.evaluate_prompt` and the manifest itself.

Pictures carry stable classes and ids for scripts and tests: ``img.grid``
(``#grid-base``, ``#grid-prompt``), ``img.histogram`` (``#hist-0``, ``#hist-1``...,
with ``data-attribute``), ``img.curves`` (``#curves``); the flags are ``li.flag`` (with ``data-kind``) in
``#warnings``, under the verdict; the report's JSON is in ``<script type="application/json" id="eval-json">``.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from rich.console import Console
from torch import Tensor

from promptgen.artifacts.manifest import PromptManifest
from promptgen.artifacts.prompt import Prompt, load_prompt
from promptgen.core.atomic import writable_target, write_text_atomic
from promptgen.core.errors import PromptgenError
from promptgen.core.images import make_grid
from promptgen.core.registry import Registry
from promptgen.evaluation.evaluate import (
    AttributeEval,
    EvalReport,
    Evaluation,
    ancestors,
    attribute_title,
    evaluate_prompt,
    measured_in,
    summary_rows,
)

GRID_SAMPLES = 64
VISIBLE_SIZE = 112  # small images are upscaled (nearest neighbour) to about this many pixels
MAX_TILE = 128  # larger images are shrunk to this many pixels in the grids

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1d2731; background: #fff; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #d8dee4; padding-bottom: 0.2em; margin-top: 2em; }
.sub { color: #57606a; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #d8dee4; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f6f8; }
td.num { font-variant-numeric: tabular-nums; }
td.indent { padding-left: 2em; }
.pair { display: flex; gap: 1.5em; align-items: flex-start; }
.pair figure { flex: 1 1 0; min-width: 0; }
.pair img { width: 100%; }
figure { margin: 0.5em 0; }
figcaption { color: #57606a; font-size: 0.9em; }
img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
pre { background: #f6f8fa; padding: 1em; overflow: auto; font-size: 0.82em; max-height: 40em; }
.note { color: #9a6700; }
ul.warning { background: #fff8c5; border: 1px solid #d4a72c; padding: 0.6em 0.6em 0.6em 2em; }
ul.verdict { background: #dafbe1; border: 1px solid #4ac26b; padding: 0.6em 0.6em 0.6em 2em; }
"""


def check_report_output(out: str | Path) -> Path:
    """Refuse an ``-o`` that cannot be written, before any work is done."""
    out = Path(out)
    if out.is_dir():
        raise PromptgenError(f"cannot write {str(out)!r}: it is a folder; give a file name such as report.html")
    if out.suffix.lower() not in (".html", ".htm"):
        raise PromptgenError(f"cannot write {str(out)!r}: the report is an HTML page; give a name ending in .html")
    writable_target(out, "-o")
    return out


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PromptgenError("the report draws its charts with matplotlib; install it with `pip install matplotlib`") from None
    return Figure


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # a Figure made without pyplot renders with Agg: no display needed
    return buf.getvalue()


def grid_png(images: Tensor, nrow: int | None = None) -> bytes:
    """A PNG grid of (N, C, H, W) images in [0, 1], small images upscaled with nearest neighbour.

    28×28 digits are drawn 4× (``VISIBLE_SIZE // 28``); images larger than
    ``MAX_TILE`` pixels are shrunk first so the page stays light.
    """
    h, w = images.shape[-2:]
    if max(h, w) > MAX_TILE:
        k = MAX_TILE / max(h, w)
        images = F.interpolate(images, size=(max(1, round(h * k)), max(1, round(w * k))), mode="bilinear", antialias=True, align_corners=False)
        h, w = images.shape[-2:]
    grid = make_grid(images.clamp(0, 1), nrow=nrow)
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    scale = max(1, VISIBLE_SIZE // max(h, w))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return _png(img)


def _error_bars(values: Sequence[float], intervals: Sequence[Sequence[float]] | None) -> np.ndarray | None:
    """(2, K) distances below and above each value to its interval's ends, as matplotlib's ``yerr`` wants them."""
    if intervals is None or len(intervals) != len(values):
        return None
    v = np.asarray(values, dtype=float)
    lo, hi = np.asarray([i[0] for i in intervals], dtype=float), np.asarray([i[1] for i in intervals], dtype=float)
    return np.clip(np.stack([v - lo, hi - v]), 0.0, None)


def histogram_png(a: AttributeEval) -> bytes:
    """Bars of the base's and the prompt's class shares with their 95 % intervals (black error bars), the target
    drawn over them, asked classes shaded."""
    assert a.base is not None and a.prompt is not None
    k = len(a.labels)
    x = np.arange(k)
    fig = _figure_class()(figsize=(min(16.0, max(5.0, 0.45 * k + 2.0)), 3.4), dpi=100)
    ax = fig.add_subplot()
    for i, label in enumerate(a.asked):
        if label in a.labels:
            j = a.labels.index(label)
            ax.axvspan(j - 0.5, j + 0.5, color="#8fd694", alpha=0.35, lw=0, label="asked" if i == 0 else None)
    for i, label in enumerate(a.avoided):
        if label in a.labels:
            j = a.labels.index(label)
            ax.axvspan(j - 0.5, j + 0.5, color="#f4a6a6", alpha=0.35, lw=0, label="avoided" if i == 0 else None)
    for side, shift, color in ((a.base, -0.2, "#9aa5b1"), (a.prompt, 0.2, "#2f6db5")):
        ax.bar(x + shift, side.histogram, 0.4, label="base" if side is a.base else "prompt", color=color,
               yerr=_error_bars(side.histogram, side.histogram_ci), error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "#1d2731"})
    if a.target is not None:
        ax.hlines(a.target, x - 0.45, x + 0.45, colors="#d1495b", linewidths=2.5, label="target")
    ax.set_xticks(x, a.labels, rotation=90 if k > 12 else 0, fontsize=7 if k > 30 else 9)
    ax.set_xlim(-0.6, k - 0.4)
    ax.set_ylabel("share of samples")
    ax.set_title(attribute_title(a), fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return _figure_png(fig)


def realism_png(scores: dict[str, Tensor], junk: dict[str, float | None], source: str) -> bytes:
    """Histograms of the realism scores of base and prompt samples, the acceptance threshold (0) drawn in."""
    fig = _figure_class()(figsize=(7.0, 3.0), dpi=100)
    ax = fig.add_subplot()
    values = [v.double().clamp(-30, 30).numpy() for v in scores.values() if v.numel()]
    low, high = (min(float(v.min()) for v in values), max(float(v.max()) for v in values)) if values else (-1.0, 1.0)
    bins = np.linspace(min(low, -1.0), max(high, 1.0), 41)
    for side, color in (("base", "#9aa5b1"), ("prompt", "#2f6db5")):
        v = scores.get(side)
        if v is None or not v.numel():
            continue
        rate = junk.get(side)
        label = side if rate is None else f"{side}: {rate:.1%} junk"
        ax.hist(v.double().clamp(-30, 30).numpy(), bins=bins, alpha=0.6, color=color, label=label, density=True)
    ax.axvline(0.0, color="#d1495b", lw=2, label="threshold")
    ax.set_xlabel("realism score (below 0: junk)")
    ax.set_ylabel("density")
    ax.set_title(source, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _figure_png(fig)


def curves_png(
    history: Sequence[dict[str, float]], labels: Sequence[str], step_history: Sequence[dict[str, float]] | None = None
) -> bytes:
    """Loss and each energy term (unweighted) against the optimiser step, one panel each.

    ``step_history`` (every step, or windows of steps: :attr:`TrainingSummary.step_history`) is drawn as a line
    when given, with the periodic evaluations of ``history`` (one per ``--eval-every``) as points on top.
    """
    steps_rows = list(step_history or [])
    panels = ["loss"] + [lab for lab in labels if any(lab in row for row in [*history, *steps_rows])]
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    from matplotlib.ticker import MaxNLocator

    fig = _figure_class()(figsize=(3.6 * cols, 2.8 * rows), dpi=100)
    steps = [row.get("step", i + 1) for i, row in enumerate(history)]
    for i, name in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        color = "#2f6db5" if i == 0 else "#d1495b"
        line = [(row["step"], row[name]) for row in steps_rows if name in row and "step" in row]
        if line:
            ax.plot([s for s, _ in line], [v for _, v in line], lw=1, color=color, alpha=0.6, label="each step")
        xs = [s for s, row in zip(steps, history) if name in row]
        ys = [row[name] for row in history if name in row]
        ax.plot(xs, ys, marker="o", ms=3, color=color, ls="none" if line else "-", label="evaluations" if line else None)
        if line and i == 0:
            ax.legend(fontsize=7)
        ax.set_title(name if i == 0 else f"energy {name}", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return _figure_png(fig)


def _img(png: bytes, cls: str, id_: str, alt: str, **data: str) -> str:
    extra = "".join(f' data-{k}="{html.escape(v)}"' for k, v in data.items())
    return f'<img class="{cls}" id="{id_}" alt="{html.escape(alt)}"{extra} src="{data_uri(png)}">'


def _energies_section(manifest: PromptManifest, ancestors: Sequence[Prompt]) -> str:
    rows = []
    for e in manifest.energies:
        wishes = []
        for t in e.targets:
            w = []
            if t.asked:
                w.append("asks " + ", ".join(t.asked))
            if t.avoided:
                w.append("avoids " + ", ".join(t.avoided))
            if t.target is not None:
                w.append("target distribution over " + ", ".join(t.labels[:12]) + (" …" if len(t.labels) > 12 else ""))
            wishes.append(f"{t.attribute}: {'; '.join(w) or 'judged'}")
        rows.append(
            f"<tr><td><code>{html.escape(e.spec)}</code></td><td class=num>{e.weight:g}</td>"
            f"<td>{html.escape(' | '.join(wishes)) or '—'}</td><td>{html.escape(e.plugin)}</td></tr>"
        )
    out = [
        '<section id="energies"><h2>Energies</h2>',
        (
            f"<p>Generator <code>{html.escape(manifest.generator.spec)}</code> ({html.escape(manifest.generator.name)}, "
            f"{manifest.generator.resolution[0]}×{manifest.generator.resolution[1]}, licence {html.escape(manifest.generator.licence)}).</p>"
        ),
        "<table><thead><tr><th>energy</th><th>weight</th><th>asks of attributes</th><th>plugin</th></tr></thead><tbody>",
        *rows,
        "</tbody></table>",
    ]
    if manifest.mixture is not None:
        m = manifest.mixture
        shares = ", ".join(f"{lab} {w:.3f}" for lab, w in zip(m.labels, m.weights, strict=True))
        out.append(
            f'<p id="mixture">A mixture of {len(m.labels)} components over <code>{html.escape(m.attribute)}</code>, '
            f"drawn in these proportions: {html.escape(shares)}.</p>"
        )
    if ancestors:
        out.append("<p>Trained on a chain of prompts (nearest parent first):</p><ol>")
        for p in ancestors:
            specs = ", ".join(e.spec for e in p.manifest.energies)
            out.append(f"<li><code>{html.escape(str(p.path))}</code>: {html.escape(specs)}</li>")
        out.append("</ol>")
    out.append("</section>")
    return "\n".join(out)


#: Rows (noises ε) and columns (values) of a conditional prompt's sweep grid.
SWEEP_ROWS, SWEEP_COLUMNS = 8, 7


def _conditions_section(prompt: Prompt, seed: int) -> str:
    """A conditional prompt's conditions and one sweep grid: the first condition over its training range,
    one row per ε, the others at their references."""
    from promptgen.artifacts.prompt import sweep_images

    first = prompt.conditions[0]
    values = [first.low + (first.high - first.low) * i / (SWEEP_COLUMNS - 1) for i in range(SWEEP_COLUMNS)]
    grid = sweep_images(prompt, SWEEP_ROWS, first.name, values, seed=seed)
    items = "".join(
        f"<li><code>{html.escape(c.name)}</code>: trained on {c.low:g} to {c.high:g} ({html.escape(c.distribution)}), "
        f"reference {c.reference:g}</li>"
        for c in prompt.conditions
    )
    others = " (the others at their references)" if len(prompt.conditions) > 1 else ""
    alt = f"sweep of {first.name} from {first.low:g} to {first.high:g}: one row per noise, one column per value"
    return "\n".join([
        '<section id="conditions"><h2>Conditions</h2>',
        f"<p>A conditional prompt: its conditions are chosen when sampling.</p><ul>{items}</ul>",
        f"<figure>{_img(grid_png(grid.flatten(0, 1), nrow=SWEEP_COLUMNS), 'sweep', 'sweep', alt, condition=first.name)}",
        (
            f"<figcaption>{html.escape(first.name)} = {html.escape(', '.join(f'{v:g}' for v in values))}, left to right{others}; "
            f"each row is one noise ε (<code>promptgen sample PROMPT --sweep {html.escape(first.name)}={first.low!r}:{first.high!r}:"
            f"{SWEEP_COLUMNS}</code>)</figcaption></figure></section>"
        ),
    ])


def render_html(prompt: Prompt, evaluation: Evaluation) -> str:
    """The whole report page as a string."""
    manifest, report = prompt.manifest, evaluation.report
    specs = " + ".join(e.spec for e in manifest.energies) or "no energies"
    title = f"promptgen report: {specs}"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        (
            f'<p class="sub">{html.escape(str(prompt.path or ""))} · on <code>{html.escape(manifest.generator.spec)}</code> · '
            f"created {html.escape(manifest.created)} · evaluated on {report.n} samples each, seed {report.seed}</p>"
        ),
    ]
    if report.verdict:
        # The verdict first: a histogram that looks like progress must not be read before the junk beside it.
        met = report.met is True
        parts.append(f'<section id="verdict"><h2>Verdict: {"target met" if met else ("not met" if report.met is False else "nothing asked")}</h2>'
                     f'<ul class="{"verdict" if met else "warning"}">')
        parts += [f"<li>{html.escape(line)}</li>" for line in report.verdict]
        parts.append("</ul></section>")
    flags = [(f.kind, f.message) for f in report.flags] or [("warning", w) for w in report.warnings]
    if flags:
        # Then every failure the figures show, each with the generator's figure and a next step.
        parts.append('<section id="warnings"><h2>Flags</h2><ul class="warning">')
        parts += [f'<li class="flag" data-kind="{html.escape(kind)}">{html.escape(message)}</li>' for kind, message in flags]
        parts.append("</ul></section>")
    parts.append(_energies_section(manifest, ancestors(prompt)))
    parts.append('<section id="samples"><h2>Samples</h2><div class="pair">')
    for side, caption in (("base", f"base: {report.generator}"), ("prompt", "prompt")):
        images = evaluation.images.get(side)
        if images is None or images.numel() == 0:
            parts.append(f'<p class="note">no {side} samples kept</p>')
            continue
        alt = f"grid of {images.shape[0]} samples of the {side} ({report.generator if side == 'base' else specs})"
        parts.append(
            f"<figure>{_img(grid_png(images, nrow=8), 'grid', f'grid-{side}', alt, side=side)}"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("</div></section>")
    if prompt.conditions:
        parts.append(_conditions_section(prompt, report.seed))

    parts.append('<section id="attributes"><h2>Attributes</h2>')
    if not report.attributes:
        parts.append('<p class="note">No energy of this prompt asks anything of a named attribute; add some with --attr.</p>')
    for i, a in enumerate(report.attributes):
        if not a.available or a.base is None:
            parts.append(f'<p class="note">{html.escape(attribute_title(a))}: unavailable ({html.escape(a.reason or "")})</p>')
            continue
        alt = f"histogram of {a.attribute}: base and prompt class shares" + (", with the target" if a.target is not None else "")
        parts.append(f"<figure>{_img(histogram_png(a), 'histogram', f'hist-{i}', alt, attribute=a.attribute)}</figure>")
    parts.append("</section>")

    if evaluation.realism:
        parts.append('<section id="realism"><h2>Realism</h2>')
        alt = "histograms of the realism scores of base and prompt samples; below 0 is junk"
        junk = {"base": report.base.junk_rate, "prompt": report.prompt.junk_rate}
        parts.append(f"<figure>{_img(realism_png(evaluation.realism, junk, report.realism or ''), 'realism', 'realism', alt)}</figure>")
        parts.append("</section>")

    parts.append('<section id="training"><h2>Training</h2>')
    history = manifest.training.history
    # Manifests before step histories were kept have none: their curves are the periodic evaluations alone.
    step_history = getattr(manifest.training, "step_history", None) or None
    if history or step_history:
        labels = [e.label for e in manifest.energies]
        alt = "training curves: loss and each energy term against the optimiser step"
        if step_history:
            alt += " (every step as a line, the periodic evaluations as points)"
        parts.append(f"<figure>{_img(curves_png(history, labels, step_history), 'curves', 'curves', alt)}</figure>")
    else:
        parts.append('<p class="note">The manifest has no training history.</p>')
    c = manifest.training.config
    parts.append(
        f"<p>{c.steps} steps × batch {c.batch_size}×{c.accumulate}, lr {c.lr:g}, seed {c.seed}, "
        f"{html.escape(manifest.training.device)}, {manifest.training.seconds:.1f} s; final loss {manifest.training.final_loss:.3f}.</p>"
    )
    parts.append("</section>")

    parts.append('<section id="numbers"><h2>Evaluation</h2>')
    parts.append(f"<p>{html.escape(measured_in(report))}</p>")
    parts.append(
        f'<table class="eval"><thead><tr><th></th><th>base ({html.escape(report.generator)})</th><th>prompt</th></tr></thead><tbody>'
    )
    for what, b, p in summary_rows(report):
        indent = ' class="indent"' if what.startswith(" ") else ""
        parts.append(f"<tr><td{indent}>{html.escape(what.strip())}</td><td class=num>{html.escape(b)}</td><td class=num>{html.escape(p)}</td></tr>")
    parts.append("</tbody></table></section>")

    parts.append('<section id="manifest"><h2>Manifest</h2>')
    parts.append(f"<pre>{html.escape(manifest.model_dump_json(indent=2))}</pre></section>")
    parts.append(
        '<script type="application/json" id="eval-json">'
        + report.model_dump_json().replace("</", "<\\/")
        + "</script>"
    )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(
    prompt: Prompt | str | Path,
    out: str | Path = "report.html",
    *,
    n: int = 2000,
    seed: int = 0,
    attrs: Sequence[str] = (),
    data: str | Path | None = None,
    batch_size: int = 500,
    device: str | torch.device = "auto",
    progress: bool = False,
    console: Console | None = None,
    registry: Registry | None = None,
    on_report: Callable[[EvalReport], None] | None = None,
) -> Path:
    """Evaluate ``prompt`` (see :func:`~promptgen.evaluation.evaluate_prompt`) and write the report to ``out``.

    ``on_report`` is called with the :class:`EvalReport` before the page is written (the command line prints
    its verdict and warnings on the terminal).

    Returns:
        ``out``, written atomically.
    """
    out = check_report_output(out)
    _figure_class()  # fail before the long work if matplotlib is missing
    if not isinstance(prompt, Prompt):
        prompt = load_prompt(prompt, registry)
    evaluation = evaluate_prompt(
        prompt, n=n, seed=seed, attrs=attrs, data=data, batch_size=batch_size, device=device,
        keep=GRID_SAMPLES, progress=progress, console=console, registry=registry,
    )
    if on_report is not None:
        on_report(evaluation.report)
    write_text_atomic(out, render_html(prompt, evaluation))
    return out


__all__ = ["check_report_output", "curves_png", "grid_png", "histogram_png", "render_html", "write_report"]
