"""``compose``: from a generator spec and energy specs to a saved prompt, with every check before anything is written."""

from __future__ import annotations

import contextlib
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from promptgen.artifacts.chaining import kept_energies, normalise_generator_spec
from promptgen.artifacts.manifest import (
    MANIFEST,
    PREVIEW,
    WEIGHTS,
    ConditionRecord,
    GeneratorRecord,
    PromptManifest,
    current_versions,
    prepare_out_dir,
    save_prompt,
)
from promptgen.artifacts.prompt import Prompt, build_generator, lineage_for, load_prompt, sample_images, sweep_images
from promptgen.composing.runs import (
    CHECKPOINT,
    RUN_FILE,
    RunRequest,
    check_checkpoint_file,
    check_flow_settings,
    default_flow_kind,
    read_run,
)
from promptgen.composing.terms import (
    build_energy,
    check_fit,
    default_out_dir,
    energy_record,
    mixture_record,
    unique_labels,
)
from promptgen.composing.trials import MODES, STASH, choose, done, stash, undecided, unstash
from promptgen.composing.trials import describe as describe_trials
from promptgen.composing.watch import REALISM_AUTO, SampleWatch, closing_check, root_generator, verdict
from promptgen.core.atomic import writable_target, write_atomic, write_text_atomic
from promptgen.core.conditions import ConditionRange, check_names, parse_range
from promptgen.core.device import resolve_device
from promptgen.core.errors import ArtifactError, PromptgenError, SpecError, first_error, one_line
from promptgen.core.images import save_images
from promptgen.core.latents import condition_inputs, controlled_size, noise_size
from promptgen.core.lock import run_lock
from promptgen.core.protocols import Generator
from promptgen.core.registry import Registry, get_registry
from promptgen.core.spec import absolute_paths, parse_spec
from promptgen.training.config import TrialRecord
from promptgen.training.distributed import barrier, check_env, main_object, start, stop
from promptgen.training.ebm import EnergyBasedModel, WeightedEnergy, check_conditions
from promptgen.training.flow import CouplingFlow, FlowConfig
from promptgen.training.tracking import LOGS
from promptgen.training.trainer import TrainConfig, energy_states, load_energy_states, mixture_for, prefit, train_flow


def compose(
    generator: str | None,
    energies: str | Sequence[str] | None,
    out: str | Path | None = None,
    *,
    train: TrainConfig | None = None,
    flow: dict | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    preview: int = 64,
    registry: Registry | None = None,
    console: Console | None = None,
    resume: bool = False,
    keep_parent: bool = False,
    conditions: str | Sequence[str] | None = None,
    realism: str = REALISM_AUTO,
) -> Prompt:
    """Train a prompt for ``generator`` under ``energies`` and save it to ``out``.

    Args:
        generator: a generator spec, e.g. ``"mnist"`` (ignored with ``resume``).
        energies: energy specs, e.g. ``["classifier:digit=3"]``, or one spec as a string (ignored with ``resume``).
        out: the prompt folder to create (default: a new folder under ``runs/``).
        train: training settings (defaults: :class:`TrainConfig`).
        flow: overrides of :class:`FlowConfig` fields (``transforms``, ``hidden``).
        device: ``auto``, ``cpu``, ``cuda``...
        overwrite: replace an existing prompt folder.
        progress: show a progress bar.
        preview: images in ``samples.png`` (0 for none).
        resume: continue the unfinished run in ``out`` from its last checkpoint, with the
            settings it was started with (``out/run.json``); without a checkpoint it starts over.
        keep_parent: with ``generator`` a ``prompt:PATH``, train on the parent prompt's energies
            too, at their weights (:func:`~promptgen.artifacts.chaining.kept_energies`), so its conditions
            hold in the new prompt; they are recorded among its energies (ignored with ``resume``).
        conditions: a conditional prompt's conditions, ``NAME=LOW:HIGH`` each, or one as a string (``--cond``,
            :func:`~promptgen.core.conditions.parse_range`): the flow takes them as context, and
            energies that read them (``Contextual``) get them; ignored with ``resume``.
        realism: the realism check that watches the run (``--realism``): ``auto`` (the generator's domain
            evaluators), ``off``, or an evaluator's name; ignored with ``resume``.

    While it trains, compose watches the prompt's samples (:mod:`promptgen.composing.watch`): the junk rate
    against the generator's, and each asked attribute by its evaluator. ``train.guard`` acts on junk that
    rose; ``mode=auto`` is decided by trials (:mod:`promptgen.composing.trials`); and the prompt closes with a
    check on ``train.check_samples`` fresh samples, kept in the manifest (``check``). From Python a check that
    is not met is a :class:`UserWarning` (the command line prints it).

    Under ``torchrun`` every process calls this; they train together and rank 0 writes.

    Returns:
        The trained :class:`~promptgen.artifacts.prompt.Prompt`, loaded from ``out``.
    """
    registry = registry or get_registry()
    dist = check_env()  # a cluster's inherited WORLD_SIZE without torchrun's variables: one line
    state = None
    request: RunRequest | None = None
    if resume:
        if out is None:
            raise SpecError("--resume needs the run folder, e.g. --resume runs/my-prompt")
        out = Path(out)
        request = read_run(out)
        generator, energies, train, flow, device, preview, conditions, realism = (
            request.generator, request.energies, request.train, request.flow, request.device, request.preview,
            request.conditions, request.realism,
        )
        check_checkpoint_file(out)
        if (out / CHECKPOINT).is_file():
            from promptgen.training.checkpoint import load_checkpoint

            state = load_checkpoint(out / CHECKPOINT)
            if not _same_settings(state.get("config"), train):
                raise ArtifactError(f"{str(out / CHECKPOINT)!r} was written with other training settings than {str(out / RUN_FILE)!r}; start a new run")
    if isinstance(energies, str):  # one spec, not a sequence of one-character specs
        energies = [energies]
    if isinstance(conditions, str):
        conditions = [conditions]
    if not energies:
        raise SpecError("give at least one --energy, e.g. --energy classifier:digit=3")
    conditions = list(conditions or [])
    ranges = check_names([parse_range(c) for c in conditions])
    train = train or TrainConfig()
    train.check_limits()
    flow = check_flow_settings(dict(flow or {}))
    # "auto" is recorded in run.json, so --resume builds the same flow; a run.json without a kind was
    # written when splines were the only default.
    flow.setdefault("kind", "spline-coupling" if resume else "auto")
    if not isinstance(preview, int) or not 0 <= preview <= 1024:
        raise SpecError(f"preview={preview!r}: give 0 to 1024 images for samples.png")
    dev = resolve_device(device)
    generator = normalise_generator_spec(generator)  # prompt:PATH -> absolute path, stored in the manifest
    # path=FILE options made absolute too, so the manifest's specs work from any folder.
    generator = absolute_paths(generator)
    energies = [absolute_paths(e) for e in energies]
    if keep_parent and not resume:
        energies = [*energies, *kept_energies(generator, energies, registry)]
    # Check every spec and name before loading any weights, and build everything
    # before touching the disk.
    gen_name = parse_spec(generator).name
    registry.generator(gen_name)
    for e in energies:
        registry.energy(parse_spec(e).name)
    if train.batch_size % dist.world:
        raise SpecError(f"--batch-size {train.batch_size} does not split over {dist.world} processes; use a multiple of {dist.world}")
    terms = unique_labels([build_energy(e, registry) for e in energies])
    if train.forward_weight > 0 and ranges:
        raise SpecError("--forward-weight does not apply to a conditional prompt (its bank of base samples has no condition); remove it or --cond")
    if train.forward_weight > 0:  # the forward-KL bank needs one flow: an energy that may become a mixture stays one
        for t in terms:
            t.caps.settle("tilt")
    mixture_for(terms, train)  # checked before anything is written
    gen = build_generator(generator, registry)
    check_conditions(terms, ranges, reads=condition_inputs(gen))  # a generator may read conditions (its camera)
    check_fit(gen, terms, registry, registry.provider(gen_name, "generator"), ranges)
    watch = SampleWatch(terms, gen, root_generator(gen, gen_name), registry, dev, realism)  # a check that cannot judge gen: one line
    out = Path(out) if out is not None else default_out_dir(energies)
    lineage = lineage_for(gen, out)  # refuses an --out that is the parent prompt or an ancestor
    if out.is_dir():
        check_checkpoint_file(out)
    undo: dict[Path, bytes | None] = {}  # what a failed --overwrite puts back
    logs_kept: Path | None = None  # an overwritten prompt's logs/, set aside until the new prompt is whole
    written = [RUN_FILE, CHECKPOINT, MANIFEST, WEIGHTS, STASH, *([PREVIEW] if preview else [])]  # what compose may write
    if dist.main and out.is_dir():
        # A link or a special file among them fails now, before training, not after it (nothing is written yet).
        for name in written:
            writable_target(out / name, "--out", fix="remove it, or choose another --out")
    lock = contextlib.ExitStack()  # one run per folder (promptgen.core.lock): the main process holds it to the end
    with lock:
        if dist.main:
            if resume:
                lock.enter_context(run_lock(out))
                for stale in [*out.glob(f".{CHECKPOINT}.*.tmp"), *out.glob(f".{STASH}.*.tmp")]:  # left by a process killed while writing
                    stale.unlink(missing_ok=True)
            else:
                if (out / RUN_FILE).is_file() and not (out / MANIFEST).exists():
                    raise ArtifactError(f"--out {str(out)!r} holds an unfinished run; continue it with `promptgen compose --resume {out}` or choose a new folder")
                try:
                    request = RunRequest(
                        generator=generator, energies=list(energies), train=train, flow=flow, device=device, preview=preview,
                        conditions=conditions, realism=realism,
                    )
                except ValidationError as exc:
                    err = first_error(exc)
                    raise SpecError(f"cannot record this run: {'.'.join(map(str, err['loc']))} {one_line(err['msg']).lower()}") from None
                prepare_out_dir(out, overwrite=overwrite)
                lock.enter_context(run_lock(out))
                if (out / MANIFEST).is_file():  # an old prompt being overwritten: keep all it has until the new one is whole
                    for name in written:
                        undo[out / name] = (out / name).read_bytes() if (out / name).is_file() else None
                write_text_atomic(out / RUN_FILE, request.model_dump_json(indent=2) + "\n")
                if undo and not train.log_dir:  # an overwritten prompt's training logs, set aside (the new run writes its own)
                    try:
                        logs_kept = _set_aside_logs(out)
                    except BaseException:
                        with contextlib.suppress(OSError, PromptgenError):
                            _put_back(undo)
                        raise
        try:
            here = start(dist, dev)
            if here != dev:  # a process of its own GPU (torchrun): its watch judges there
                watch = SampleWatch(terms, gen, root_generator(gen, gen_name), registry, here, realism)
            dev = here
            barrier(dist)
            prompt = _train_and_save(
                out, generator, gen, gen_name, terms, train, flow, preview, state, lineage, dist, dev, registry, console, progress,
                undo, ranges, watch, request,
            )
            if logs_kept is not None:
                shutil.rmtree(logs_kept, ignore_errors=True)
            return prompt
        except BaseException:
            # A run that fails leaves the folder as it found it: an overwritten prompt keeps its own
            # run.json and checkpoint (its manifest and weights are only replaced at the very end), and its logs.
            if logs_kept is not None:
                with contextlib.suppress(OSError):
                    shutil.rmtree(out / LOGS, ignore_errors=True)
                    logs_kept.rename(out / LOGS)
            _put_back(undo)
            raise


def _train_and_save(
    out: Path, generator: str, gen: Generator, gen_name: str, terms: list[WeightedEnergy], train: TrainConfig, flow: dict,
    preview: int, state: dict | None, lineage: list, dist, dev: torch.device, registry: Registry,
    console: Console | None, progress: bool, undo: dict, ranges: list[ConditionRange], watch: SampleWatch,
    request: RunRequest | None = None,
) -> Prompt:
    """compose's training and saving, once everything was checked and the folder is ready."""
    try:
        passthrough = noise_size(gen)  # the generator's own noise: drawn with the latent, never changed by the flow
        features = controlled_size(gen)
        ebm = EnergyBasedModel(gen, terms, ranges)
        # mode=auto: freshly built, an energy is still undecided; its runs decide it (promptgen.composing.trials).
        auto = undecided(terms)[:1]
        for extra in undecided(terms)[1:]:  # one prompt has one set of mixture components: the others stay tilts
            extra.caps.settle("tilt")
        records = list(request.trials) if auto and request is not None else []
        # An energy's fitted state can decide the flow's shape, so fit, or restore the fits of a resumed run,
        # before building the flow.
        fitted = None
        if state is not None:
            load_energy_states(terms, state.get("energies", {}), str(out / CHECKPOINT))
        else:
            fitted = prefit(ebm, train, dev, console=console, progress=progress and dist.main)
        fitted_states = energy_states(ebm)

        def flow_config() -> FlowConfig:
            mixture = mixture_for(terms, train)
            classes = mixture.caps.mixture_components if mixture is not None else 0
            return FlowConfig(
                features=features, passthrough=passthrough, latent_shape=tuple(gen.latent_shape), classes=classes,
                conditions=len(ranges), **{**flow, "kind": default_flow_kind(classes) if flow["kind"] == "auto" else flow["kind"]},
            )

        def build_flow() -> CouplingFlow:
            torch.manual_seed(train.seed)
            return CouplingFlow(flow_config())

        def manifest_for(sampler: CouplingFlow, result, check=None) -> PromptManifest:
            return PromptManifest(
                generator=GeneratorRecord(
                    spec=parse_spec(generator).format(), name=gen.info.name, latent_shape=tuple(gen.latent_shape),
                    resolution=tuple(gen.info.resolution), channels=gen.info.channels, licence=gen.info.licence,
                    source=gen.info.source, plugin=registry.provider(gen_name, "generator"),
                ),
                energies=[energy_record(t, registry) for t in terms],
                lineage=lineage,
                flow=sampler.config,
                mixture=mixture_record(mixture_for(terms, train)),
                conditions=[ConditionRecord.of(c) for c in ranges],
                training=result,
                trials=[r.model_copy(update={"training": None, "states": {}}) for r in records],
                check=check,
                versions=current_versions(),
            )

        def judge(sampler: CouplingFlow, result):
            """The closing check's reading (also what mode=auto compares its runs by, on the same samples)."""
            n = train.check_samples or (train.eval_batch if auto else 0)
            if not (watch.active and n):
                return None
            reading = closing_check(Prompt(manifest_for(sampler, result), gen, sampler.eval(), out), watch, n, train.seed, dev) if dist.main else None
            return main_object(dist, reading)  # every process decides as the main one judged

        sampler, result, check = None, None, None
        elapsed = records[-1].seconds if records else None  # training seconds of the runs before this one
        for mode in [m for m in MODES if not any(r.mode == m for r in records)] if auto else [None]:
            if mode is not None:
                auto[0].energy.settle_mode(mode)
                if state is None:
                    load_energy_states(terms, fitted_states, "the fit")  # each mode starts from the same fit
                if console is not None and progress and dist.main:
                    console.print(f"mode=auto: training {escape(auto[0].label)} as the {mode}", highlight=False)
            if fitted is not None and elapsed is not None:
                fitted.seconds = elapsed  # the fit and the earlier run count in this run's time
            sampler = build_flow()
            # mode=auto's runs log side by side (logs/tilt, logs/mixture), so the second never writes over the first's steps.
            run_config = train if mode is None else train.model_copy(update={"log_dir": str(Path(train.log_dir or out / LOGS) / mode)})
            result = train_flow(
                ebm, sampler, run_config, device=dev, checkpoint=out / CHECKPOINT, console=console, progress=progress, resume=state,
                dist=dist, fitted=fitted, watch=watch if watch.active else None,
            )
            state = None  # a checkpoint resumes the first run only
            check = judge(sampler, result)
            if mode is None or check is None:  # nothing judges this prompt: the tilt, as trained, without trials
                break
            records.append(TrialRecord(energy=auto[0].label, mode=mode, steps=train.steps, seconds=result.seconds,
                                       reading=check, training=result, states=energy_states(ebm)))
            if done(records):
                break
            # The tilt missed its targets: keep it aside (and say so in run.json, for --resume), then train the mixture.
            # The tilt's checkpoint goes before run.json names the trial: a kill in between resumes from the start,
            # never a mixture from a tilt's checkpoint.
            if dist.main:
                stash(sampler, out)
                (out / CHECKPOINT).unlink(missing_ok=True)
                if request is not None:
                    request = request.model_copy(update={"trials": records})
                    write_text_atomic(out / RUN_FILE, request.model_dump_json(indent=2) + "\n")
            barrier(dist)
            if fitted is None:  # resumed into the tilt's run: the mixture starts from the fit, which needs its weights
                auto[0].energy.settle_mode(MODES[len(records)])
                fitted = prefit(ebm, train, dev, console=console, progress=False)
                fitted_states = energy_states(ebm)
            elapsed = result.seconds
        if auto and records:
            kept = choose(records)
            auto[0].energy.settle_mode(kept.mode)
            if kept is not records[-1]:  # the tilt, kept from the side
                load_energy_states(terms, kept.states, "the tilt's run")
                sampler = unstash(build_flow(), out)
            assert kept.training is not None
            result = kept.training.model_copy(update={"seconds": records[-1].seconds})  # both runs count
            check = kept.reading
            if auto[0].label in result.fits:
                result.fits[auto[0].label]["mixture"] = float(kept.mode == "mixture")
        if dist.main:
            for note in [*describe_trials(records), *filter(None, (t.caps.advice() for t in terms))]:
                if console is not None:
                    console.print(f"[yellow]note:[/yellow] {escape(note)}", soft_wrap=True)
                else:
                    warnings.warn(note, stacklevel=2)
            manifest = manifest_for(sampler, result, check if train.check_samples else None)
            sampler.eval().requires_grad_(False)
            if manifest.check is not None:
                met, lines = verdict(manifest.check)
                if not met and console is None:
                    warnings.warn("the prompt's closing check: " + "; ".join(lines), stacklevel=2)
            save_prompt(out, manifest, sampler)
            prompt = Prompt(manifest, gen, sampler, out)
            if preview:
                save_preview(prompt, preview, train.seed, out / PREVIEW)
            undo.clear()  # the new prompt is whole, its preview too: nothing to put back
            (out / STASH).unlink(missing_ok=True)
        barrier(dist)
    finally:
        stop(dist)
    return prompt if dist.main else load_prompt(out, registry)


def _put_back(undo: dict[Path, bytes | None]) -> None:
    """Each file an overwrite may have replaced, as it was (removed if it was not there)."""
    for path, data in undo.items():
        with contextlib.suppress(OSError, PromptgenError):
            if data is None:
                path.unlink(missing_ok=True)
            else:
                write_atomic(path, lambda p, data=data: p.write_bytes(data))


def _set_aside_logs(out: Path) -> Path | None:
    """Move an overwritten prompt's ``logs/`` aside (``.logs.overwritten``); None when it has none.

    Raises:
        ArtifactError: ``logs`` there is a link or not a folder (the new run would write through it or fail late).
    """
    logs = out / LOGS
    if not logs.exists() and not logs.is_symlink():
        return None
    if logs.is_symlink() or not logs.is_dir():
        raise ArtifactError(f"{str(logs)!r} is not a folder of logs; remove it, or choose another --out or --log-dir")
    kept = out / ".logs.overwritten"
    shutil.rmtree(kept, ignore_errors=True)
    logs.rename(kept)
    return kept


#: Settings that say where a run's logs go, not what it trains: a resumed run may change them (and mode=auto's
#: runs each log to their own folder under the prompt's).
LOG_SETTINGS = {"log", "log_dir"}


def _same_settings(saved: object, train: TrainConfig) -> bool:
    """Whether a checkpoint's settings are ``train``'s (but for :data:`LOG_SETTINGS`), settings added since it was
    written taking their defaults."""
    ours = train.model_dump(mode="json", exclude=LOG_SETTINGS)
    if isinstance(saved, dict) and {k: v for k, v in saved.items() if k not in LOG_SETTINGS} == ours:
        return True
    try:
        return TrainConfig.model_validate(saved).model_dump(mode="json", exclude=LOG_SETTINGS) == ours
    except ValueError:  # pydantic's ValidationError and SettingsError: not settings this promptgen reads
        return False


def save_preview(prompt: Prompt, n: int, seed: int, path: Path) -> None:
    """``samples.png``: ``n`` samples, or for a conditional prompt a sweep of its first condition over its
    training range (one row per ε, 7 columns), the other conditions at their references; labelled as
    ``promptgen sample`` labels its grids, at its default scale."""
    from promptgen.artifacts.captions import grid_labels
    from promptgen.core.images import auto_scale, grid_size

    height, width = prompt.info.resolution
    if not prompt.conditions:
        scale = auto_scale(grid_size(n, height, width)[1])
        save_images(sample_images(prompt, n, seed=seed), path, labels=grid_labels(prompt, seed), scale=scale)
        return
    first = prompt.conditions[0]
    columns = 7
    values = [first.low + (first.high - first.low) * i / (columns - 1) for i in range(columns - 1)] + [first.high]
    grid = sweep_images(prompt, max(1, n // columns), first.name, values, seed=seed)
    labels = grid_labels(prompt, seed, sweep=(first.name, values))
    scale = auto_scale(grid_size(columns, height, width, columns)[1])
    save_images(grid.flatten(0, 1), path, nrow=columns, labels=labels, scale=scale)
