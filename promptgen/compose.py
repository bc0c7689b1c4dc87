"""From spec strings to a trained prompt folder (what `promptgen compose` does)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from rich.console import Console

from promptgen.artifact import (
    EnergyRecord,
    GeneratorRecord,
    PromptManifest,
    TargetRecord,
    current_versions,
    prepare_out_dir,
    save_prompt,
)
from promptgen.chaining import lineage_for, normalise_generator_spec
from promptgen.device import resolve_device
from promptgen.ebm import EnergyBasedModel, WeightedEnergy
from promptgen.errors import SpecError
from promptgen.flow import CouplingFlow, FlowConfig
from promptgen.images import save_images
from promptgen.prompt import Prompt, build_generator, sample_images
from promptgen.registry import Registry, get_registry
from promptgen.spec import absolute_paths, parse_spec
from promptgen.trainer import TrainConfig, train_flow


def build_energy(spec: str, registry: Registry | None = None) -> WeightedEnergy:
    """The energy for a spec such as ``classifier:digit=3@100``, with its weight resolved."""
    registry = registry or get_registry()
    parsed = parse_spec(spec)
    entry = registry.energy(parsed.name)
    energy = entry.build(parsed, registry)
    weight = parsed.weight if parsed.weight is not None else float(getattr(energy, "default_weight", entry.default_weight))
    return WeightedEnergy(spec=parsed, energy=energy, weight=weight)


def energy_record(term: WeightedEnergy, registry: Registry) -> EnergyRecord:
    """How a trained term is stored in the manifest: spec, weight, fitted state, targets."""
    energy = term.energy
    return EnergyRecord(
        spec=term.spec.format(),
        label=term.label,
        weight=term.weight,
        plugin=registry.provider(term.spec.name, "energy"),
        state={k: [float(x) for x in v] for k, v in energy.state().items()} if hasattr(energy, "state") else {},
        targets=[TargetRecord.of(t) for t in energy.targets()] if hasattr(energy, "targets") else [],
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
            if not hasattr(term.energy, "load_state"):
                raise SpecError(f"energy {r.spec!r} was saved with fitted state but the installed plugin cannot load it; install the version named in the manifest")
            term.energy.load_state(r.state)
        terms.append(term)
    return terms


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


def compose(
    generator: str,
    energies: Sequence[str],
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
) -> Prompt:
    """Train a prompt for ``generator`` under ``energies`` and save it to ``out``.

    Args:
        generator: a generator spec, e.g. ``"mnist"``.
        energies: energy specs, e.g. ``["classifier:digit=3"]``.
        out: the prompt folder to create (default: a new folder under ``runs/``).
        train: training settings (defaults: :class:`TrainConfig`).
        flow: overrides of :class:`FlowConfig` fields (``transforms``, ``hidden``).
        device: ``auto``, ``cpu``, ``cuda``...
        overwrite: replace an existing prompt folder.
        progress: show a progress bar.
        preview: images in ``samples.png`` (0 for none).

    Returns:
        The trained :class:`~promptgen.prompt.Prompt`, loaded from ``out``.
    """
    registry = registry or get_registry()
    if not energies:
        raise SpecError("give at least one --energy, e.g. --energy classifier:digit=3")
    train = train or TrainConfig()
    dev = resolve_device(device)
    generator = normalise_generator_spec(generator)  # prompt:PATH -> absolute path, stored in the manifest
    # path=FILE options made absolute too, so the manifest's specs work from any folder.
    generator = absolute_paths(generator)
    energies = [absolute_paths(e) for e in energies]
    # Check every spec and name before loading any weights, and build everything
    # before touching the disk.
    gen_name = parse_spec(generator).name
    registry.generator(gen_name)
    for e in energies:
        registry.energy(parse_spec(e).name)
    terms = unique_labels([build_energy(e, registry) for e in energies])
    gen = build_generator(generator, registry)
    out = Path(out) if out is not None else default_out_dir(energies)
    lineage = lineage_for(gen, out)  # refuses an --out that is the parent prompt or an ancestor
    prepare_out_dir(out, overwrite=overwrite)

    features = 1
    for s in gen.latent_shape:
        features *= s
    flow_config = FlowConfig(features=features, latent_shape=tuple(gen.latent_shape), **(flow or {}))
    torch.manual_seed(train.seed)
    sampler = CouplingFlow(flow_config)
    ebm = EnergyBasedModel(gen, terms)
    result = train_flow(ebm, sampler, train, device=dev, checkpoint=out / "checkpoint.pt", console=console, progress=progress)
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
        training=result,
        versions=current_versions(),
    )
    sampler.eval().requires_grad_(False)
    save_prompt(out, manifest, sampler)
    prompt = Prompt(manifest, gen, sampler, out)
    if preview:
        save_images(sample_images(prompt, preview, seed=train.seed), out / "samples.png")
    return prompt
