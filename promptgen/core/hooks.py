"""The hooks a promptgen plugin implements.

A plugin is a module (or object) with functions marked ``@hookimpl``, found
through the ``promptgen`` entry-point group of an installed distribution::

    # pyproject.toml of promptgen-plugin-foo
    [project.entry-points.promptgen]
    foo = "promptgen_plugin_foo"

Each hook is called once, when the registry is first built, and returns a list
of entries (or None). The built-in MNIST pieces are registered through exactly
these hooks, by the ``builtin`` entry point of promptgen-core.
See ``docs/writing-plugins.md`` for a worked example.
"""

from __future__ import annotations

import pluggy

from promptgen.core.entries import ClassifierEntry, EnergyEntry, GeneratorEntry

hookspec = pluggy.HookspecMarker("promptgen")
hookimpl = pluggy.HookimplMarker("promptgen")


@hookspec
def promptgen_generators() -> list[GeneratorEntry] | None:
    """Generators this plugin provides.

    Called once when the registry is built. Return :class:`GeneratorEntry`
    objects; each has a unique ``name`` (what users type after ``--gen``) and a
    ``build(spec, options, registry)`` that returns a
    :class:`~promptgen.core.protocols.Generator` on the CPU. ``build`` is only called when the user asks for that name, so loading
    weights belongs there, not at import time.
    """


@hookspec
def promptgen_energies() -> list[EnergyEntry] | None:
    """Energies (controls) this plugin provides.

    Called once when the registry is built. Return :class:`EnergyEntry` objects;
    ``build(spec, options, registry)`` returns an :class:`~promptgen.core.protocols.Energy` for
    the parsed spec (e.g. ``classifier:digit=3``). The registry is passed so an
    energy can use attribute classifiers that other plugins provide. Raise
    :class:`~promptgen.core.errors.SpecError` or
    :class:`~promptgen.core.errors.UnknownNameError` for bad arguments.
    """


@hookspec
def promptgen_attribute_classifiers() -> list[ClassifierEntry] | None:
    """Attribute classifiers this plugin provides.

    Called once when the registry is built. Return :class:`ClassifierEntry`
    objects that declare their attributes and class labels up front (so a spec
    can be checked without loading weights) and a ``build(options, registry)`` that returns an
    :class:`~promptgen.core.protocols.AttributeClassifier`. A classifier whose
    ``role`` is ``"evaluator"`` judges results only and is never picked for an
    energy unless the user names it with ``model=``.
    """
