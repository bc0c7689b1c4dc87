"""``promptgen compose``: train a prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

#: Most images one command takes (-n); memory sets the real limit, checked once the image size is known.
from promptgen.cli.app import _default, app, err_console, out_console, print_verdict, user_errors
from promptgen.cli.launch import _relaunch_with_torchrun
from promptgen.core.errors import PromptgenError
from promptgen.training.config import MAX_BATCH, MAX_SEED, MAX_STEPS, MIN_SEED, FlowConfig, TrainConfig


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
    realism: Annotated[
        str,
        typer.Option(help="The realism check that watches the run: auto (the generator's own evaluators), off, or an evaluator's name"),
    ] = "auto",
    guard: Annotated[
        str, typer.Option(help="When the watch sees junk rise above the generator's: keep-best (end with the best flow whose junk stayed "
                          "within the margin), back-off (also halve the energies' weights), realism (also double the energies' "
                          "realism weights, up to 8 times their own), off (only report)")
    ] = _default(TrainConfig, "guard"),
    until_met: Annotated[
        bool, typer.Option("--until-met", help="Stop at the first evaluation (--eval-every) where every target is met without junk, "
                           "confirmed on a second batch; never past --steps")
    ] = False,
    check_samples: Annotated[
        int, typer.Option(min=0, max=1_000_000, help="Samples of the closing check (0: none)")
    ] = _default(TrainConfig, "check_samples"),
    cond: Annotated[
        list[str] | None,
        typer.Option(
            "--cond",
            help="A condition chosen at sampling time, with its training range, repeatable: yaw=-0.35:0.35 "
            "(drawn uniformly; add ~normal for a normal truncated to the range, @REF for the reference, default 0)",
        ),
    ] = None,
    log: Annotated[
        str, typer.Option(help="Log every step's loss and energy terms, and each evaluation's figures and samples: auto "
                          "(TensorBoard when installed, else nothing), tensorboard, wandb or none")
    ] = _default(TrainConfig, "log"),
    log_dir: Annotated[Path | None, typer.Option("--log-dir", help="Folder of the logs [default: OUT/logs]")] = None,
) -> None:
    """Train a prompt: a flow that makes GEN sample the energy-based model of the ENERGY specs."""
    from promptgen.composing import compose as run
    from promptgen.training.distributed import from_env

    if resume is not None and (energy or out is not None or keep_parent or cond or realism != "auto"):
        raise PromptgenError("--resume continues a run with the settings it was started with; drop --energy, --out, --cond, --realism and --keep-parent")
    if resume is not None and (log != "auto" or log_dir is not None):
        raise PromptgenError("--resume continues the run's own log, as run.json records it; drop --log and --log-dir")
    if resume is not None:
        from promptgen.composing import read_run

        _check_tracker(read_run(resume).train.log)
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
        guard=guard,
        until_met=until_met,
        check_samples=check_samples,
        log=log,
        log_dir=str(log_dir.absolute()) if log_dir is not None else None,  # run.json keeps it: --resume from anywhere
    )
    config.check_limits()
    _check_tracker(config.log)
    flow_settings = {"transforms": transforms, "hidden": hidden, **({"kind": flow} if flow != "auto" else {})}
    _checked(FlowConfig, features=2, **flow_settings)
    if nproc > 1 and not from_env().active:
        _check_before_relaunch(gen, energy or [], out, overwrite, keep_parent, resume, batch_size, nproc, device, cond or [], realism)
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
        conditions=cond or [],
        realism=realism,
    )
    if not from_env().main:
        return
    from promptgen.artifacts.manifest import PREVIEW

    t = prompt.manifest.training
    out_console.print(
        f"[green]✓[/green] prompt saved to [bold]{prompt.path}[/bold] "
        f"({t.seconds:.1f} s, final loss {t.final_loss:.3f}); preview: {prompt.path / PREVIEW}"
    )
    if t.stopped_at is not None:
        out_console.print(
            f"[green]until-met:[/green] stopped at step {t.stopped_at} of {t.config.steps}: every target met on the evaluation's "
            f"{t.config.eval_batch} samples and on {t.confirmation.n if t.confirmation else t.config.eval_batch} fresh ones", soft_wrap=True)
    elif t.config.until_met:
        out_console.print(f"[yellow]until-met:[/yellow] ran all {t.config.steps} steps: no evaluation met every target twice", soft_wrap=True)
    if t.realism_factor > 1:
        out_console.print(
            f"[yellow]guard:[/yellow] junk rose, so the energies' realism weights were raised to {t.realism_factor:g} times their own",
            soft_wrap=True)
    if t.kept_step is not None:
        out_console.print(
            f"[yellow]guard:[/yellow] the last evaluation made more junk than the generator; kept the flow of step {t.kept_step}, "
            "the best whose junk stayed within the margin", soft_wrap=True)
    _print_check(prompt.manifest.check, prompt.manifest.training.config.check_samples)
    if prompt.conditions:
        c = prompt.conditions[0]
        out_console.print(f"  sample it: promptgen sample {prompt.path} --sweep {c.name}={c.low!r}:{c.high!r}:7 -n 8 -o sweep.png")
    else:
        out_console.print(f"  sample it: promptgen sample {prompt.path} -n 64 -o grid.png")


def _print_check(check, samples: int) -> None:
    """The closing check: each target's figure by its judge, the junk rate, and whether the targets were met."""
    from promptgen.composing.watch import verdict

    if check is None and not samples:
        out_console.print("  no closing check: --check-samples 0 turned it off (`promptgen eval` judges the prompt)")
        return
    if check is None:
        out_console.print("  no closing check: nothing judges this generator's images (no realism check, no attribute asked)")
        return
    met, lines = verdict(check)
    print_verdict(lines, met, check.n)
    _print_flags(check)


#: The flags the verdict does not already say (it says a missed target and junk, with the same figures).
_FLAGGED_BEYOND_VERDICT = ("coverage", "collapse", "frechet")


def _print_flags(check) -> None:
    """The closing check's other failures (a class lost, a collapse of diversity), as eval flags them."""
    from rich.markup import escape

    from promptgen.core.errors import printable
    from promptgen.evaluation.closing import check_flags

    for flag in check_flags(check):
        if flag.kind in _FLAGGED_BEYOND_VERDICT:
            err_console.print(f"[yellow]warning:[/yellow] {escape(printable(flag.message))}", soft_wrap=True, highlight=False)


def _check_before_relaunch(gen: str, energies: list[str], out: Path | None, overwrite: bool, keep_parent: bool,
                           resume: Path | None, batch_size: int, nproc: int, device: str, cond: list[str], realism: str = "auto") -> None:
    """Catch here, once, the mistakes the torchrun processes would meet: specs, models, the folder, the device."""
    from promptgen.artifacts.prompt import build_generator
    from promptgen.composing import build_energy, read_run
    from promptgen.core.device import resolve_device
    from promptgen.core.registry import get_registry

    if batch_size % nproc:
        raise PromptgenError(f"--batch-size {batch_size} does not split over --nproc {nproc}; use a multiple of {nproc}")
    resolve_device(device)
    if resume is not None:
        _check_tracker(read_run(resume).train.log)
        return
    if not energies:
        raise PromptgenError("give at least one --energy, e.g. --energy classifier:digit=3")
    registry = get_registry()
    if keep_parent:
        from promptgen.artifacts.chaining import kept_energies, normalise_generator_spec

        energies = [*energies, *kept_energies(normalise_generator_spec(gen), energies, registry)]
    import torch

    from promptgen.composing.watch import SampleWatch, root_generator
    from promptgen.core.conditions import check_names, parse_range
    from promptgen.core.latents import condition_inputs
    from promptgen.core.spec import parse_spec
    from promptgen.training.ebm import check_conditions

    ranges = check_names([parse_range(c) for c in cond])
    generator = build_generator(gen, registry)
    terms = [build_energy(e, registry) for e in energies]
    check_conditions(terms, ranges, reads=condition_inputs(generator))
    SampleWatch(terms, generator, root_generator(generator, parse_spec(gen).name), registry, torch.device("cpu"), realism)
    if out is not None:
        from promptgen.artifacts.manifest import check_out_dir

        check_out_dir(out, overwrite)


def _check_tracker(log: str) -> None:
    """A --log whose package is not installed: one line (with its pip install) before anything starts."""
    from promptgen.training.tracking import choose_backend

    choose_backend(log)


def _checked(model: type, **values: Any) -> Any:
    """``model(**values)`` from command-line values; a value it refuses is one line naming its option."""
    from pydantic import ValidationError

    from promptgen.core.errors import SettingsError

    try:
        return model(**values)
    except (ValidationError, SettingsError) as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        value = values.get(field, err.get("input"))
        raise PromptgenError(f"--{field.replace('_', '-')} {value!r}: {err['msg'].lower()}; see `promptgen compose --help`") from None
