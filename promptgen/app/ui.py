"""The page of ``promptgen app``, built with Gradio (imported here only, when the app runs).

The work is done by :class:`promptgen.app.library.Library`; this module lays it out and wires the events.
Every handler turns a mistake into one line in the page (``#message``) and leaves the app serving.
"""

from __future__ import annotations

import html
import tempfile
import time
from pathlib import Path
from typing import Any

from promptgen.app.library import COLUMNS, MAX_COUNT, MAX_STEPS, Library, grid, histograms, summary, write_downloads
from promptgen.app.training import JOB_COLUMNS, TrainingQueue, loss_png
from promptgen.core.errors import PromptgenError, one_line, printable

#: Condition sliders on the page; a prompt with more conditions shows its first ones (the others at their reference).
SLIDERS = 8
#: Samples a side of the evaluation, by default (``promptgen eval`` takes 5000; the page answers sooner).
EVAL_N = 1000

CSS = """
#message { min-height: 1.5em; }
#message .error { color: #b42318; font-weight: 600; }
#message .ok { color: #1f6f3f; }
"""


def message(text: str, error: bool = False) -> str:
    """One line of the ``#message`` area, HTML-escaped."""
    return f'<p class="{"error" if error else "ok"}">{html.escape(("error: " if error else "") + printable(text))}</p>'


def failure(exc: BaseException) -> str:
    """One line for what went wrong in a handler: a PromptgenError as it is, anything else with its type."""
    if isinstance(exc, PromptgenError):
        return message(one_line(str(exc)), error=True)
    if isinstance(exc, MemoryError):
        return message("out of memory; ask for fewer images", error=True)
    return message(one_line(f"{type(exc).__name__}: {exc}")[:400], error=True)


def build(library: Library, downloads: Path | None = None, training: TrainingQueue | None = None) -> Any:
    """The app's :class:`gradio.Blocks` over ``library``; files to download are written to ``downloads``, prompts
    composed from the page are trained by ``training``."""
    import gradio as gr

    downloads = downloads or Path(tempfile.mkdtemp(prefix="promptgen-app-"))
    training = training or TrainingQueue(library)

    def table(weights: bool = True) -> tuple[list[list[str]], list[str]]:
        rows = library.scan(weights)
        return [r.cells() for r in rows] or [["(no prompts under this folder)"] + [""] * (len(COLUMNS) - 1)], [r.name for r in rows if r.ok]

    # The first list is read from the manifests alone, as plain JSON, without importing torch (1.4 s): validating
    # them and loading every prompt's weights to check them (1.2 to 1.8 s for 22 prompts on two busy cores) waits
    # until the page is up; each page then asks for the checked list (``demo.load`` below), remembered by the
    # library while the prompts' files stay the same.
    first_rows, first_names = table(weights=False)

    with gr.Blocks(title="promptgen app", analytics_enabled=False) as demo:
        gr.Markdown(f"# promptgen app\nThe prompts under `{printable(library.shown)}`: pick one, sample it beside its generator "
                    "on the same noise, sweep its conditions, judge it.")
        with gr.Row():
            choice = gr.Dropdown(choices=first_names, value=None, label="prompt (its folder under the served folder)",
                                 allow_custom_value=True, elem_id="prompt-choice", scale=4)
            reload = gr.Button("Reload the list", elem_id="reload", scale=1)
        listing = gr.Dataframe(value=first_rows, headers=COLUMNS, interactive=False, elem_id="prompt-list", wrap=True,
                               label="prompts")
        status = gr.HTML(message(f"{len(first_names)} prompts; pick one"), elem_id="message")
        with gr.Tab("Samples"):
            with gr.Row():
                seed = gr.Number(value=0, precision=0, label="seed", elem_id="seed", minimum=0)
                count = gr.Slider(1, MAX_COUNT, value=64, step=1, label="images", elem_id="count")
            sliders = [gr.Slider(-1, 1, value=0, step=0.01, label=f"condition {i}", visible=False, elem_id=f"cond-{i}")
                       for i in range(SLIDERS)]
            with gr.Row():
                base_img = gr.Image(label="base generator", type="pil", format="png", interactive=False, elem_id="base-grid")
                prompt_img = gr.Image(label="prompt (same noise)", type="pil", format="png", interactive=False, elem_id="prompt-grid")
            with gr.Row():
                png_button = gr.DownloadButton("Download the grid (PNG)", elem_id="download-png", interactive=False)
                npz_button = gr.DownloadButton("Download the samples (.npz)", elem_id="download-npz", interactive=False)
        with gr.Tab("Sweep"):
            gr.Markdown("Rows: noises ε; columns: one condition across its training range (the other conditions at their sliders).")
            with gr.Row():
                sweep_name = gr.Dropdown(choices=[], label="condition", elem_id="sweep-name")
                sweep_steps = gr.Slider(2, MAX_STEPS, value=7, step=1, label="values", elem_id="sweep-steps")
                sweep_rows = gr.Slider(1, 16, value=4, step=1, label="rows", elem_id="sweep-rows")
                sweep_go = gr.Button("Sweep", elem_id="sweep")
            sweep_caption = gr.Markdown("", elem_id="sweep-caption")
            sweep_img = gr.Image(label="sweep", type="pil", format="png", interactive=False, elem_id="sweep-grid")
        with gr.Tab("Evaluation"):
            gr.Markdown("`promptgen eval` of the prompt against its generator on the same noise: the attribute histograms "
                        "and the junk rate. Cached in the prompt's folder for its weights, sample count and seed.")
            with gr.Row():
                eval_n = gr.Number(value=EVAL_N, precision=0, label="samples a side", elem_id="eval-n", minimum=2, maximum=100_000)
                eval_seed = gr.Number(value=0, precision=0, label="seed", elem_id="eval-seed", minimum=0)
                eval_go = gr.Button("Evaluate", elem_id="evaluate", variant="primary")
            eval_text = gr.Markdown("", elem_id="eval-summary")
            eval_plots = gr.Gallery(label="histograms: base and prompt", columns=2, elem_id="histograms", height="auto")
        with gr.Tab("Compose"):
            gr.Markdown("Train a new prompt into the served folder, as `promptgen compose` does (one run at a time: "
                        "a run asked while another trains waits in the queue). Specs as on the command line; see "
                        "`promptgen list` for what is installed.")
            with gr.Row():
                new_gen = gr.Textbox(value="mnist", label="generator (--gen)", elem_id="new-gen")
                new_name = gr.Textbox(label="name: the new folder under the served folder (--out)", elem_id="new-name")
            with gr.Row():
                new_energies = gr.Textbox(label="energies, one a line (--energy; SPEC@WEIGHT sets a weight)", lines=3,
                                          placeholder="classifier:digit=3", elem_id="new-energies")
                new_conds = gr.Textbox(label="conditions, one a line (--cond NAME=LOW:HIGH), optional", lines=3,
                                       elem_id="new-conds")
            with gr.Row():
                new_steps = gr.Number(value=800, precision=0, label="steps", elem_id="new-steps", minimum=1)
                new_check = gr.Number(value=2000, precision=0, label="closing check samples (0: none)", elem_id="new-check",
                                      minimum=0)
                train_go = gr.Button("Train", elem_id="train", variant="primary")
            jobs = gr.Dataframe(value=[["", "", "", "", "", ""]], headers=JOB_COLUMNS, interactive=False, elem_id="jobs",
                                label="training queue", wrap=True)
            curve = gr.Image(label="loss of the latest run", type="pil", format="png", interactive=False, elem_id="loss-curve")
        seen = gr.State((0, None))  # runs finished and the loss curve drawn, as this page last saw them
        timer = gr.Timer(1.0)

        def reload_list() -> tuple[Any, Any, str]:
            try:
                rows, names = table()
            except Exception as exc:  # noqa: BLE001 - the page says it, the app keeps serving
                return gr.update(), gr.update(), failure(exc)
            return gr.update(value=rows), gr.update(choices=names), message(f"{len(names)} prompts")

        def checked_list() -> tuple[Any, Any]:
            """The list with every prompt's weights checked, as a page opens (the message is left alone)."""
            try:
                rows, names = table()
            except Exception:  # noqa: BLE001 - the list shown stays; Reload says what is wrong
                return gr.update(), gr.update()
            return gr.update(value=rows), gr.update(choices=names)

        def select(name: str | None) -> list[Any]:
            """Show one slider per condition of the chosen prompt, set to its reference."""
            hidden = [gr.update(visible=False) for _ in sliders]
            try:
                conditions = library.conditions(name)
            except Exception as exc:  # noqa: BLE001
                return [*hidden, gr.update(choices=[], value=None), failure(exc)]
            shown = [
                gr.update(visible=True, minimum=c.low, maximum=c.high, value=c.reference, step=(c.high - c.low) / 100,
                          label=f"{c.name} (trained on {c.low:g} to {c.high:g})")
                for c in conditions[:SLIDERS]
            ]
            names = [c.name for c in conditions]
            note = "" if len(conditions) <= SLIDERS else f"; the first {SLIDERS} conditions have sliders, the others stay at their reference"
            return [*shown, *hidden[len(shown):], gr.update(choices=names, value=names[0] if names else None),
                    message(f"{printable(str(name))}: {len(conditions)} conditions{note}" if conditions else f"{printable(str(name))}")]

        def values_of(name: str | None, cells: tuple[Any, ...]) -> dict[str, float]:
            conditions = library.conditions(name)
            return {c.name: float(v) for c, v in zip(conditions[:SLIDERS], cells, strict=False) if v is not None}

        def sample(name: str | None, seed_value: Any, n: Any, *cells: Any) -> list[Any]:
            keep = [gr.update()] * 4
            try:
                t = time.perf_counter()
                pair = library.sample(name, n, seed_value if seed_value is not None else 0, values_of(name, cells))
                seconds = time.perf_counter() - t
                png, npz = write_downloads(library.load(name), pair, library.name_of(library.folder(name)), downloads)
            except Exception as exc:  # noqa: BLE001
                return [*keep, failure(exc)]
            where = ", ".join(f"{k}={v:.3g}" for k, v in pair.condition.items())
            return [grid(pair.base), grid(pair.prompt), gr.update(value=str(png), interactive=True),
                    gr.update(value=str(npz), interactive=True),
                    message(f"{pair.prompt.shape[0]} images a side, seed {pair.seed}" + (f", {where}" if where else "") + f", in {seconds:.2f} s")]

        def sweep(name: str | None, condition_name: str | None, steps: Any, rows: Any, seed_value: Any, *cells: Any) -> list[Any]:
            try:
                values = values_of(name, cells)
                images, columns = library.sweep(name, rows, condition_name or "", steps, seed_value or 0, values)
            except Exception as exc:  # noqa: BLE001
                return [gr.update(), gr.update(), failure(exc)]
            caption = f"columns: {printable(str(condition_name))} = " + ", ".join(f"{v:.3g}" for v in columns)
            return [grid(images.flatten(0, 1), nrow=len(columns)), caption, message(f"sweep of {printable(str(condition_name))}: "
                                                                                  f"{images.shape[0]} rows × {len(columns)} values")]

        def evaluate(name: str | None, n: Any, seed_value: Any, progress: Any = gr.Progress()) -> list[Any]:  # noqa: B008 - Gradio's way
            try:
                progress(0.0, desc="evaluating")
                report, cached = library.evaluation(name, int(n or EVAL_N), int(seed_value or 0),
                                                    progress=lambda f, d: progress(f, desc=d))
                plots = [(grid_image(png), caption) for png, caption in histograms(report)]
            except Exception as exc:  # noqa: BLE001
                return [gr.update(), gr.update(), failure(exc)]
            lines = summary(report)
            text = "\n".join(f"- {html.escape(line)}" for line in lines)
            how = "from the cache" if cached else "computed and cached"
            return [text, plots, message(f"evaluation of {report.n} samples a side, seed {report.seed} ({how})")]

        def jobs_view(drawn: tuple | None = None) -> tuple[list[list[str]], Any, tuple | None]:
            """The queue's rows, and the latest run's loss curve (redrawn only when it changed since ``drawn``)."""
            snapshot = training.snapshot()
            rows = [j.cells() for j in reversed(snapshot)] or [["", "(no runs yet)", "", "", "", ""]]
            latest = next((j for j in reversed(snapshot) if j.losses), None)
            key = None if latest is None else (latest.number, len(latest.losses), latest.state)
            if latest is None or key == drawn:
                return rows, gr.update(), drawn
            png = loss_png(latest)
            return rows, (grid_image(png) if png is not None else gr.update()), key

        def train(gen: str, energies: str, conds: str, steps: Any, check: Any, name: str) -> list[Any]:
            try:
                job = training.submit(gen, energies, conds, steps, name, check_samples=check)
            except Exception as exc:  # noqa: BLE001 - a spec error is the CLI's one line, in the page
                return [gr.update(), gr.update(), failure(exc)]
            rows, _, _ = jobs_view()
            return [rows, gr.update(), message(f"run {job.number} ({job.name}): {job.message}")]

        def tick(last: tuple[int, tuple | None]) -> list[Any]:
            """Every second: the queue, the loss curve, and the list once a run has finished."""
            finished, drawn = last
            rows, png, drawn = jobs_view(drawn)
            if training.finished == finished:
                return [rows, png, gr.update(), gr.update(), (finished, drawn)]
            table_rows, names = table()
            return [rows, png, gr.update(value=table_rows), gr.update(choices=names), (training.finished, drawn)]

        train_go.click(train, [new_gen, new_energies, new_conds, new_steps, new_check, new_name], [jobs, curve, status])
        timer.tick(tick, [seen], [jobs, curve, listing, choice, seen], show_progress="hidden")

        sample_inputs = [choice, seed, count, *sliders]
        sample_outputs = [base_img, prompt_img, png_button, npz_button, status]
        demo.load(checked_list, None, [listing, choice], show_progress="hidden")
        reload.click(reload_list, None, [listing, choice, status])
        choice.change(select, [choice], [*sliders, sweep_name, status]).then(sample, sample_inputs, sample_outputs)
        seed.change(sample, sample_inputs, sample_outputs)
        count.release(sample, sample_inputs, sample_outputs)
        for s in sliders:
            s.release(sample, sample_inputs, sample_outputs)
        sweep_go.click(sweep, [choice, sweep_name, sweep_steps, sweep_rows, seed, *sliders], [sweep_img, sweep_caption, status])
        eval_go.click(evaluate, [choice, eval_n, eval_seed], [eval_text, eval_plots, status])
    return demo


def grid_image(png: bytes) -> Any:
    """A PIL image of PNG bytes."""
    import io

    from PIL import Image

    return Image.open(io.BytesIO(png))
