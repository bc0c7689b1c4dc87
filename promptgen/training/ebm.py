"""The energy-based model in latent space.

    p*(z)  ∝  N(z; 0, I) · exp( − Σ_i w_i · E_i(G(z)) )

Its potential ``U(z) = ½‖z‖² + Σ_i w_i E_i(G(z))`` is ``−log p*(z)`` up to a
constant. The reverse-KL loss of a sampler ``z = f(ε)`` is
``U(f(ε)) − log |det ∂f/∂ε|`` averaged over ε (see ``../shared/METHOD.md``).

A *conditional* model has conditions α (:mod:`promptgen.core.conditions`):
``p*(z | α) ∝ N(z; 0, I) · exp(−Σ_i w_i E_i(G(z), α))``, with the sampler
``z = f(ε; α)``. Energies that read α are :class:`~promptgen.core.capabilities.Contextual`;
those that compare a sample with its twin ``G(f(ε; α_ref))`` get the twin's images
from :meth:`EnergyBasedModel.reverse_kl`, which decodes it once per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from promptgen.core.capabilities import Capabilities, EnergyContext, capabilities
from promptgen.core.conditions import ConditionRange, condition_tensor
from promptgen.core.errors import SpecError
from promptgen.core.latents import condition_inputs, controlled_size, decode_at
from promptgen.core.protocols import Energy, Generator, Sampler
from promptgen.core.spec import Spec


@dataclass
class WeightedEnergy:
    """One term of the sum: the spec the user typed, the built energy, its weight.

    ``caps``: what the energy can do beyond scoring (:func:`~promptgen.core.capabilities.capabilities`),
    found once here; the core asks it rather than the energy.
    """

    spec: Spec
    energy: Energy
    weight: float
    caps: Capabilities = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.caps = capabilities(self.energy)

    @property
    def label(self) -> str:
        return self.energy.label


@dataclass
class Potential:
    """``U(z)`` per sample and its parts, each (B,).

    Attributes:
        total: ½‖z‖² + Σ w_i E_i.
        prior: ½‖z‖².
        energies: label -> unweighted E_i.
        images: G(z), (B, C, H, W) in [0, 1].
    """

    total: Tensor
    prior: Tensor
    energies: dict[str, Tensor]
    images: Tensor


class EnergyBasedModel:
    """Gaussian prior times the exponentiated, weighted, negative energies.

    Args:
        generator: the frozen generator ``G``.
        terms: the energies and their weights (an empty list gives the generator itself).
        conditions: a conditional model's conditions, in the order of the sampler's condition input.

    Raises:
        SpecError: a condition no energy reads, or an energy that compares with the twin at the
            reference condition in a model without conditions.
    """

    def __init__(self, generator: Generator, terms: Sequence[WeightedEnergy], conditions: Sequence[ConditionRange] = ()) -> None:
        self.generator = generator
        self.terms = list(terms)
        self.conditions = list(conditions)
        # Coordinates past these are the generator's own noise (promptgen.core.latents): not part of the prior.
        self.controlled = controlled_size(generator)
        self.needs_twin = bool(self.conditions) and any(t.caps.needs_reference for t in self.terms)
        check_conditions(self.terms, self.conditions, reads=condition_inputs(generator))

    @property
    def condition_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.conditions)

    def decode(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        """``G(z)``; a generator that reads conditions (a camera) is handed those of ``condition`` (B, C) it reads."""
        return decode_at(self.generator, z, condition, self.condition_names)

    def reference(self, n: int, like: Tensor) -> Tensor:
        """(n, C) the reference condition, where each sample's twin is drawn."""
        return condition_tensor(self.conditions, {}, n).to(like)

    def potential(
        self,
        z: Tensor,
        anneal: float = 1.0,
        classes: Tensor | None = None,
        context: EnergyContext | None = None,
        images: Tensor | None = None,
    ) -> Potential:
        """``U(z)`` for latents ``z`` of shape (B, *latent_shape).

        ``anneal`` in [0, 1] multiplies every energy weight; 1 (the default) is
        the model itself. The trainer ramps it up at the start of training.

        ``classes`` (B,) gives each sample's mixture component when a term is a
        mixture energy (see :func:`mixture_term`): that term then contributes
        its component's energy ``conditional(images, z, classes)``. Without
        classes every term gives its plain energy.

        ``context`` (a conditional model's condition and twins) goes to every
        :class:`~promptgen.core.capabilities.Contextual` term, through ``context_energy``.
        ``images``: ``G(z)`` when already decoded.
        """
        prior = 0.5 * z.flatten(1)[:, : self.controlled].pow(2).sum(1)
        images = self.generator.decode(z) if images is None else images
        total = prior
        parts: dict[str, Tensor] = {}
        for term in self.terms:
            if context is not None and term.caps.contextual:
                e = term.energy.context_energy(images, z, context)
            elif classes is not None and term.caps.mixture_components:
                e = term.energy.conditional(images, z, classes)
            else:
                e = term.energy(images, z)
            if e.shape != prior.shape:
                raise RuntimeError(f"energy {term.label!r} returned shape {tuple(e.shape)}, expected {tuple(prior.shape)}")
            parts[term.label] = e
            total = total + (anneal * term.weight) * e
        return Potential(total=total, prior=prior, energies=parts, images=images)

    def reverse_kl(
        self, sampler: Sampler, eps: Tensor, anneal: float = 1.0, classes: Tensor | None = None, condition: Tensor | None = None
    ) -> tuple[Tensor, Potential, Tensor]:
        """Per-sample reverse-KL loss ``U(f(ε)) − log|det ∂f/∂ε|`` (see :meth:`potential` for ``anneal``).

        With ``classes`` the sampler is a class-conditional flow and each sample
        is scored by its own component's energy. With ``condition`` (B, C) the
        sampler is conditional: ``z = f(ε; α)``; when an energy compares with the
        twin, the twin ``G(f(ε; α_ref))`` is decoded here, once for the batch,
        with gradients (both branches are the flow's).

        Returns:
            (loss (B,), potential at z = f(ε), log_det (B,)).
        """
        if bool(self.conditions) != (condition is not None):
            raise ValueError(f"this model has conditions {self.condition_names or '()'}: give a condition exactly when it has some")
        if condition is None:
            z, log_det = sampler.forward(eps) if classes is None else sampler.forward(eps, classes)
            pot = self.potential(z, anneal, classes)
            return pot.total - log_det, pot, log_det
        if not self.needs_twin:
            z, log_det = sampler.forward(eps, classes, condition)
            images, twin = self.decode(z, condition), None
        else:
            # One pass of the flow and the generator for the batch and its twins (the twins at the
            # reference condition): half the calls, and one forward before backward under DDP.
            b = eps.shape[0]
            both = None if classes is None else torch.cat([classes, classes])
            zz, lds = sampler.forward(torch.cat([eps, eps]), both, torch.cat([condition, self.reference(b, condition)]))
            z, log_det = zz[:b], lds[:b]
            images, twin = self.decode(zz, torch.cat([condition, self.reference(b, condition)])).split(b)
        context = EnergyContext(condition=condition, condition_names=self.condition_names, reference=twin, classes=classes)
        pot = self.potential(z, anneal, classes, context, images)
        return pot.total - log_det, pot, log_det

    def to(self, device: torch.device | str) -> EnergyBasedModel:
        self.generator.to(device)
        for t in self.terms:
            t.energy.to(device)
        return self


def check_conditions(
    terms: Sequence[WeightedEnergy],
    conditions: Sequence[ConditionRange],
    registry: Any = None,
    reads: dict[str, tuple[float, float]] | None = None,
) -> None:
    """Refuse, in one line, a condition that neither an energy nor the generator reads, and a twin-comparing energy
    without conditions; for a generator that reads conditions (``reads``, name -> the range it takes: a camera),
    refuse a range outside it, and a prompt that sets none of them.

    The hint names the installed energies that read a condition (their entries' ``conditions``), so it
    points at one that exists here: ``--energy slant --cond slant=-0.3:0.3`` on a digit prompt.
    """
    names = [c.name for c in conditions]
    reads = reads or {}
    for c in conditions:
        if c.name in reads:
            low, high = reads[c.name]
            if c.low < low or c.high > high:
                raise SpecError(
                    f"--cond {c.name}={c.low:g}:{c.high:g} goes outside the range the generator takes, {low:g}:{high:g}; give a range inside it"
                )
    if reads and not set(names) & set(reads):
        example = " ".join(f"--cond {n}={low / 2:.2g}:{high / 2:.2g}" for n, (low, high) in reads.items())
        raise SpecError(
            f"the generator takes {', '.join(reads)} from the prompt's conditions, and none was given; add their training "
            f"ranges, e.g. {example}"
        )
    contextual = [t for t in terms if t.caps.contextual]
    read = {n for t in contextual for n in t.caps.condition_names}
    twin = [t for t in contextual if t.caps.needs_reference]
    for name in names:
        if name in read or name in reads:
            continue
        readers = "; ".join(f"{t.label} reads {', '.join(t.caps.condition_names)}" for t in contextual if t.caps.condition_names)
        if readers:
            raise SpecError(f"--cond {name}: no energy reads a condition {name!r} ({readers}); give one of those names")
        raise SpecError(f"--cond {name}: no energy of the prompt reads a condition {name!r}; {_reader_hint(name, terms, registry)}")
    if twin and not names:
        raise SpecError(
            f"energy {twin[0].label!r} compares each sample with its twin at a reference condition, so the prompt needs one: "
            + _reader_hint(None, terms, registry)
        )


def _reader_hint(name: str | None, terms: Sequence[WeightedEnergy], registry: Any) -> str:
    """Which installed energy to add, and its --cond, for a condition ``name`` (or any condition)."""
    from promptgen.core.registry import get_registry

    registry = registry if registry is not None else get_registry()
    readers = {entry_name: entry.conditions for entry_name, entry in registry.energies.items() if getattr(entry, "conditions", None)}

    def example(energy: str, reads: dict[str, tuple[float, float]]) -> str:
        first = name if name in reads else next(iter(reads))
        low, high = reads[first]
        return f"--energy {energy} --cond {first}={low:g}:{high:g}"

    if name is not None:
        exact = [e for e, reads in readers.items() if name in reads]
        if exact:
            return f"add the energy that reads it: {example(exact[0], readers[exact[0]])}"
    if not readers:
        return "no installed energy reads a condition (see `promptgen list`: a plugin's energy must declare conditions)"
    # Readers from the same distribution as the prompt's energies first: a digit prompt gets slant, not deca-pose.
    mine = {registry.provider(t.spec.name, "energy") for t in terms}
    ordered = sorted(readers, key=lambda e: registry.provider(e, "energy") not in mine)
    shown = ", ".join(f"{e} ({', '.join(readers[e])})" for e in ordered)
    return f"add an energy that reads a condition and give its range, e.g. {example(ordered[0], readers[ordered[0]])}; installed readers: {shown}"


def mixture_term(terms: Sequence[WeightedEnergy]) -> WeightedEnergy | None:
    """The term whose energy is a mixture (it has ``mixture_components``), if any.

    Raises:
        SpecError: more than one is; a prompt has one set of components.
    """
    found = [t for t in terms if t.caps.mixture_components]
    if len(found) > 1:
        raise SpecError(
            f"{found[0].label!r} and {found[1].label!r} each make the prompt a mixture; only one energy can: "
            "merge them into one, e.g. debias:digit*thickness, or add mode=tilt to one"
        )
    return found[0] if found else None
