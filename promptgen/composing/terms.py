"""The energies of a prompt: from specs to weighted terms, their manifest records, and the check that they fit the generator."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from promptgen.artifacts.manifest import (
    EnergyRecord,
    MixtureRecord,
    TargetRecord,
)
from promptgen.artifacts.prompt import Prompt
from promptgen.core.capabilities import EnergyContext
from promptgen.core.conditions import ConditionRange, condition_tensor
from promptgen.core.errors import ArtifactError, PromptgenError, SpecError, UnknownNameError, one_line
from promptgen.core.generators import probe_generator
from promptgen.core.protocols import Generator
from promptgen.core.registry import Registry, get_registry
from promptgen.core.spec import parse_spec
from promptgen.training.ebm import EnergyBasedModel, WeightedEnergy


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
        _check_installed(r, registry)
        term = build_energy(r.spec, registry)
        term.energy.label = r.label
        term.weight = r.weight
        if r.state:
            if not term.caps.stateful:
                raise SpecError(f"energy {r.spec!r} was saved with fitted state but the installed plugin cannot load it; install the version named in the manifest")
            term.caps.load_state(r.state)
        if r.targets and not _same_targets(r.targets, [TargetRecord.of(t) for t in term.caps.targets()]):
            # The manifest says the energy asked for something its spec and fitted state do not: it was edited.
            raise ArtifactError(
                f"energy {r.label!r}: the manifest's targets do not match what {r.spec!r} with its fitted state asks for; "
                "the manifest was edited or damaged: train the prompt again"
            )
        terms.append(term)
    return terms


def _check_installed(record: EnergyRecord, registry: Registry) -> None:
    """A one-line error naming the distribution and version the manifest records, when the energy's plugin is missing."""
    from promptgen.core.zoo import recorded_hint

    name = parse_spec(record.spec).name
    if name not in registry.energies:
        hint = recorded_hint("energy", name, record.plugin)
        if hint is None:
            raise registry.unknown("energy", name)
        raise UnknownNameError(f"unknown energy {name!r}; {hint}")


def _same_targets(a: Sequence[TargetRecord], b: Sequence[TargetRecord]) -> bool:
    def key(t: TargetRecord) -> tuple:
        return (t.attribute, tuple(t.labels), tuple(t.asked), tuple(t.avoided), t.target is None)

    return len(a) == len(b) and all(
        key(x) == key(y) and (x.target is None or all(math.isclose(p, q, rel_tol=1e-9, abs_tol=1e-12) for p, q in zip(x.target, y.target or [], strict=True)))
        for x, y in zip(a, b)
    )


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


def check_fit(
    gen: Generator, terms: Sequence[WeightedEnergy], registry: Registry, plugin: str | None = None,
    ranges: Sequence[ConditionRange] = (),
) -> None:
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
    # A conditional prompt's energies are called as training calls them: at a condition (the references), with twins.
    context = None
    if ranges:
        condition = condition_tensor(ranges, {}, images.shape[0]).to(images.device)
        context = EnergyContext(condition=condition, condition_names=tuple(c.name for c in ranges), reference=images)
    for t in terms:
        source = registry.provider(t.spec.name, "energy")
        try:
            with torch.no_grad():
                values = t.energy.context_energy(images, z, context) if context is not None and t.caps.contextual else t.energy(images, z)
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
    """The energy-based model a prompt was trained to sample, over its generator's latent (with its conditions)."""
    if not prompt.manifest.energies:  # compose never makes one: an edited manifest
        raise ArtifactError(
            f"the manifest of {str(prompt.path or prompt.info.name)!r} names no energies, so there is no model to sample "
            "with --method rejection or langevin; the manifest was edited or damaged"
        )
    return EnergyBasedModel(prompt.generator, rebuild_terms(prompt.manifest.energies, registry), prompt.conditions)


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
