"""The ``promptgen`` command (Typer); each command mirrors a function of :mod:`promptgen.api`."""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

try:  # Typer vendors its own click from 0.22 on
    from typer._click import exceptions as click
except ImportError:  # pragma: no cover - older Typer uses click itself
    from click import exceptions as click  # type: ignore[no-redef]

from promptgen.core.errors import PromptgenError, one_line, printable
from promptgen.training.flow import FlowConfig
from promptgen.training.trainer import MAX_BATCH, MAX_SEED, MAX_STEPS, MIN_SEED, TrainConfig

#: Most images one command takes (-n); memory sets the real limit, checked once the image size is known.
MAX_IMAGES = 10_000_000


def _default(model: type, name: str) -> Any:
    return model.model_fields[name].default

#: click raises this for a bare ``promptgen`` from 8.2 on; older click prints the help itself.
_NO_ARGS_IS_HELP = getattr(click, "NoArgsIsHelpError", ())

#: Set in the environment of the processes ``compose --nproc`` starts (see :func:`_relaunch_with_torchrun`).
RELAUNCHED = "PROMPTGEN_RELAUNCHED"

#: What a failed write to the terminal or a pipe looks like (``> /dev/full``, a closed pipe).
_STREAM_ERRNOS = {errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EBADF}


class OneLineErrors(TyperGroup):
    """The command group: every mistake on the command line is one line on stderr and exit code 2.

    Typer draws a usage mistake (``-n 0``, ``--lr nan``, an unknown option) as a
    multi-line panel; here it is ``error: <what>; see `promptgen CMD --help```.
    An operating-system error that escapes a command (a name too long for the
    file system, a full disk, a full or closed standard output) is one line too.
    """

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        from promptgen.training.distributed import from_env

        tolerant_streams()
        code: Any = 0
        dist = from_env()
        if dist.active and not dist.main and os.environ.get(RELAUNCHED) == "1":
            # A process `compose --nproc` started, not rank 0: rank 0 meets the same mistakes and says
            # them once, so this one exits quietly on a mistake (after a moment, so that torchrun does not
            # stop rank 0 before it has printed). Anything else is not a mistake of the user's: it shows.
            try:
                code = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
            except (click.ClickException, PromptgenError):
                code = 2
            if code == 2:
                time.sleep(2.0)
            if not standalone_mode:
                return code
            sys.exit(code if isinstance(code, int) else 0)
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
            _flush_stdout()
        except _NO_ARGS_IS_HELP as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else "")
            code = 2
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "promptgen"
            _error(f"{one_line(exc.format_message()).rstrip('.')}; see `{where} --help`")
            code = 2
        except click.ClickException as exc:
            _error(one_line(exc.format_message()))
            code = exc.exit_code
        except typer.Abort:
            _error("aborted")
            code = 1
        except OSError as exc:
            code = _os_error(exc)
        except MemoryError:
            _error("out of memory; ask for fewer images (-n) or a smaller --batch-size")
            code = 2
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


def tolerant_streams() -> None:
    """Let text the terminal's encoding cannot show (``PYTHONIOENCODING=ascii``) print as escapes."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a closed or unusual stream: leave it
                pass


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except (OSError, ValueError) as exc:
        raise OSError(getattr(exc, "errno", errno.EIO), "cannot write to standard output") from exc


def _error(message: str) -> None:
    try:
        err_console.print(f"[bold red]error:[/bold red] {printable(message)}", highlight=False, soft_wrap=True)
    except OSError:  # stderr itself is gone: nothing left to tell
        pass


def _os_error(exc: OSError) -> int:
    """One line for an operating-system error that escaped a command; the exit code."""
    if exc.filename is None and exc.errno in _STREAM_ERRNOS:
        # Standard output failed (a full disk, /dev/full, a closed pipe): say so once, and keep
        # Python from failing again when it flushes stdout on the way out.
        with open(os.devnull, "w") as devnull:
            try:
                os.dup2(devnull.fileno(), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
        _error(f"cannot write to standard output: {exc.strerror or 'write failed'}; write to a file or a terminal instead")
        return 2
    name = f" {str(exc.filename)!r}" if exc.filename is not None else ""
    _error(f"cannot use{name}: {exc.strerror or type(exc).__name__}; choose another path or check its permissions")
    return 2


app = typer.Typer(
    cls=OneLineErrors,
    name="promptgen",
    help="Distributional control of pretrained generators: train a prompt, then sample it in one pass.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out_console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn a PromptgenError into one red line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PromptgenError as exc:
            from promptgen.training.distributed import from_env

            # Under torchrun every process meets the same mistake: one of them says it.
            if from_env().main:
                # printable: the message may quote a stranger's manifest or a plugin's text.
                err_console.print(f"[bold red]error:[/bold red] {printable(exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@user_errors
def compose(
    gen: Annotated[str, typer.Option("--gen", "-g", help="Generator spec, e.g. mnist or stylegan2:path=ffhq.pkl")] = "mnist",
    energy: Annotated[
        list[str] | None,
        typer.Option("--energy", "-e", help='Energy spec, repeatable: classifier:digit=3, clip:"a smiling face"@600'),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Prompt folder to create [default: runs/<energies>-<time>]")] = None,
    steps: Annotated[int, typer.Option(min=1, max=MAX_STEPS, help="Optimiser steps")] = _default(TrainConfig, "steps"),
    batch_size: Annotated[int, typer.Option(min=1, max=MAX_BATCH, help="Samples per micro-batch")] = _default(TrainConfig, "batch_size"),
    accumulate: Annotated[int, typer.Option(min=1, max=1024, help="Micro-batches per step (gradient accumulation)")] = _default(TrainConfig, "accumulate"),
    lr: Annotated[float, typer.Option(min=0.0, help="Adam learning rate")] = _default(TrainConfig, "lr"),
    clip_grad: Annotated[float, typer.Option(min=0.0, help="Max gradient norm (0 disables clipping)")] = _default(TrainConfig, "clip_grad"),
    warmup: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of steps over which energy weights ramp up from 0")] = _default(TrainConfig, "warmup"),
    forward_weight: Annotated[
        float, typer.Option(min=0.0, help="Weight of a forward-KL term on importance-weighted base samples (helps rare targets)")
    ] = _default(TrainConfig, "forward_weight"),
    flow: Annotated[
        str, typer.Option(help="Flow layers: auto (affine couplings; splines for a mixture), spline-coupling or affine-coupling")
    ] = "auto",
    seed: Annotated[int, typer.Option(min=MIN_SEED, max=MAX_SEED, help="Random seed")] = _default(TrainConfig, "seed"),
    transforms: Annotated[int, typer.Option(min=1, max=64, help="Coupling layers in the flow")] = _default(FlowConfig, "transforms"),
    hidden: Annotated[int, typer.Option(min=1, max=8192, help="Hidden width of each coupling network")] = _default(FlowConfig, "hidden"),
    eval_every: Annotated[int, typer.Option(min=1, max=MAX_STEPS, help="Evaluate on fixed noise every N steps")] = _default(TrainConfig, "eval_every"),
    eval_batch: Annotated[int, typer.Option(min=1, max=MAX_BATCH, help="Samples in each periodic evaluation")] = _default(TrainConfig, "eval_batch"),
    checkpoint_every: Annotated[int, typer.Option(min=1, max=MAX_STEPS, help="Write checkpoint.pt every N steps")] = _default(TrainConfig, "checkpoint_every"),
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing prompt folder")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue the unfinished run in this folder from its last checkpoint, with its own settings")
    ] = None,
    nproc: Annotated[int, typer.Option(min=1, max=256, help="Train with N processes (torchrun; the batch is split among them)")] = 1,
    keep_parent: Annotated[
        bool, typer.Option("--keep-parent", help="With --gen prompt:PATH, ask that prompt's energies again so its conditions hold too")
    ] = False,
) -> None:
    """Train a prompt: a flow that makes GEN sample the energy-based model of the ENERGY specs."""
    from promptgen.composing import compose as run
    from promptgen.training.distributed import from_env

    if resume is not None and (energy or out is not None or keep_parent):
        raise PromptgenError("--resume continues a run with the settings it was started with; drop --energy, --out and --keep-parent")
    if flow not in ("auto", "spline-coupling", "affine-coupling"):
        raise PromptgenError(f"unknown --flow {flow!r}; use auto, spline-coupling or affine-coupling")
    config = _checked(
        TrainConfig,
        steps=steps,
        batch_size=batch_size,
        accumulate=accumulate,
        lr=lr,
        clip_grad=clip_grad or None,
        warmup=warmup,
        forward_weight=forward_weight,
        seed=seed,
        eval_every=eval_every,
        eval_batch=eval_batch,
        checkpoint_every=checkpoint_every,
    )
    config.check_limits()
    flow_settings = {"transforms": transforms, "hidden": hidden, **({"kind": flow} if flow != "auto" else {})}
    _checked(FlowConfig, features=2, **flow_settings)
    if nproc > 1 and not from_env().active:
        _check_before_relaunch(gen, energy or [], out, overwrite, keep_parent, resume, batch_size, nproc, device)
        raise typer.Exit(_relaunch_with_torchrun(nproc))
    prompt = run(
        gen,
        energy or [],
        resume if resume is not None else out,
        train=config,
        flow=flow_settings,
        device=device,
        overwrite=overwrite,
        progress=not quiet,
        console=err_console,
        resume=resume is not None,
        keep_parent=keep_parent,
    )
    if not from_env().main:
        return
    t = prompt.manifest.training
    out_console.print(
        f"[green]✓[/green] prompt saved to [bold]{prompt.path}[/bold] "
        f"({t.seconds:.1f} s, final loss {t.final_loss:.3f}); preview: {prompt.path / 'samples.png'}"
    )
    out_console.print(f"  sample it: promptgen sample {prompt.path} -n 64 -o grid.png")


def _check_before_relaunch(gen: str, energies: list[str], out: Path | None, overwrite: bool, keep_parent: bool,
                           resume: Path | None, batch_size: int, nproc: int, device: str) -> None:
    """Catch here, once, the mistakes the torchrun processes would meet: specs, models, the folder, the device."""
    from promptgen.artifacts.prompt import build_generator
    from promptgen.composing import build_energy, read_run
    from promptgen.core.device import resolve_device
    from promptgen.core.registry import get_registry

    if batch_size % nproc:
        raise PromptgenError(f"--batch-size {batch_size} does not split over --nproc {nproc}; use a multiple of {nproc}")
    resolve_device(device)
    if resume is not None:
        read_run(resume)
        return
    if not energies:
        raise PromptgenError("give at least one --energy, e.g. --energy classifier:digit=3")
    registry = get_registry()
    if keep_parent:
        from promptgen.artifacts.chaining import kept_energies, normalise_generator_spec

        energies = [*energies, *kept_energies(normalise_generator_spec(gen), energies, registry)]
    build_generator(gen, registry)
    for e in energies:
        build_energy(e, registry)
    if out is not None:
        from promptgen.artifacts.manifest import check_out_dir

        check_out_dir(out, overwrite)


def _checked(model: type, **values: Any) -> Any:
    """``model(**values)`` from command-line values; a value it refuses is one line naming its option."""
    from pydantic import ValidationError

    try:
        return model(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        value = values.get(field, err.get("input"))
        raise PromptgenError(f"--{field.replace('_', '-')} {value!r}: {err['msg'].lower()}; see `promptgen compose --help`") from None


def _relaunch_with_torchrun(nproc: int) -> int:
    """Run this same ``compose`` command under ``torchrun`` with ``nproc`` processes; its exit code.

    Neither the launcher nor its processes import from the current folder
    (``python -P`` and ``PYTHONSAFEPATH``): a ``rich.py`` or ``torch.py`` lying
    there must not run. A process that fails has said why in one line; the
    launcher's own traceback about it is not shown.
    """
    import subprocess

    argv = sys.argv[1:]
    if "compose" not in argv:
        raise PromptgenError("--nproc works from the command line (promptgen compose ... --nproc N); from Python, use torchrun")
    args = argv[argv.index("compose") + 1 :]
    clean, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            clean.append(a)
    # `python -P` (3.11+) and PYTHONSAFEPATH keep the current folder off the import path; on 3.10, which has
    # neither, each stub removes it itself before importing anything else. torchrun starts the processes
    # with --no-python, as `python -c WORKER compose ...`, so they never run `-m` from the current folder.
    launch = _CLEAN_PATH + "from promptgen.cli import launch_torchrun; sys.exit(launch_torchrun(sys.argv[1:]))"
    worker = _CLEAN_PATH + "sys.argv = ['promptgen', *sys.argv[1:]]; from promptgen.cli import main; main()"
    safe = ["-P"] if sys.version_info >= (3, 11) else []
    cmd = [sys.executable, *safe, "-c", launch, "--standalone", f"--nproc_per_node={nproc}", "--no-python",
           sys.executable, *safe, "-c", worker, "compose", *clean]
    # LOGLEVEL: torchrun's own log lines (which process failed, with what exit code) would follow the
    # failing process's one-line error; that line says it all.
    env = {**os.environ, "PYTHONSAFEPATH": "1", "LOGLEVEL": "CRITICAL", RELAUNCHED: "1"}
    # torchrun would set 1 thread per process and warn about it; share the cores instead.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.run(cmd, check=False, env=env).returncode


#: The start of the relaunch's `python -c` stubs: the current folder off the import path, whatever the Python.
_CLEAN_PATH = "import os, sys; sys.path[:] = [p for p in sys.path if p not in ('', '.', os.getcwd())]; "


def launch_torchrun(argv: list[str]) -> int:
    """``torchrun ARGV`` in this process; the first failing process's exit code instead of a traceback."""
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # Which process failed with which exit code: the process's own one line already said why.
    for name in ("torch.distributed.elastic", "torch.distributed.elastic.multiprocessing.api", "torch.distributed.run",
                 "torch.distributed.launcher.api", "torch.distributed.elastic.agent.server.api"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        run(parse_args(argv))
    except ChildFailedError as exc:
        codes = {rank: f.exitcode for rank, f in exc.failures.items()}
        if 2 in codes.values():  # a mistake: the process said it in one line
            return 2
        rank, code = min(codes.items())
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        err_console.print(f"[bold red]error:[/bold red] training process {rank} {how}; see its output above", highlight=False)
        return code if 0 < code < 256 else 1
    return 0


@app.command()
@user_errors
def sample(
    prompt: Annotated[Path | None, typer.Argument(help="Prompt folder made by `promptgen compose`")] = None,
    gen: Annotated[str | None, typer.Option("--gen", "-g", help="Sample a generator alone instead, e.g. --gen mnist")] = None,
    n: Annotated[int, typer.Option("-n", min=1, max=MAX_IMAGES, help="Number of images")] = 64,
    out: Annotated[Path, typer.Option("--out", "-o", help="OUT.png: a grid; OUT.npz: raw (N,C,H,W) in [0,1]; else a folder of PNGs")] = Path("samples.png"),
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
                     "that have the asked attribute) or auto (attribute when every energy can tell)"),
    ] = "auto",
    max_draws: Annotated[int, typer.Option(min=1, max=10**12, help="rejection: give up after this many generator samples")] = 1_000_000,
    steps: Annotated[int, typer.Option(min=1, max=MAX_STEPS, help="langevin: MALA steps per chain (step size adapted in the first half)")] = 200,
    step_size: Annotated[float, typer.Option(min=0.0, help="langevin: initial step size h (> 0)")] = 0.05,
    cost_json: Annotated[Path | None, typer.Option("--cost-json", help="Write the sampling cost (time, draws, acceptance) as JSON")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False,
) -> None:
    """Draw N images from a prompt (or from a generator alone with --gen) and save them to OUT."""
    from promptgen.api import sample_with_cost
    from promptgen.artifacts.prompt import build_generator, load_prompt
    from promptgen.core.atomic import write_text_atomic
    from promptgen.core.images import check_output, save_images
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
    if cost_json is not None:
        from promptgen.core.atomic import writable_target

        if cost_json.is_dir():
            raise PromptgenError(f"cannot write {str(cost_json)!r}: it is a folder; give a file name for --cost-json")
        writable_target(cost_json, "--cost-json")
    source = load_prompt(prompt) if prompt is not None else build_generator(gen)  # type: ignore[arg-type]
    images, cost = sample_with_cost(
        source, n, method=method, seed=seed, device=device, accept=accept, max_draws=max_draws, steps=steps,
        step_size=step_size, progress=not quiet and err_console.is_terminal, console=err_console,
    )
    save_images(images, out)
    if cost_json is not None:
        write_text_atomic(cost_json, cost.model_dump_json(indent=2) + "\n")
    out_console.print(f"[green]✓[/green] {n} images in {cost.seconds:.2f} s -> [bold]{printable(out)}[/bold]")
    if method != "flow":
        out_console.print(_cost_table(cost))


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


@app.command("list")
@user_errors
def list_(
    name: Annotated[str | None, typer.Argument(help="Show one generator, energy or classifier: its options, defaults, ranges and an example")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Show installed plugins and what each registers; with NAME, one entry's options."""
    from promptgen.core.registry import get_registry

    reg = get_registry()
    if name is not None:
        _list_one(reg, name, as_json)
        return
    if as_json:
        rows = [
            {
                "plugin": p.name,
                "distribution": p.distribution,
                "version": p.version,
                "generators": p.generators,
                "energies": p.energies,
                "classifiers": p.classifiers,
                "error": p.error,
            }
            for p in reg.plugins
        ]
        out_console.print_json(json.dumps(rows))
        return
    # Every name and message below comes from a plugin: printable() keeps rich markup and terminal codes out.
    # Names are never wrapped (they are what users type); summaries fold, so the lists fit 80 columns.
    plugins = Table(title="plugins", show_lines=False)
    plugins.add_column("plugin", no_wrap=True)
    plugins.add_column("distribution", no_wrap=True)
    plugins.add_column("status", overflow="fold")
    for p in reg.plugins:
        status = f"[red]{printable(p.error)}[/red]" if p.error else "[green]ok[/green]"
        plugins.add_row(printable(p.name), printable(f"{p.distribution} {p.version}".strip()), status)
    out_console.print(plugins)
    kinds = (
        ("generators (--gen)", reg.generators, lambda e: e.summary),
        ("energies (--energy)", reg.energies, lambda e: f"{e.summary} (default weight {e.default_weight:g})"),
        ("attribute classifiers", reg.classifiers, lambda e: f"{e.role}: " + "; ".join(
            f"{a} ({'/'.join(map(str, labels))})" for a, labels in e.attributes.items()) + (f". {e.summary}" if e.summary else "")),
    )
    for title, entries, describe in kinds:
        if not entries:
            continue
        table = Table(title=title, show_lines=False)
        table.add_column("name", no_wrap=True, style="bold")
        table.add_column("summary", overflow="fold")
        for entry_name, entry in entries.items():
            table.add_row(printable(entry_name), printable(describe(entry)))
        out_console.print(table)
    out_console.print("Details of one: [bold]promptgen list NAME[/bold]")


def _list_one(reg, name: str, as_json: bool) -> None:
    """``promptgen list NAME``: each entry called NAME, with its options."""
    from promptgen.core.errors import unknown_name
    from promptgen.core.options import option_default, option_example, option_type

    found = [
        (kind, table[name])
        for kind, table in (("generator", reg.generators), ("energy", reg.energies), ("classifier", reg.classifiers))
        if name in table
    ]
    if not found:
        raise unknown_name("generator, energy or classifier", name, [*reg.generators, *reg.energies, *reg.classifiers], "see `promptgen list`")
    described = []
    for kind, entry in found:
        model = entry.options
        options = [
            {
                "name": key,
                "takes": option_type(model, key),
                "default": option_default(model, key),
                "help": info.description,
                "example": option_example(model, key),
            }
            for key, info in model.model_fields.items()
        ]
        row: dict = {"name": name, "kind": kind, "plugin": reg.provider(name, kind), "summary": entry.summary, "options": options}
        if kind == "generator":
            row["example"] = f"--gen {entry.example or name}"
        elif kind == "energy":
            row |= {"example": f"--energy {entry.example or name}", "default_weight": entry.default_weight, "arguments": entry.arguments}
        else:
            row |= {"role": entry.role, "attributes": {a: list(map(str, v)) for a, v in entry.attributes.items()}}
        described.append(row)
    if as_json:
        out_console.print_json(json.dumps(described))
        return
    for row in described:
        t = Table(show_header=False, title=printable(f"{row['kind']} {name}"))
        t.add_column(style="bold", no_wrap=True)
        t.add_column(overflow="fold")
        t.add_row("plugin", printable(row["plugin"]))
        t.add_row("summary", printable(row["summary"] or "-"))
        if "example" in row:
            t.add_row("example", printable(row["example"]))
        if row.get("arguments"):
            t.add_row("arguments", printable(row["arguments"]))
        if "default_weight" in row:
            t.add_row("default weight", f"{row['default_weight']:g} (change it with @WEIGHT)")
        if "attributes" in row:
            t.add_row("role", row["role"])
            for attribute, labels in row["attributes"].items():
                t.add_row(printable(attribute), printable(", ".join(labels)))
        out_console.print(t)
        if not row["options"]:
            out_console.print("no options")
            continue
        opts = Table(title="options (NAME=VALUE)")
        opts.add_column("option", no_wrap=True, style="bold")
        opts.add_column("takes", overflow="fold")
        opts.add_column("default", overflow="fold")
        opts.add_column("help", overflow="fold")
        for o in row["options"]:
            takes = o["takes"] + (f", e.g. {o['example']}" if o["example"] else "")
            opts.add_row(printable(o["name"]), printable(takes), printable(o["default"] or "-"), printable(o["help"] or ""))
        out_console.print(opts)


@app.command()
@user_errors
def info(
    prompt: Annotated[Path, typer.Argument(help="Prompt folder")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole manifest as JSON")] = False,
) -> None:
    """Show a prompt's manifest: generator, energies and weights, flow, training summary (after checking its weights)."""
    from promptgen.artifacts.manifest import check_prompt

    m = check_prompt(prompt)
    if as_json:
        out_console.print_json(m.model_dump_json())
        return
    # Every string below comes from the manifest, which may be a stranger's: printable() it.
    t = Table(show_header=False, title=printable(f"prompt {prompt}"))
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    g = m.generator
    t.add_row("generator", printable(f"{g.spec}  (latent {g.latent_shape}, {g.resolution[0]}×{g.resolution[1]}, licence {g.licence})"))
    for e in m.energies:
        t.add_row("energy", printable(f"{e.spec}  weight {e.weight:g}"))
    for i, r in enumerate(m.lineage):
        found = Path(r.path).exists() or (r.relative is not None and (prompt / r.relative).exists())
        t.add_row(
            "lineage" if i == 0 else "",
            printable(
                f"{i + 1}. {r.path}{'' if found else '  [missing]'}  ({' + '.join(r.energies)} on {r.generator}; "
                f"created {r.created}; sha256 {r.weights_sha256[:12]})"
            ),
        )
    t.add_row("flow", f"{m.flow.kind}, {m.flow.transforms} layers, hidden {m.flow.hidden}")
    if m.mixture is not None:
        shares = sorted(zip(m.mixture.weights, m.mixture.labels, strict=True), reverse=True)
        shown = " · ".join(f"{lab} {w:.3f}" for w, lab in shares[:6]) + (" · …" if len(shares) > 6 else "")
        t.add_row("mixture", printable(f"{len(shares)} components over {m.mixture.attribute}: {shown}"))
    c = m.training.config
    t.add_row("training", printable(f"{c.steps} steps × batch {c.batch_size}×{c.accumulate}, lr {c.lr:g}, seed {c.seed}, {m.training.device}, {m.training.seconds:.1f} s"))
    t.add_row("final", printable(f"loss {m.training.final_loss:.3f}; " + ", ".join(f"{k} {v:.3f}" for k, v in m.training.final_terms.items())))
    t.add_row("created", printable(f"{m.created} with " + ", ".join(f"{k} {v}" for k, v in m.versions.items())))
    out_console.print(t)


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
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(printable(warning))}", soft_wrap=True, highlight=False)


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

    path = write(
        prompt, out, n=n, seed=seed, attrs=attr or [], data=data, batch_size=batch_size, device=device,
        progress=not quiet, console=err_console,
    )
    out_console.print(f"[green]✓[/green] report -> [bold]{path}[/bold]")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
