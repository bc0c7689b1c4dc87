"""From spec strings to a trained prompt folder (what `promptgen compose` does)."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from rich.console import Console
from rich.markup import escape

from promptgen.artifacts.chaining import kept_energies, normalise_generator_spec
from promptgen.artifacts.manifest import (
    MANIFEST,
    WEIGHTS,
    EnergyRecord,
    GeneratorRecord,
    MixtureRecord,
    PromptManifest,
    TargetRecord,
    current_versions,
    prepare_out_dir,
    save_prompt,
)
from promptgen.artifacts.prompt import Prompt, build_generator, lineage_for, load_prompt, sample_images
from promptgen.core.atomic import write_atomic, write_text_atomic
from promptgen.core.device import resolve_device
from promptgen.core.errors import ArtifactError, PromptgenError, SpecError, one_line
from promptgen.core.generators import probe_generator
from promptgen.core.images import save_images
from promptgen.core.latents import controlled_size, noise_size
from promptgen.core.protocols import Generator
from promptgen.core.registry import Registry, get_registry
from promptgen.core.spec import absolute_paths, parse_spec
from promptgen.training.distributed import barrier, from_env, start, stop
from promptgen.training.ebm import EnergyBasedModel, WeightedEnergy
from promptgen.training.flow import CouplingFlow, FlowConfig
from promptgen.training.trainer import TrainConfig, load_energy_states, mixture_for, prefit, train_flow


def build_energy(spec: str, registry: Registry | None = None) -> WeightedEnergy:
    """The energy for a spec such as ``classifier:digit=3@100``, with its weight resolved."""
    registry = registry or get_registry()
    parsed = parse_spec(spec)
    energy = registry.build_energy(parsed)
    weight = parsed.weight if parsed.weight is not None else float(registry.energy(parsed.name).default_weight)
    return WeightedEnergy(spec=parsed, energy=energy, weight=weight)


def energy_record(term: WeightedEnergy, registry: Registry) -> EnergyRecord:
    """How a trained term is stored in the manifest: spec, weight, fitted state, targets."""
    return EnergyRecord(
        spec=term.spec.format(),
        label=term.label,
        weight=term.weight,
        plugin=registry.provider(term.spec.name, "energy"),
        state=term.caps.state(),
        targets=[TargetRecord.of(t) for t in term.caps.targets()],
    )


def rebuild_terms(records: Sequence[EnergyRecord], registry: Registry | None = None) -> list[WeightedEnergy]:
    """The energies of a trained prompt as they were at the end of training (fitted state restored).

    Needs the energies' plugins (and their models), unlike sampling a prompt.
    """
    registry = registry or get_registry()
    terms = []
    for r in records:
        term = build_energy(r.spec, registry)
        term.energy.label = r.label
        term.weight = r.weight
        if r.state:
            if not term.caps.stateful:
                raise SpecError(f"energy {r.spec!r} was saved with fitted state but the installed plugin cannot load it; install the version named in the manifest")
            term.caps.load_state(r.state)
        terms.append(term)
    return terms


def mixture_record(term: WeightedEnergy | None) -> MixtureRecord | None:
    """How a trained mixture energy's components are stored in the manifest (None without one)."""
    if term is None:
        return None
    energy = term.energy
    return MixtureRecord(
        energy=term.label,
        attribute=energy.mixture_attribute,
        labels=list(energy.mixture_labels),
        weights=[float(w) for w in energy.mixture_weights()],
    )


def check_fit(gen: Generator, terms: Sequence[WeightedEnergy], registry: Registry, plugin: str | None = None) -> None:
    """Check, before anything is trained or written, that the generator and the energies fit together.

    The generator decodes two latents into what its info promises
    (:func:`~promptgen.core.generators.probe_generator`); no energy asks for an
    attribute its images cannot carry (:meth:`~promptgen.core.registry.Registry.check_carried`);
    and every energy takes those two images and gives one finite value each.

    Raises:
        PromptgenError: one line naming the generator or energy, its plugin and what was wrong.
    """
    images = probe_generator(gen, plugin)
    for t in terms:
        model = next((a.value for a in t.spec.args if a.key == "model"), None)
        for target in t.caps.targets():
            for part in target.parts:
                registry.check_carried(part, gen.info.channels, gen.info.name, model)
    z = torch.zeros((images.shape[0], *gen.latent_shape), device=images.device)
    for t in terms:
        source = registry.provider(t.spec.name, "energy")
        try:
            with torch.no_grad():
                values = t.energy(images, z)
        except PromptgenError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plugin's energy that cannot take these images: one line
            raise PromptgenError(
                f"energy {t.label!r} (from {source}) failed on {gen.info.name!r}'s images "
                f"({gen.info.channels}×{gen.info.resolution[0]}×{gen.info.resolution[1]}): {one_line(str(exc)) or type(exc).__name__}"
            ) from None
        if not isinstance(values, torch.Tensor) or tuple(values.shape) != (images.shape[0],):
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise PromptgenError(f"energy {t.label!r} (from {source}) returned {shape} for {images.shape[0]} images; an energy returns one value per image")
        if not bool(torch.isfinite(values).all()):
            raise PromptgenError(f"energy {t.label!r} (from {source}) returned non-finite values ({values.tolist()}) on {gen.info.name!r}'s images; an energy must be finite")


def prompt_ebm(prompt: Prompt, registry: Registry | None = None) -> EnergyBasedModel:
    """The energy-based model a prompt was trained to sample, over its generator's latent."""
    return EnergyBasedModel(prompt.generator, rebuild_terms(prompt.manifest.energies, registry))


def unique_labels(terms: list[WeightedEnergy]) -> list[WeightedEnergy]:
    """Give repeated labels a ``#2``, ``#3``... so each term keeps its own numbers in logs."""
    seen: dict[str, int] = {}
    for t in terms:
        seen[t.label] = seen.get(t.label, 0) + 1
        if seen[t.label] > 1:
            t.energy.label = f"{t.label}#{seen[t.label]}"
    return terms


def default_out_dir(energies: Sequence[str], root: Path = Path("runs")) -> Path:
    """``runs/<slug of the energies>-<timestamp>``: a new folder each time."""
    slug = "-".join(re.sub(r"[^A-Za-z0-9]+", "-", parse_spec(e).with_weight(None).format()).strip("-") for e in energies)
    slug = (slug or "base")[:60].strip("-").lower()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = root / f"{slug}-{stamp}"
    k = 1
    while out.exists():
        k += 1
        out = root / f"{slug}-{stamp}-{k}"
    return out


RUN_FILE = "run.json"
CHECKPOINT = "checkpoint.pt"


#: What ``--device`` and run.json's ``device`` may name (resolve_device checks the machine has it).
DEVICE_PATTERN = r"^(auto|(cpu|cuda|mps|xpu)(:[0-9]{1,4})?)$"


def check_flow_settings(flow: dict) -> dict:
    """``flow`` if its keys and values are ones :class:`FlowConfig` takes (checked before anything is written)."""
    if not isinstance(flow, dict):
        raise SpecError(f"flow settings must be a dict of FlowConfig fields, not {type(flow).__name__}")
    unknown = sorted(set(flow) - {"kind", "transforms", "hidden", "bins", "mask_seed"})
    if unknown:
        raise SpecError(f"unknown flow setting(s) {', '.join(map(repr, unknown))}; use kind, transforms, hidden, bins or mask_seed")
    try:
        FlowConfig(features=2, **{**flow, **({"kind": "affine-coupling"} if flow.get("kind") == "auto" else {})})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"]))
        raise SpecError(f"flow setting {where}={err.get('input')!r}: {err['msg'].lower()}") from None
    return flow


def default_flow_kind(classes: int) -> str:
    """The flow's layers when none are asked for: affine couplings for one target, splines for a mixture.

    Measured on the digit panel (docs/flow.md): for ``classifier:`` prompts and
    de-biasing by tilt the affine flow matches the spline's figures and trains
    25–40 % faster; a mixture's class-conditional components need the spline
    (affine: KL 0.032 and 6.5 points more junk on the MLP GAN).
    """
    return "spline-coupling" if classes else "affine-coupling"


class RunRequest(BaseModel):
    """What ``compose`` was asked, written to ``RUN_DIR/run.json`` before training so ``--resume`` can continue.

    Read back from a file that may have been edited, so it is checked as strictly as a manifest.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    generator: str = Field(min_length=1, max_length=10_000)
    energies: list[str] = Field(min_length=1, max_length=1024)
    train: TrainConfig
    flow: dict = Field(default_factory=dict)
    device: str = Field(default="auto", pattern=DEVICE_PATTERN)
    preview: int = Field(default=64, ge=0, le=1024)

    @field_validator("flow")
    @classmethod
    def _flow_fits(cls, flow: dict) -> dict:
        try:
            return check_flow_settings(flow)
        except SpecError as exc:
            raise ValueError(str(exc)) from None


#: Largest run.json read (promptgen's are under a kilobyte).
MAX_RUN_BYTES = 1 << 20


def read_run(folder: Path) -> RunRequest:
    """The request behind an unfinished run, with one-line errors."""
    path = folder / RUN_FILE
    if not folder.is_dir():
        raise ArtifactError(f"--resume {str(folder)!r} is not a folder; give the --out folder of the run to continue")
    if (folder / MANIFEST).exists():
        raise ArtifactError(f"{str(folder)!r} is a finished prompt; sample it with `promptgen sample {folder}` (nothing to resume)")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise ArtifactError(f"{str(path)!r} is not a regular file (a link or a special file); a run's {RUN_FILE} is a plain file: start a new run with --out")
    if not path.is_file():
        raise ArtifactError(f"{str(folder)!r} has no {RUN_FILE}; it is not a run started by `promptgen compose` (start a new one with --out)")
    try:
        if path.stat().st_size > MAX_RUN_BYTES:
            raise ArtifactError(f"{str(path)!r} is {path.stat().st_size:,} bytes, far larger than a run's {RUN_FILE}; start a new run with --out")
        return RunRequest.model_validate_json(path.read_bytes())
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(part)[:40] for part in err["loc"])
        what = f"invalid at {where}" if where else "not valid"
        raise ArtifactError(f"{str(path)!r} is damaged: {what}: {one_line(err['msg'])[:200]}; start the run again with a new --out") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ArtifactError(f"{str(path)!r} is damaged ({type(e).__name__}); start the run again with a new --out") from None
    except OSError as e:
        raise ArtifactError(f"cannot read {str(path)!r}: {e.strerror}; check its permissions") from None


def check_checkpoint_file(out: Path) -> None:
    """Refuse a ``checkpoint.pt`` in ``out`` that is a link or not a regular file, before training."""
    path = out / CHECKPOINT
    if path.is_symlink():
        raise ArtifactError(f"{str(path)!r} is a symbolic link; a run's checkpoint is a plain file: remove it or start a new run with --out")
    if path.exists() and not path.is_file():
        raise ArtifactError(f"{str(path)!r} is not a regular file; remove it or start a new run with --out")


def compose(
    generator: str | None,
    energies: Sequence[str] | None,
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
) -> Prompt:
    """Train a prompt for ``generator`` under ``energies`` and save it to ``out``.

    Args:
        generator: a generator spec, e.g. ``"mnist"`` (ignored with ``resume``).
        energies: energy specs, e.g. ``["classifier:digit=3"]`` (ignored with ``resume``).
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

    Under ``torchrun`` every process calls this; they train together and rank 0 writes.

    Returns:
        The trained :class:`~promptgen.artifacts.prompt.Prompt`, loaded from ``out``.
    """
    registry = registry or get_registry()
    dist = from_env()
    state = None
    if resume:
        if out is None:
            raise SpecError("--resume needs the run folder, e.g. --resume runs/my-prompt")
        out = Path(out)
        request = read_run(out)
        generator, energies, train, flow, device, preview = (
            request.generator, request.energies, request.train, request.flow, request.device, request.preview,
        )
        check_checkpoint_file(out)
        if (out / CHECKPOINT).is_file():
            from promptgen.training.checkpoint import load_checkpoint

            state = load_checkpoint(out / CHECKPOINT)
            if state.get("config") != train.model_dump(mode="json"):
                raise ArtifactError(f"{str(out / CHECKPOINT)!r} was written with other training settings than {str(out / RUN_FILE)!r}; start a new run")
    if not energies:
        raise SpecError("give at least one --energy, e.g. --energy classifier:digit=3")
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
    if train.forward_weight > 0:  # the forward-KL bank needs one flow: an energy that may become a mixture stays one
        for t in terms:
            t.caps.settle("tilt")
    mixture_for(terms, train)  # checked before anything is written
    gen = build_generator(generator, registry)
    check_fit(gen, terms, registry, registry.provider(gen_name, "generator"))
    out = Path(out) if out is not None else default_out_dir(energies)
    lineage = lineage_for(gen, out)  # refuses an --out that is the parent prompt or an ancestor
    if out.is_dir():
        check_checkpoint_file(out)
    undo: dict[Path, bytes | None] = {}  # what a failed --overwrite puts back
    if dist.main:
        if resume:
            for stale in out.glob(f".{CHECKPOINT}.*.tmp"):  # left by a process killed while writing
                stale.unlink(missing_ok=True)
        else:
            if (out / RUN_FILE).is_file() and not (out / MANIFEST).exists():
                raise ArtifactError(f"--out {str(out)!r} holds an unfinished run; continue it with `promptgen compose --resume {out}` or choose a new folder")
            try:
                request = RunRequest(generator=generator, energies=list(energies), train=train, flow=flow, device=device, preview=preview)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise SpecError(f"cannot record this run: {'.'.join(map(str, err['loc']))} {one_line(err['msg']).lower()}") from None
            prepare_out_dir(out, overwrite=overwrite)
            if (out / MANIFEST).is_file():  # an old prompt being overwritten: keep all it has until the new one is whole
                names = [RUN_FILE, CHECKPOINT, MANIFEST, WEIGHTS]
                for name in names:
                    undo[out / name] = (out / name).read_bytes() if (out / name).is_file() else None
            write_text_atomic(out / RUN_FILE, request.model_dump_json(indent=2) + "\n")
    try:
        dev = start(dist, dev)
        barrier(dist)
        return _train_and_save(
            out, generator, gen, gen_name, terms, train, flow, preview, state, lineage, dist, dev, registry, console, progress,
            undo,
        )
    except BaseException:
        # A run that fails leaves the folder as it found it: an overwritten prompt keeps its own
        # run.json and checkpoint (its manifest and weights are only replaced at the very end).
        if undo:
            for path, data in undo.items():
                with contextlib.suppress(OSError, PromptgenError):
                    if data is None:
                        path.unlink(missing_ok=True)
                    else:
                        write_atomic(path, lambda p, data=data: p.write_bytes(data))
        raise


def _train_and_save(
    out: Path, generator: str, gen: Generator, gen_name: str, terms: list[WeightedEnergy], train: TrainConfig, flow: dict,
    preview: int, state: dict | None, lineage: list, dist, dev: torch.device, registry: Registry,
    console: Console | None, progress: bool, undo: dict,
) -> Prompt:
    """compose's training and saving, once everything was checked and the folder is ready."""
    try:
        passthrough = noise_size(gen)  # the generator's own noise: drawn with the latent, never changed by the flow
        features = controlled_size(gen)
        ebm = EnergyBasedModel(gen, terms)
        # An energy's fitted state can decide the flow's shape (debias mode=auto picks the mixture
        # or the tilt at its fit), so fit, or restore the fits of a resumed run, before building the flow.
        fitted = None
        if state is not None:
            load_energy_states(terms, state.get("energies", {}), str(out / CHECKPOINT))
        else:
            fitted = prefit(ebm, train, dev, console=console, progress=progress and dist.main)
        mixture = mixture_for(terms, train)
        classes = mixture.caps.mixture_components if mixture is not None else 0
        flow_config = FlowConfig(
            features=features, passthrough=passthrough, latent_shape=tuple(gen.latent_shape), classes=classes,
            **{**flow, "kind": default_flow_kind(classes) if flow["kind"] == "auto" else flow["kind"]},
        )
        torch.manual_seed(train.seed)
        sampler = CouplingFlow(flow_config)
        result = train_flow(
            ebm, sampler, train, device=dev, checkpoint=out / CHECKPOINT, console=console, progress=progress, resume=state,
            dist=dist, fitted=fitted,
        )
        if dist.main:
            for note in filter(None, (t.caps.advice() for t in terms)):
                if console is not None:
                    console.print(f"[yellow]note:[/yellow] {escape(note)}", soft_wrap=True)
                else:
                    warnings.warn(note, stacklevel=2)
            manifest = PromptManifest(
                generator=GeneratorRecord(
                    spec=parse_spec(generator).format(),
                    name=gen.info.name,
                    latent_shape=tuple(gen.latent_shape),
                    resolution=tuple(gen.info.resolution),
                    channels=gen.info.channels,
                    licence=gen.info.licence,
                    source=gen.info.source,
                    plugin=registry.provider(gen_name, "generator"),
                ),
                energies=[energy_record(t, registry) for t in terms],
                lineage=lineage,
                flow=flow_config,
                mixture=mixture_record(mixture),
                training=result,
                versions=current_versions(),
            )
            sampler.eval().requires_grad_(False)
            save_prompt(out, manifest, sampler)
            undo.clear()  # the new prompt is whole: nothing to put back
            prompt = Prompt(manifest, gen, sampler, out)
            if preview:
                save_images(sample_images(prompt, preview, seed=train.seed), out / "samples.png")
        barrier(dist)
    finally:
        stop(dist)
    return prompt if dist.main else load_prompt(out, registry)
