"""``promptgen sample``: images from a prompt or a generator, by the flow or a baseline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer
from rich.table import Table

#: Most images one command takes (-n); memory sets the real limit, checked once the image size is known.
from promptgen.cli.app import MAX_IMAGES, _default, app, err_console, out_console, user_errors
from promptgen.core.errors import PromptgenError, printable
from promptgen.training.config import MAX_SEED, MAX_STEPS, MIN_SEED, TrainConfig

if TYPE_CHECKING:
    from promptgen.core.images import GridLabels


@app.command()
@user_errors
def sample(
    prompt: Annotated[Path | None, typer.Argument(help="Prompt folder made by `promptgen compose`")] = None,
    gen: Annotated[str | None, typer.Option("--gen", "-g", help="Sample a generator alone instead, e.g. --gen mnist")] = None,
    n: Annotated[int, typer.Option("-n", min=1, max=MAX_IMAGES, help="Number of images")] = 64,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="OUT.png: a grid under a band of labels (what was sampled, the spec, the seed; a "
                     "sweep's values above its columns); OUT.npz: raw (N,C,H,W) in [0,1]; else a folder of PNGs"),
    ] = Path("samples.png"),
    seed: Annotated[int, typer.Option(min=MIN_SEED, max=MAX_SEED, help="Random seed; the same seed gives the same images")] = _default(TrainConfig, "seed"),
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    method: Annotated[
        str,
        typer.Option(help="flow: the trained prompt (one pass per image); rejection or langevin: sample the prompt's "
                     "energy-based model without the flow (slow; needs the energies' models)"),
    ] = "flow",
    accept: Annotated[
        str,
        typer.Option(help="rejection: energy (exact p*, keep with prob. exp(-Σw(E-bound))), attribute (keep images "
                     "the control classifier calls the asked attribute; not p*) or auto (energy when every energy knows "
                     "its bound, as the built-in ones do)"),
    ] = "auto",
    max_draws: Annotated[int, typer.Option(min=1, max=10**12, help="rejection: give up after this many generator samples")] = 1_000_000,
    steps: Annotated[int, typer.Option(min=1, max=MAX_STEPS, help="langevin: MALA steps per chain (step size adapted in the first half)")] = 200,
    step_size: Annotated[float, typer.Option(min=0.0, help="langevin: initial step size h (> 0)")] = 0.05,
    cost_json: Annotated[Path | None, typer.Option("--cost-json", help="Write the sampling cost (time, draws, acceptance) as JSON")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False,
    cond: Annotated[
        list[str] | None,
        typer.Option("--cond", help="A conditional prompt's conditions, e.g. yaw=0.2,pitch=-0.1 (others at their reference); "
                     "repeat --cond or separate by commas, each name once"),
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option("--sweep", help="Sweep one condition: NAME=LOW:HIGH:STEPS, e.g. yaw=-0.35:0.35:7; a grid with one row per "
                     "noise (-n rows) and one column per value"),
    ] = None,
    scale: Annotated[
        int | None,
        typer.Option("--scale", min=1, help="A .png grid's pixels made N×N (nearest neighbour); default: the smallest N "
                     "that makes the grid 480 px wide, at most 8 (1 with --no-labels)"),
    ] = None,
    plain: Annotated[
        bool,
        typer.Option("--no-labels", "--plain", help="A .png grid without labels and, unless --scale is given, unscaled: "
                     "the raw grid, for other tools"),
    ] = False,
) -> None:
    """Draw N images from a prompt (or from a generator alone with --gen) and save them to OUT."""
    from promptgen.api import sample_with_cost
    from promptgen.artifacts.prompt import build_generator, is_generator_spec, load_prompt
    from promptgen.core.atomic import write_text_atomic
    from promptgen.core.images import check_images_fit, check_output, save_images
    from promptgen.sampling.baselines import ACCEPT_MODES, METHODS

    if (prompt is None) == (gen is None):
        raise PromptgenError("give a prompt folder or --gen SPEC (not both), e.g. `promptgen sample runs/three -n 64 -o grid.png`")
    if method not in METHODS:
        raise PromptgenError(f"unknown --method {method!r}; use {', '.join(METHODS)}")
    if accept not in ACCEPT_MODES:
        raise PromptgenError(f"unknown --accept {accept!r}; use {', '.join(ACCEPT_MODES)}")
    if method != "flow" and gen is not None:
        raise PromptgenError(
            f"--method {method} samples a trained prompt's energy-based model: give a prompt folder, not --gen "
            f"(e.g. `promptgen sample runs/three --method {method}`)"
        )
    check_output(out)
    if scale is not None and out.suffix.lower() != ".png":
        raise PromptgenError(f"--scale {scale} scales a .png grid; -o {printable(out.name)} keeps the images as they are: drop --scale")
    if cost_json is not None:
        from promptgen.core.atomic import writable_target

        if cost_json.is_dir():
            raise PromptgenError(f"cannot write {str(cost_json)!r}: it is a folder; give a file name for --cost-json")
        writable_target(cost_json, "--cost-json")
    # Every --cond is one mapping (each name once); an empty --cond or --sweep is a mistake, never ignored.
    cond_text = ",".join(cond) if cond is not None else None
    chosen = cond_text is not None or sweep is not None
    if chosen and gen is not None:
        raise PromptgenError("--cond and --sweep choose a conditional prompt's conditions: give its folder, not --gen")
    if chosen and cost_json is not None:
        raise PromptgenError("--cost-json reports a baseline sampler's cost; drop it with --cond or --sweep")
    if chosen and method != "flow":
        raise PromptgenError(f"--cond and --sweep sample through the trained flow; drop --method {method}")
    if prompt is not None and is_generator_spec(str(prompt)) and not str(prompt).startswith("prompt:"):
        raise PromptgenError(f"{str(prompt)!r} is a generator spec, not a prompt folder; sample it with --gen {prompt}")
    source = load_prompt(prompt) if prompt is not None else build_generator(gen)  # type: ignore[arg-type]
    look = _GridLook(prompt, gen, scale, plain)
    if chosen:
        _conditional(source, n, out, seed, device, cond_text, sweep, look)
        return
    check_images_fit(n, source.info.channels, *source.info.resolution)
    shown = f"{method} --accept {accept}" if method == "rejection" and accept != "auto" else method
    layout = look.plan(source, out, n, None, seed, method=shown)
    images, cost = sample_with_cost(
        source, n, method=method, seed=seed, device=device, accept=accept, max_draws=max_draws, steps=steps,
        step_size=step_size, progress=not quiet and err_console.is_terminal, console=err_console,
    )
    save_images(images, out, labels=layout.labels, scale=layout.scale)
    if cost_json is not None:
        write_text_atomic(cost_json, cost.model_dump_json(indent=2) + "\n")
    out_console.print(f"[green]✓[/green] {n} images in {cost.seconds:.2f} s -> [bold]{printable(out)}[/bold]")
    if method != "flow":
        out_console.print(_cost_table(cost))


class _Grid(NamedTuple):
    labels: GridLabels | None
    scale: int


class _GridLook(NamedTuple):
    """How ``sample`` draws a .png grid: ``--scale``, ``--no-labels``, and what the labels name."""

    prompt: Path | None
    gen: str | None
    scale: int | None
    plain: bool

    def plan(self, source: Any, out: Path, count: int, nrow: int | None, seed: int, **caption: Any) -> _Grid:
        """The labels and the scale of ``count`` images ``nrow`` a row, the scale checked against memory before any
        image is drawn; none of them for an ``.npz`` or a folder."""
        from promptgen.artifacts.captions import grid_labels
        from promptgen.core.images import auto_scale, check_grid_fits, grid_size

        if out.suffix.lower() != ".png":
            return _Grid(None, 1)
        tile_height, tile_width = source.info.resolution
        height, width = grid_size(count, tile_height, tile_width, nrow)
        scale = self.scale if self.scale is not None else 1 if self.plain else auto_scale(width)
        check_grid_fits(height, width, source.info.channels, scale)
        if self.plain:
            return _Grid(None, scale)
        title = str(self.prompt) if self.prompt is not None else None
        return _Grid(grid_labels(source, seed, title=title, spec=self.gen, **caption), scale)


def _conditional(
    source: Any, n: int, out: Path, seed: int, device: str, cond: str | None, sweep: str | None, look: _GridLook
) -> None:
    """``sample --cond`` / ``--sweep``: a conditional prompt at chosen conditions, or a sweep grid (one row per ε)."""
    import time
    import warnings

    from promptgen.artifacts.prompt import Prompt, sample_images, sweep_images
    from promptgen.core.conditions import ConditionWarning, parse_sweep, parse_values
    from promptgen.core.device import resolve_device
    from promptgen.core.images import check_images_fit, save_images

    names = [c.name for c in source.conditions] if isinstance(source, Prompt) else []
    if not names:
        flag = "--cond" if cond is not None else "--sweep"
        raise PromptgenError(
            (f"{flag}: the prompt {printable(source.info.name.removeprefix('prompt:'))} was trained without conditions; "
             if isinstance(source, Prompt) else f"{flag}: the generator {printable(source.info.name)} takes no conditions; ")
            + f"sample it without {flag}, or compose a conditional prompt with --cond NAME=LOW:HIGH"
        )
    values = parse_values(cond, names) if cond is not None else {}
    swept = parse_sweep(sweep) if sweep is not None else None
    if swept is not None and n * len(swept[1]) > MAX_IMAGES:
        raise PromptgenError(f"-n {n} rows × {len(swept[1])} values is over {MAX_IMAGES:,} images; give fewer rows or steps")
    check_images_fit(n * (len(swept[1]) if swept is not None else 1), source.info.channels, *source.info.resolution,
                     option="-n" if swept is None else f"-n {n} × --sweep {len(swept[1])} steps =")
    columns = len(swept[1]) if swept is not None else None
    layout = look.plan(source, out, n * (columns or 1), columns, seed, condition=values, sweep=swept)
    dev = resolve_device(device)
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConditionWarning)
        if swept is None:
            images = sample_images(source, n, seed=seed, device=dev, condition=values)
            shape = f"{n} images"
        else:
            grid = sweep_images(source, n, swept[0], swept[1], seed=seed, condition=values, device=dev)
            images = grid.flatten(0, 1)
            shape = f"{n} × {len(swept[1])} sweep of {swept[0]}"
    for w in caught:
        if issubclass(w.category, ConditionWarning):
            err_console.print(f"[yellow]warning:[/yellow] {printable(str(w.message))}", soft_wrap=True)
    save_images(images, out, nrow=columns, labels=layout.labels, scale=layout.scale)
    out_console.print(f"[green]✓[/green] {shape} in {time.perf_counter() - t:.2f} s -> [bold]{printable(out)}[/bold]")


def _cost_table(cost: Any) -> Table:
    """A :class:`~promptgen.sampling.baselines.SamplerCost` as a two-column table."""
    t = Table(show_header=False, title=f"cost of --method {cost.method}" + (f" --accept {cost.accept}" if cost.accept else ""))
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("samples", f"{printable(cost.target)}  ({'exact' if cost.exact else 'not exact'})")
    t.add_row("time", f"{cost.seconds:.2f} s on {cost.device}: {cost.samples_per_second:.3g} samples/s")
    t.add_row("generator calls", f"{cost.draws:,} ({cost.draws_per_sample:.3g} per image)")
    t.add_row("energy evaluations", f"{cost.energy_evaluations:,}" + (f", gradients {cost.gradient_evaluations:,}" if cost.gradient_evaluations else ""))
    if cost.acceptance_rate is not None:
        t.add_row("acceptance rate", f"{cost.acceptance_rate:.3g} ({cost.accepted} accepted)")
    if cost.steps is not None:
        mh = f"{cost.mh_acceptance:.2f}" if cost.mh_acceptance is not None else "n/a"
        t.add_row("langevin", f"{cost.steps} steps, step size {cost.step_size:.3g}, MH acceptance {mh}")
    if cost.note:
        t.add_row("note", printable(cost.note))
    return t
