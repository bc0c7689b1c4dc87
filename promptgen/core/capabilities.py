"""What an energy can do beyond scoring images: small protocols, checked once when it is built.

An energy is anything with ``label``, ``__call__(images, latents)`` and
``to(device)`` (:class:`~promptgen.core.protocols.Energy`). It may also have
any of the capabilities below; the core looks at an energy once, with
:func:`capabilities`, and afterwards asks the returned :class:`Capabilities`,
whose methods do nothing for an energy without the capability. A member of
the wrong type (``adapt_every = "10"``) is a one-line error naming the energy
when it is built, not a failure halfway through training.

=====================  ==========================================================================
capability             members
=====================  ==========================================================================
:class:`Fittable`      ``fit(base) -> {name: number}``, optional ``fit_samples: int``: fitted once
                       on samples of the base distribution before training (de-biasing's β)
:class:`Adaptive`      ``adapt(sample)``, ``adapt_every: int``, optional ``adapt_samples: int``:
                       refitted on the flow's own samples every ``adapt_every`` steps
:class:`Stateful`      ``state() -> {name: [numbers]}``, ``load_state(state)``: fitted numbers,
                       kept in the manifest so the energy can be rebuilt exactly
:class:`HasTargets`    ``targets() -> [AttributeTarget]``: what it asks of named attributes,
                       judged by ``promptgen eval``
:class:`Mixture`       ``mixture_components``, ``mixture_labels``, ``mixture_attribute``,
                       ``mixture_weights()``, ``conditional(images, latents, classes)``: the
                       prompt becomes a flow with a class input (de-biasing's ``mode=mixture``)
:class:`Settling`      ``mode``, ``settle_mode(mode)``: may become a mixture at its fit (``auto``)
:class:`Advising`      ``advice() -> str | None``: a one-line hint after training
:class:`Bounded`       ``lower_bound() -> float``: makes rejection sampling exact
:class:`Accepting`     ``acceptance(images) -> (B,) in [0, 1]``: rejection "by the attribute"
:class:`Contextual`    ``context_energy(images, latents, context)``: reads the batch's
                       :class:`EnergyContext` (a condition, a twin at the reference condition);
                       optional ``condition_names: tuple[str, ...]`` (the conditions it reads,
                       so ``compose --cond`` can refuse a name no energy reads) and
                       ``needs_reference: bool`` (it compares with the twin, so the prompt
                       needs a condition)
=====================  ==========================================================================

Subclassing :class:`EnergyBase` is optional; it gives ``label`` and a ``to``
that moves every module and tensor attribute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from promptgen.core.errors import PromptgenError

__all__ = [
    "Accepting",
    "Adaptive",
    "Advising",
    "Bounded",
    "Capabilities",
    "Contextual",
    "EnergyBase",
    "EnergyContext",
    "Fittable",
    "HasTargets",
    "Mixture",
    "Settling",
    "Stateful",
    "capabilities",
]


@runtime_checkable
class Fittable(Protocol):
    def fit(self, base: Any) -> Mapping[str, float]: ...


@runtime_checkable
class Adaptive(Protocol):
    adapt_every: int

    def adapt(self, sample: Any) -> Mapping[str, float]: ...


@runtime_checkable
class Stateful(Protocol):
    def state(self) -> Mapping[str, Sequence[float]]: ...

    def load_state(self, state: Mapping[str, Sequence[float]]) -> None: ...


@runtime_checkable
class HasTargets(Protocol):
    def targets(self) -> list[Any]: ...


@runtime_checkable
class Mixture(Protocol):
    mixture_components: int
    mixture_labels: tuple[str, ...]
    mixture_attribute: str

    def mixture_weights(self) -> list[float]: ...

    def conditional(self, images: Tensor, latents: Tensor, classes: Tensor) -> Tensor: ...


@runtime_checkable
class Settling(Protocol):
    """An energy that can be a mixture or not, and decides at its fit (``mode="auto"``) unless told first."""

    mode: str

    def settle_mode(self, mode: str) -> None: ...


@runtime_checkable
class Advising(Protocol):
    def advice(self) -> str | None: ...


@runtime_checkable
class Bounded(Protocol):
    def lower_bound(self) -> float: ...


@runtime_checkable
class Accepting(Protocol):
    def acceptance(self, images: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class EnergyContext:
    """What the core knows about a batch beyond its images and latents, for :class:`Contextual` energies.

    The core fills it once per batch, for every energy that reads it: the
    condition each sample was drawn at, and the images of its twin (the same
    ε at the reference condition) when an energy ``needs_reference``.

    Attributes:
        condition: (B, C) the condition each sample was drawn at, or None.
        condition_names: the names of the C coordinates (``("yaw", "pitch")``).
        reference: (B, ...) the images of each sample's twin, drawn from the same
            ε at the reference condition, or None.
        classes: (B,) mixture components, or None.
    """

    condition: Tensor | None = None
    condition_names: tuple[str, ...] = ()
    reference: Tensor | None = None
    classes: Tensor | None = None


@runtime_checkable
class Contextual(Protocol):
    def context_energy(self, images: Tensor, latents: Tensor, context: EnergyContext) -> Tensor: ...


def _count(energy: Any, name: str, attribute: str, default: int, low: int) -> int:
    value = getattr(energy, attribute, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise PromptgenError(f"energy {name!r}: {attribute} must be a whole number >= {low}, not {value!r}; fix the plugin")
    return value


@dataclass(frozen=True)
class Capabilities:
    """An energy's capabilities, found once; each method is a no-op for an energy without that capability."""

    energy: Any = field(repr=False)
    fittable: bool = False
    fit_samples: int = 0
    adapt_samples: int = 1024
    stateful: bool = False
    has_targets: bool = False
    settling: bool = False
    advising: bool = False
    bounded: bool = False
    accepting: bool = False
    contextual: bool = False
    condition_names: tuple[str, ...] = ()
    needs_reference: bool = False

    @property
    def adapt_every(self) -> int:
        """Steps between the energy's refits (0: never); read live, since a mode settled at the fit can change it."""
        if not isinstance(self.energy, Adaptive):
            return 0
        return _count(self.energy, str(getattr(self.energy, "label", "")), "adapt_every", 0, 0)

    @property
    def mixture_components(self) -> int:
        """How many components the energy asks for now (0: no mixture); read live, since an energy
        in ``mode=auto`` becomes a mixture (or not) at its fit."""
        if not isinstance(self.energy, Mixture):
            return 0
        return _count(self.energy, str(getattr(self.energy, "label", "")), "mixture_components", 0, 0)

    def settle(self, mode: str) -> None:
        """Make an energy that may still become a mixture (``mode == "auto"``) decide now."""
        if self.settling and getattr(self.energy, "mode", None) == "auto":
            self.energy.settle_mode(mode)

    def fit(self, base: Any) -> Mapping[str, float]:
        return dict(self.energy.fit(base) or {}) if self.fittable else {}

    def adapt(self, sample: Any) -> Mapping[str, float]:
        return dict(self.energy.adapt(sample) or {}) if self.adapt_every else {}

    def state(self) -> dict[str, list[float]]:
        if not self.stateful:
            return {}
        return {k: [float(x) for x in v] for k, v in self.energy.state().items()}

    def load_state(self, state: Mapping[str, Sequence[float]]) -> None:
        if self.stateful:
            self.energy.load_state(state)

    def targets(self) -> list[Any]:
        return list(self.energy.targets()) if self.has_targets else []

    def advice(self) -> str | None:
        return self.energy.advice() if self.advising else None

    def lower_bound(self) -> float | None:
        return float(self.energy.lower_bound()) if self.bounded else None

    def acceptance(self, images: Tensor) -> Tensor | None:
        return self.energy.acceptance(images) if self.accepting else None


def capabilities(energy: Any, name: str | None = None) -> Capabilities:
    """Look at ``energy`` once: which capabilities it has, with their numbers checked.

    An energy written for promptgen 0.1 that has ``fit`` but says
    ``needs_fit = False`` is not fitted, as before.

    Raises:
        PromptgenError: a capability member of the wrong type, naming the energy.
    """
    name = name or str(getattr(energy, "label", type(energy).__name__))
    for required in ("__call__", "to"):
        if not callable(getattr(energy, required, None)):
            raise PromptgenError(f"energy {name!r} has no {required}(); an energy needs label, __call__(images, latents) and to(device)")
    fittable = isinstance(energy, Fittable) and bool(getattr(energy, "needs_fit", True))
    adaptive = isinstance(energy, Adaptive) and _count(energy, name, "adapt_every", 0, 0) >= 0
    if isinstance(energy, Mixture):
        _count(energy, name, "mixture_components", 0, 0)
    contextual = isinstance(energy, Contextual)
    return Capabilities(
        energy=energy,
        fittable=fittable,
        fit_samples=_count(energy, name, "fit_samples", 0, 0) if fittable else 0,
        adapt_samples=_count(energy, name, "adapt_samples", 1024, 1) if adaptive else 1024,
        stateful=isinstance(energy, Stateful),
        has_targets=isinstance(energy, HasTargets),
        settling=isinstance(energy, Settling),
        advising=isinstance(energy, Advising),
        bounded=isinstance(energy, Bounded),
        accepting=isinstance(energy, Accepting),
        contextual=contextual,
        condition_names=_names(energy, name) if contextual else (),
        needs_reference=contextual and _flag(energy, name, "needs_reference"),
    )


def _names(energy: Any, name: str) -> tuple[str, ...]:
    value = getattr(energy, "condition_names", ())
    if isinstance(value, str) or not isinstance(value, (tuple, list, frozenset, set)) or not all(isinstance(n, str) for n in value):
        raise PromptgenError(f"energy {name!r}: condition_names must be a tuple of names, not {value!r}; fix the plugin")
    return tuple(value)


def _flag(energy: Any, name: str, attribute: str) -> bool:
    value = getattr(energy, attribute, False)
    if not isinstance(value, bool):
        raise PromptgenError(f"energy {name!r}: {attribute} must be True or False, not {value!r}; fix the plugin")
    return value


class EnergyBase:
    """An optional base for energies: ``label`` and a ``to`` that moves every module and tensor attribute.

    Add the capabilities you need as methods (see the table above); do not
    define ``fit`` unless the energy needs fitting, since defining it is what
    makes an energy :class:`Fittable`.
    """

    label: str = ""

    def __init__(self, label: str = "") -> None:
        self.label = label or type(self).__name__

    def __call__(self, images: Tensor, latents: Tensor) -> Tensor:
        raise NotImplementedError

    def to(self, device: torch.device | str) -> EnergyBase:
        for key, value in vars(self).items():
            if isinstance(value, (torch.nn.Module, Tensor)):
                moved = value.to(device)
                if moved is not value:
                    setattr(self, key, moved)
        return self
