"""What a plugin's hooks return: one entry per generator, energy or attribute classifier it provides.

Every ``build`` receives the parsed spec, the options checked against the
entry's :class:`~promptgen.core.options.Options` model, and the registry (to
find attribute classifiers, or generators, of other plugins)::

    def build(spec: Spec, options: MyOptions, registry: Registry) -> Generator: ...

The 0.1 entries (``build(spec)`` for generators, ``build(spec, registry)`` for
energies, ``build(**options)`` for classifiers, options as a ``{name:
description}`` mapping) are still accepted for one release, as the ``Legacy*``
classes below, and adapted when they are registered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict

from promptgen.core.options import NoOptions, Options, options_from_mapping

if TYPE_CHECKING:
    from promptgen.core.protocols import AttributeClassifier, Energy, Generator
    from promptgen.core.registry import Registry
    from promptgen.core.spec import Spec

__all__ = ["ClassifierEntry", "EnergyEntry", "GeneratorEntry"]


@dataclass(frozen=True)
class GeneratorEntry:
    """A generator a plugin provides.

    Attributes:
        name: what users type after ``--gen``.
        build: ``build(spec, options, registry)`` returns the generator, on the CPU.
        summary: one line for ``promptgen list``.
        options: the options the spec may give, as an :class:`Options` model.
        positional: the option a bare value fills (``prompt:runs/three``), if any.
        example: a spec to show in ``promptgen list NAME`` and in errors.
        judges: evaluator classifiers (by name, maybe another plugin's) that know
            this generator's domain: `promptgen eval` takes its feature space and
            realism check from them. Empty: the evaluators of the generator's own plugin.
    """

    name: str
    build: Callable[[Spec, Any, Registry], Generator]
    summary: str = ""
    options: type[Options] = NoOptions
    positional: str | None = None
    example: str = ""
    judges: Sequence[str] = ()


@dataclass(frozen=True)
class EnergyEntry:
    """An energy a plugin provides.

    Attributes:
        name: what users type before ``:`` in ``--energy``.
        build: ``build(spec, options, registry)`` returns the energy.
        summary: one line for ``promptgen list``.
        options: the options the spec may give, as an :class:`Options` model.
        arguments: for an energy that also takes arguments that are not options
            (``digit=3``, ``gender,age``, a text), what they are, e.g.
            ``"ATTR=CLASS or ATTR!=CLASS"``; they reach ``build`` in the spec,
            and the core then passes unknown keys on instead of refusing them.
        default_weight: the weight when the spec has no ``@weight`` (declared only here).
        example: a spec to show in ``promptgen list NAME`` and in errors.
        conditions: for an energy that reads a prompt's condition (``condition_names``), each name it
            reads with a typical training range, e.g. ``{"yaw": (-0.35, 0.35)}``: compose suggests
            ``--energy NAME --cond yaw=-0.35:0.35`` when a condition has no reader. The conformance
            kit checks that the built energy reads no name left out here.
    """

    name: str
    build: Callable[[Spec, Any, Registry], Energy]
    summary: str = ""
    options: type[Options] = NoOptions
    arguments: str = ""
    default_weight: float = 1.0
    example: str = ""
    conditions: Mapping[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class ClassifierEntry:
    """An attribute classifier a plugin provides.

    Attributes:
        name: registry name, used with ``model=NAME`` in energy specs.
        attributes: attribute -> class labels, in the classifier's output order.
        build: ``build(options, registry)`` returns the classifier (on the CPU).
        role: ``"control"`` may define energies; ``"evaluator"`` only judges.
        summary: one line for ``promptgen list``.
        options: options an energy spec that uses this classifier may give
            (``classifier:gender=female,path=res34.pt``), as an :class:`Options` model.
        colour: the attributes read from colour (hair colour, skin tone...):
            a generator of greyscale images cannot carry them, and asking for
            one on such a generator is an error before anything is trained.
    """

    name: str
    attributes: Mapping[str, Sequence[str]]
    build: Callable[[Any, Registry], AttributeClassifier]
    role: Literal["control", "evaluator"] = "control"
    summary: str = ""
    options: type[Options] = NoOptions
    colour: Sequence[str] = ()


# promptgen 0.1's entries, accepted for one release.


@dataclass(frozen=True)
class LegacyGeneratorEntry:
    """promptgen 0.1's generator entry (deprecated): ``build(spec)``, options as ``{name: description}``."""

    name: str
    build: Callable[[Spec], Generator]
    summary: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    judges: Sequence[str] = ()


@dataclass(frozen=True)
class LegacyEnergyEntry:
    """promptgen 0.1's energy entry (deprecated): ``build(spec, registry)``."""

    name: str
    build: Callable[[Spec, Registry], Energy]
    summary: str = ""
    default_weight: float = 1.0
    usage: str = ""


@dataclass(frozen=True)
class LegacyClassifierEntry:
    """promptgen 0.1's classifier entry (deprecated): ``build(**options)`` with text options."""

    name: str
    attributes: Mapping[str, Sequence[str]]
    build: Callable[..., AttributeClassifier]
    role: Literal["control", "evaluator"] = "control"
    summary: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    colour: Sequence[str] = ()


def upgrade(entry: Any) -> Any:
    """The current entry for a 0.1 entry (its build adapted); a current entry unchanged.

    A 0.1 generator or energy parses its own options, so its options model
    takes any key and the spec reaches its build as typed.
    """
    if isinstance(entry, LegacyGeneratorEntry):
        legacy_build = entry.build
        return GeneratorEntry(
            entry.name, lambda spec, options, registry: legacy_build(spec), entry.summary,
            _Anything, judges=entry.judges,
        )
    if isinstance(entry, LegacyEnergyEntry):
        energy_build = entry.build
        return EnergyEntry(
            entry.name, lambda spec, options, registry: energy_build(spec, registry), entry.summary,
            arguments="as the plugin documents", default_weight=entry.default_weight, example=entry.usage,
        )
    if isinstance(entry, LegacyClassifierEntry):
        classifier_build = entry.build
        return ClassifierEntry(
            entry.name, entry.attributes,
            lambda options, registry: classifier_build(**options.model_dump(exclude_none=True)),
            entry.role, entry.summary, options_from_mapping(entry.name, entry.options), entry.colour,
        )
    return entry


class _Anything(Options):
    """A 0.1 generator's options: it checks them itself."""

    model_config = ConfigDict(**{**Options.model_config, "extra": "allow"})


LEGACY_TYPES = (LegacyGeneratorEntry, LegacyEnergyEntry, LegacyClassifierEntry)
