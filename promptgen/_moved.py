"""Old import paths that keep working for one release, with a :class:`DeprecationWarning` naming the new one.

promptgen 0.2 moved its modules into subpackages (``promptgen.core``,
``promptgen.training``, ``promptgen.artifacts``, ``promptgen.sampling``,
``promptgen.evaluation``) and gave plugin authors one module to import,
:mod:`promptgen.plugin`. Importing an old module (``promptgen.registry``...)
gives a stand-in whose names are looked up where they live now, each with a
warning that says where to import it from.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

#: The release that removes the old paths.
REMOVED_IN = "0.3"

#: old module (under promptgen) -> where its contents live now.
MOVES = {
    "errors": "core.errors", "spec": "core.spec", "protocols": "core.protocols", "registry": "core.registry",
    "hookspecs": "core.hooks", "generators": "core.generators", "classifiers": "core.classifiers",
    "device": "core.device", "atomic": "core.atomic", "download": "core.download", "progress": "core.progress",
    "images": "core.images", "flow": "training.flow", "ebm": "training.ebm", "checkpoint": "training.checkpoint",
    "distributed": "training.distributed", "trainer": "training.trainer", "artifact": "artifacts.manifest",
    "prompt": "artifacts.prompt", "chaining": "artifacts.chaining", "samplers": "sampling.baselines",
    "metrics": "core.metrics", "report": "evaluation.report",
}

#: (old module, name) -> "module:name" to hand out instead, for names whose meaning changed: the
#: entry classes of promptgen 0.1 (their ``build`` took the spec alone) keep their old behaviour.
LEGACY = {
    ("registry", "GeneratorEntry"): "promptgen.core.entries:LegacyGeneratorEntry",
    ("registry", "EnergyEntry"): "promptgen.core.entries:LegacyEnergyEntry",
    ("registry", "ClassifierEntry"): "promptgen.core.entries:LegacyClassifierEntry",
}


#: (old module, name) -> what to do instead, for names with no one-to-one successor.
ADVICE = {
    ("spec", "expect_options"): "an options model: declare `options=` on the entry as a subclass of promptgen.plugin.Options",
    ("spec", "absolute_paths"): "`from promptgen.core.spec import absolute_paths`",
}


def _lookup(old: str, name: str) -> tuple[Any, str]:
    """The object ``promptgen.<old>.<name>`` stands for, and the import to advise."""
    plugin = importlib.import_module("promptgen.plugin")
    if (old, name) in ADVICE:
        return getattr(importlib.import_module(f"promptgen.{MOVES[old]}"), name), ADVICE[old, name]
    if (old, name) in LEGACY:
        module, _, attr = LEGACY[old, name].partition(":")
        receives = "(options, registry)" if name == "ClassifierEntry" else "(spec, options, registry)"
        advice = f"`from promptgen.plugin import {name}` (its build now receives {receives}, and options= takes a promptgen.plugin.Options model)"
        return getattr(importlib.import_module(module), attr), advice
    new = importlib.import_module(f"promptgen.{MOVES[old]}")
    value = getattr(new, name)
    if name in plugin.__all__ and getattr(plugin, name) is value:
        return value, f"`from promptgen.plugin import {name}`"
    return value, f"`from promptgen.{MOVES[old]} import {name}`"


class _StandIn(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        old = self.__name__.rpartition(".")[2]
        try:
            value, advice = _lookup(old, name)
        except AttributeError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None
        warnings.warn(
            f"{self.__name__}.{name} is deprecated and will be removed in promptgen {REMOVED_IN}; use {advice}",
            DeprecationWarning,
            stacklevel=2,
        )
        return value

    def __dir__(self) -> list[str]:
        return dir(importlib.import_module(f"promptgen.{MOVES[self.__name__.rpartition('.')[2]]}"))


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        head, _, tail = fullname.partition(".")
        if head == "promptgen" and tail in MOVES:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _StandIn(spec.name, f"Deprecated: moved to promptgen.{MOVES[spec.name.partition('.')[2]]}.")
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def install() -> None:
    """Make the old module paths importable (once per process)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
