"""``promptgen eval`` and ``promptgen report``: judge prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

#: Most images one command takes (-n); memory sets the real limit, checked once the image size is known.
from promptgen.cli.app import MAX_IMAGES, app, err_console, out_console, print_verdict, user_errors
from promptgen.core.errors import printable
from promptgen.training.config import MAX_BATCH, MAX_SEED, MIN_SEED


@app.command("eval")
@user_errors
def eval_(
    prompt: Annotated[Path, typer.Argument(help="Prompt folder made by `promptgen compose`")],
    n: Annotated[int, typer.Option("-n", min=2, max=MAX_IMAGES, help="Samples of the base and of the prompt each")] = 5000,
    seed: Annotated[int, typer.Option(min=MIN_SEED, max=MAX_SEED, help="Random seed; base and prompt draw the same noise")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, max=MAX_BATCH, help="Samples generated and judged at once")] = 500,
    attr: Annotated[
        list[str] | None,
        typer.Option("--attr", help="Also judge this attribute, repeatable; joint ones as a*b, e.g. digit*thickness"),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="Real images for Fréchet distances: an MNIST idx folder or an .npz with 'images' (N,C,H,W) in [0,1]"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the JSON report to this file")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False,
) -> None:
    """Judge a prompt against its generator: attribute histograms and targets, energies, diversity, Fréchet distance."""
    from promptgen.api import evaluate
    from promptgen.evaluation.evaluate import check_json_output, report_table, write_report_json

    if out is not None:
        check_json_output(out)
    report = evaluate(
        prompt, n=n, seed=seed, attrs=attr or [], data=data, batch_size=batch_size, device=device,
        progress=not quiet, console=err_console,
    )
    if out is not None:
        write_report_json(report, out)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        out_console.print(report_table(report))
        if out is not None:
            out_console.print(f"[green]✓[/green] JSON report -> [bold]{out}[/bold]")
    _tell(report, err_console if as_json else out_console)


def _tell(report, console) -> None:
    """The verdict and the flags of an eval (every failure its figures show, the warnings among them), on the terminal."""
    if report.verdict:
        print_verdict(report.verdict, report.met, report.n, console)
    for message in [f.message for f in report.flags] or report.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(printable(message))}", soft_wrap=True, highlight=False)


@app.command()
@user_errors
def report(
    prompt: Annotated[Path, typer.Argument(help="Prompt folder made by `promptgen compose`")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write")] = Path("report.html"),
    n: Annotated[int, typer.Option("-n", min=2, max=MAX_IMAGES, help="Samples of the base and of the prompt each")] = 2000,
    seed: Annotated[int, typer.Option(min=MIN_SEED, max=MAX_SEED, help="Random seed; base and prompt draw the same noise")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, max=MAX_BATCH, help="Samples generated and judged at once")] = 500,
    attr: Annotated[
        list[str] | None,
        typer.Option("--attr", help="Also judge this attribute, repeatable; joint ones as a*b"),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="Real images for Fréchet distances: an MNIST idx folder or an .npz with 'images' (N,C,H,W) in [0,1]"),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False,
) -> None:
    """Write one self-contained HTML page about a prompt: samples, attribute histograms, training curves, eval numbers."""
    from promptgen.api import report as write

    judged: list = []  # the verdict and flags are told once the page is written: a failed write is one line
    path = write(
        prompt, out, n=n, seed=seed, attrs=attr or [], data=data, batch_size=batch_size, device=device,
        progress=not quiet, console=err_console, on_report=judged.append,
    )
    for r in judged:
        _tell(r, out_console)
    out_console.print(f"[green]✓[/green] report -> [bold]{path}[/bold]")
