"""The energy-based model in latent space.

    p*(z)  ∝  N(z; 0, I) · exp( − Σ_i w_i · E_i(G(z)) )

Its potential ``U(z) = ½‖z‖² + Σ_i w_i E_i(G(z))`` is ``−log p*(z)`` up to a
constant. The reverse-KL loss of a sampler ``z = f(ε)`` is
``U(f(ε)) − log |det ∂f/∂ε|`` averaged over ε (see ``../shared/METHOD.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from promptgen.core.capabilities import Capabilities, capabilities
from promptgen.core.latents import controlled_size
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
    """

    def __init__(self, generator: Generator, terms: Sequence[WeightedEnergy]) -> None:
        self.generator = generator
        self.terms = list(terms)
        # Coordinates past these are the generator's own noise (promptgen.core.latents): not part of the prior.
        self.controlled = controlled_size(generator)

    def potential(self, z: Tensor, anneal: float = 1.0, classes: Tensor | None = None) -> Potential:
        """``U(z)`` for latents ``z`` of shape (B, *latent_shape).

        ``anneal`` in [0, 1] multiplies every energy weight; 1 (the default) is
        the model itself. The trainer ramps it up at the start of training.

        ``classes`` (B,) gives each sample's mixture component when a term is a
        mixture energy (see :func:`mixture_term`): that term then contributes
        its component's energy ``conditional(images, z, classes)``. Without
        classes every term gives its plain energy.
        """
        prior = 0.5 * z.flatten(1)[:, : self.controlled].pow(2).sum(1)
        images = self.generator.decode(z)
        total = prior
        parts: dict[str, Tensor] = {}
        for term in self.terms:
            if classes is not None and term.caps.mixture_components:
                e = term.energy.conditional(images, z, classes)
            else:
                e = term.energy(images, z)
            if e.shape != prior.shape:
                raise RuntimeError(f"energy {term.label!r} returned shape {tuple(e.shape)}, expected {tuple(prior.shape)}")
            parts[term.label] = e
            total = total + (anneal * term.weight) * e
        return Potential(total=total, prior=prior, energies=parts, images=images)

    def reverse_kl(
        self, sampler: Sampler, eps: Tensor, anneal: float = 1.0, classes: Tensor | None = None
    ) -> tuple[Tensor, Potential, Tensor]:
        """Per-sample reverse-KL loss ``U(f(ε)) − log|det ∂f/∂ε|`` (see :meth:`potential` for ``anneal``).

        With ``classes`` the sampler is a class-conditional flow and each sample
        is scored by its own component's energy.

        Returns:
            (loss (B,), potential at z = f(ε), log_det (B,)).
        """
        z, log_det = sampler.forward(eps) if classes is None else sampler.forward(eps, classes)
        pot = self.potential(z, anneal, classes)
        return pot.total - log_det, pot, log_det

    def to(self, device: torch.device | str) -> EnergyBasedModel:
        self.generator.to(device)
        for t in self.terms:
            t.energy.to(device)
        return self


def mixture_term(terms: Sequence[WeightedEnergy]) -> WeightedEnergy | None:
    """The term whose energy is a mixture (it has ``mixture_components``), if any.

    Raises:
        SpecError: more than one is; a prompt has one set of components.
    """
    found = [t for t in terms if t.caps.mixture_components]
    if len(found) > 1:
        from promptgen.core.errors import SpecError

        raise SpecError(
            f"{found[0].label!r} and {found[1].label!r} each make the prompt a mixture; only one energy can: "
            "merge them into one, e.g. debias:digit*thickness, or add mode=tilt to one"
        )
    return found[0] if found else None
