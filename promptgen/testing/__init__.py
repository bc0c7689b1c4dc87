"""Helpers for testing promptgen and its plugins, and the conformance kit.

The kit checks that a generator, an energy or an attribute classifier does
what promptgen relies on, the way timm tests every registered model, and
raises :class:`AssertionError` with one line naming the entry and what
failed, so it works inside any plugin's pytest::

    from promptgen.testing import build_registry, check_classifier, check_energy, check_generator

    def test_conformance():
        registry = build_registry()
        check_generator(registry, "mine:psi=0.7")
        check_energy(registry, "myenergy:target=0.2", generator="mnist")
        check_classifier(registry, "my-classifier", {"path": "weights.pt"})

:func:`check_registered` runs the right check over every entry the installed
plugins register (:func:`check_entry` over one), and reports the ones whose
weights are not here (and cannot be downloaded offline) as "needs files".
Every check works on batches of 2 and trains nothing.

A plugin's tests need nothing beyond :mod:`promptgen.plugin`, this module and
the public API (``promptgen.compose``..., ``promptgen.cli.app`` for typer's
``CliRunner``): :func:`build_energy` builds an energy term
from a spec as ``compose`` does, and :func:`reset_registry` forgets the plugins
found so far (after installing one at run time).
"""

from __future__ import annotations

from typing import Any

from promptgen.core.registry import build_registry, reset_registry
from promptgen.testing.classifiers import CLASSIFIER_SHAPES, check_classifier
from promptgen.testing.common import BOGUS_OPTION, DEFAULT_DEVICES, SKIPPED_BY_DEFAULT, bad_option_values
from promptgen.testing.energies import check_energy
from promptgen.testing.generators import check_generator
from promptgen.testing.helpers import (
    TOY_GENDER_PLUGIN,
    install_fake_distribution,
    offline,
    one_line_error,
    toy_generator_entry,
)
from promptgen.testing.registered import (
    ConformanceReport,
    EntryResult,
    check_entry,
    check_registered,
    needs_files,
    registered_entries,
)

__all__ = [
    "BOGUS_OPTION",
    "CLASSIFIER_SHAPES",
    "DEFAULT_DEVICES",
    "SKIPPED_BY_DEFAULT",
    "TOY_GENDER_PLUGIN",
    "ConformanceReport",
    "EntryResult",
    "bad_option_values",
    "build_energy",
    "build_registry",
    "check_classifier",
    "check_energy",
    "check_entry",
    "check_generator",
    "check_registered",
    "install_fake_distribution",
    "needs_files",
    "offline",
    "one_line_error",
    "registered_entries",
    "reset_registry",
    "toy_generator_entry",
]



def build_energy(spec: str, registry: Any = None) -> Any:
    """The energy term (spec, built energy, weight) ``compose`` would build for ``spec``."""
    from promptgen.composing import build_energy as build

    return build(spec, registry)
