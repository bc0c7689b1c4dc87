"""Registries of generators, energies and attribute classifiers, filled by plugins.

The registry is built once per process from every installed distribution that
declares an entry point in the ``promptgen`` group (promptgen-core's own
built-in pieces included). A plugin that fails to import, whose hook raises
(even ``SystemExit``) or returns something that is not an entry, or whose
import or hook takes longer than ``$PROMPTGEN_PLUGIN_TIMEOUT`` seconds (default
60; 0 waits forever), or that was built for another promptgen-core (its
``Requires-Dist: promptgen-core`` range leaves out the running version; it is
then not even imported), is recorded in :attr:`Registry.failures` with its
distribution's name; the others keep working. Nothing builds the registry
before a command needs it, so ``promptgen --help`` never imports a plugin.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from promptgen.core.entries import LEGACY_TYPES, ClassifierEntry, EnergyEntry, GeneratorEntry, _Anything, upgrade
from promptgen.core.errors import PromptgenError, SpecError, UnknownNameError, closest, one_line, unknown_name
from promptgen.core.options import Options, check_options_model, option_names, parse_options
from promptgen.core.spec import Spec, parse_spec

if TYPE_CHECKING:
    from promptgen.core.protocols import AttributeClassifier, Energy, Generator

ENTRY_POINT_GROUP = "promptgen"
TIMEOUT_VARIABLE = "PROMPTGEN_PLUGIN_TIMEOUT"
DEFAULT_TIMEOUT = 60.0


@dataclass
class PluginRecord:
    """One installed plugin and what it registered (or why it failed)."""

    name: str
    distribution: str
    version: str
    generators: list[str] = field(default_factory=list)
    energies: list[str] = field(default_factory=list)
    classifiers: list[str] = field(default_factory=list)
    error: str | None = None

    def fail(self, message: str) -> None:
        """Record one more problem (a plugin may have several broken entries; each is named)."""
        self.error = message if not self.error else f"{self.error}; {message}"


@dataclass
class Registry:
    """What the installed plugins provide, by name."""

    generators: dict[str, GeneratorEntry] = field(default_factory=dict)
    energies: dict[str, EnergyEntry] = field(default_factory=dict)
    classifiers: dict[str, ClassifierEntry] = field(default_factory=dict)
    plugins: list[PluginRecord] = field(default_factory=list)

    @property
    def failures(self) -> list[PluginRecord]:
        return [p for p in self.plugins if p.error]

    def _list_hint(self) -> str:
        failed = [p.distribution for p in self.failures]
        if failed:
            return f"{', '.join(failed)} failed to load; see `promptgen list`"
        return "see `promptgen list`"

    def unknown(self, kind: Literal["generator", "energy", "classifier"], name: str) -> UnknownNameError:
        """The one-line error for a ``kind`` called ``name`` that is not registered.

        A name that a known distribution provides (:data:`promptgen.core.zoo.ZOO`) gets how to install it,
        unless that distribution is installed and failed to load; others get the closest known names.
        """
        from promptgen.core.zoo import ZOO, install_hint, provider_of

        tables: dict[str, Mapping[str, object]] = {"generator": self.generators, "energy": self.energies, "classifier": self.classifiers}
        table = tables[kind]
        dist = provider_of(kind, name)
        failed = {p.distribution for p in self.failures}
        if dist is not None and dist.name not in failed:
            return UnknownNameError(f"unknown {kind} {name!r}; {install_hint(kind, name)}")
        if not closest(name, table):
            # Not near an installed name: maybe near one a distribution that is not installed provides.
            elsewhere = [n for d in ZOO if d.name not in failed for n in d.names(kind) if n not in table]
            near = closest(name, elsewhere, n=1)
            if near:
                return UnknownNameError(f"unknown {kind} {name!r}; did you mean {near[0]!r}? {install_hint(kind, near[0])}")
        return unknown_name(kind, name, table, self._list_hint())

    def generator(self, name: str) -> GeneratorEntry:
        if name not in self.generators:
            raise self.unknown("generator", name)
        return self.generators[name]

    def energy(self, name: str) -> EnergyEntry:
        if name not in self.energies:
            raise self.unknown("energy", name)
        return self.energies[name]

    def classifier(self, name: str) -> ClassifierEntry:
        if name not in self.classifiers:
            raise self.unknown("classifier", name)
        return self.classifiers[name]

    def build_generator(self, spec: Spec | str) -> Generator:
        """The generator for a spec such as ``mnist`` or ``stylegan2:path=ffhq.pkl``: options checked, then built.

        Generators whose latent comes in parts or that draw noise of their own are
        returned bound (:func:`promptgen.core.latents.bind`): one flat latent, noise last.
        """
        from promptgen.core.latents import bind

        parsed = parse_spec(spec) if isinstance(spec, str) else spec
        if parsed.weight is not None:
            raise SpecError(f"{parsed.format()!r}: a generator takes no @weight; write {parsed.with_weight(None).format()!r}")
        entry = self.generator(parsed.name)
        legacy = entry.options is _Anything
        options = parse_options(parsed, entry.options, positional=entry.positional, free=legacy).options
        return bind(entry.build(parsed, options, self))

    def build_energy(self, spec: Spec | str) -> Energy:
        """The energy for a spec such as ``classifier:digit=3@50`` (its weight is the caller's business)."""
        parsed = parse_spec(spec) if isinstance(spec, str) else spec
        entry = self.energy(parsed.name)
        options = parse_options(parsed, entry.options, free=bool(entry.arguments)).options
        return entry.build(parsed, options, self)

    def build_classifier(self, name: str, options: Options | Mapping[str, str] | None = None, spec: Spec | None = None) -> AttributeClassifier:
        """The classifier ``name``, built with ``options`` (text from a spec, checked against its model).

        ``spec``: the energy spec the options came from, named in errors.
        """
        entry = self.classifier(name)
        if not isinstance(options, Options):
            from promptgen.core.spec import Arg, Piece

            given = dict(options or {})
            where = spec if spec is not None else Spec(name, tuple(Arg((Piece(v),), k) for k, v in given.items()))
            text = Spec(where.name, tuple(Arg((Piece(v),), k) for k, v in given.items()), where.weight)
            try:
                options = parse_options(text, entry.options).options
            except SpecError as exc:
                raise SpecError(str(exc).replace(repr(text.format()), repr(where.format()), 1)) from None
        return entry.build(options, self)

    def provider(self, name: str, kind: Literal["generator", "energy", "classifier"]) -> str:
        """``"distribution version"`` of the plugin that registered ``name`` (for manifests)."""
        for p in self.plugins:
            names = {"generator": p.generators, "energy": p.energies, "classifier": p.classifiers}[kind]
            if name in names:
                return f"{p.distribution} {p.version}".strip()
        return "unknown"

    def classifier_for(self, attribute: str, model: str | None = None) -> ClassifierEntry:
        """The classifier that provides ``attribute``.

        With ``model`` the named classifier is used (evaluators included);
        otherwise the first control classifier that declares the attribute.
        """
        if model is not None:
            entry = self.classifier(model)
            if attribute not in entry.attributes:
                raise self.unknown_attribute(attribute, model)
            return entry
        for entry in self.classifiers.values():
            if entry.role == "control" and attribute in entry.attributes:
                return entry
        raise self.unknown_attribute(attribute)

    def provides(self, attribute: str, model: str | None = None) -> bool:
        """Whether :meth:`classifier_for` would find ``attribute`` (``model`` must exist)."""
        if model is not None:
            return attribute in self.classifier(model).attributes
        return any(e.role == "control" and attribute in e.attributes for e in self.classifiers.values())

    def unknown_attribute(
        self, attribute: str, model: str | None = None, chosen: Sequence[ClassifierEntry] = ()
    ) -> UnknownNameError:
        """The error for an energy argument that names no attribute (of ``model``, if given).

        ``chosen``: the classifiers the energy uses; their options are offered
        too, since an argument may also be one of those.
        """
        options = {o: e.name for e in chosen for o in option_names(e.options)}
        if model is not None:
            kind, known, hint = f"attribute of classifier {model!r}:", set(self.classifier(model).attributes), ""
        else:
            known = {a for e in self.classifiers.values() if e.role == "control" for a in e.attributes}
            kind, hint = "attribute", "no installed classifier provides it"
        if options:
            takes = "; ".join(
                f"{e.name} takes options {', '.join(f'{o}=...' for o in option_names(e.options))}" for e in chosen if option_names(e.options)
            )
            hint = f"{hint}; {takes}" if hint else takes
        return unknown_name(kind, attribute, known | set(options), hint)

    def check_carried(self, attribute: str, channels: int, generator: str, model: str | None = None) -> None:
        """Refuse, in one line, an attribute read from colour on a generator of ``channels`` < 3 (greyscale).

        Unknown attributes pass: other checks name them.
        """
        if channels >= 3:
            return
        try:
            entries = [self.classifier_for(attribute, model)]
        except PromptgenError:
            return
        if model is None:
            entries += [e for e in self.classifiers.values() if e.role == "evaluator" and attribute in e.attributes]
        for entry in entries:
            if attribute in entry.colour:
                raise PromptgenError(
                    f"attribute {attribute!r} of classifier {entry.name!r} is read from colour, and generator {generator!r} "
                    f"draws greyscale images ({channels} channel): choose a colour generator, or an attribute greyscale images carry"
                )

    def evaluator_for(self, attribute: str) -> tuple[ClassifierEntry, bool]:
        """The classifier that judges ``attribute``, and whether it is independent.

        An evaluator-role classifier if one declares the attribute (independent:
        True); else the control classifier, flagged not independent, because a
        flow can fool the model that defined its energy.
        """
        for entry in self.classifiers.values():
            if entry.role == "evaluator" and attribute in entry.attributes:
                return entry, True
        return self.classifier_for(attribute), False

    def _add(self, kind: str, entry: Any, record: PluginRecord) -> None:
        tables: dict[str, tuple[dict[str, Any], list[str]]] = {
            "generator": (self.generators, record.generators),
            "energy": (self.energies, record.energies),
            "classifier": (self.classifiers, record.classifiers),
        }
        table, names = tables[kind]
        if entry.name in table:
            record.fail(f"{kind} {entry.name!r} is already registered by {self._owner(entry.name)}; skipped")
            return
        table[entry.name] = entry
        names.append(entry.name)

    def _owner(self, name: str) -> str:
        for p in self.plugins:
            if name in p.generators + p.energies + p.classifiers:
                return p.distribution
        return "another plugin"


_HOOKS = (
    ("promptgen_generators", "generator", GeneratorEntry),
    ("promptgen_energies", "energy", EnergyEntry),
    ("promptgen_attribute_classifiers", "classifier", ClassifierEntry),
)


def _distribution_of(ep: md.EntryPoint) -> tuple[str, str]:
    module = ep.value.split(":")[0].split(".")[0]
    dist = getattr(ep, "dist", None)
    if dist is None:
        return module, "?"
    try:
        name, version = dist.metadata["Name"], dist.version
    except Exception:  # noqa: BLE001 - damaged metadata of one distribution must not stop discovery
        return module, "?"
    return str(name or module), str(version or "?")


def _core_problem(ep: md.EntryPoint) -> str | None:
    """Why the distribution of ``ep`` cannot work with this promptgen-core, in one line (None: it can, or says nothing)."""
    from promptgen import __version__
    from promptgen.core.compat import core_requirement_problem

    dist = getattr(ep, "dist", None)
    if dist is None:
        return None
    try:
        problem = core_requirement_problem(dist, __version__)
    except Exception:  # noqa: BLE001 - damaged metadata of one distribution must not stop discovery
        return None
    return one_line(problem) if problem else None


class PluginTimeout(Exception):
    """A plugin's import or hook did not return within the time allowed."""


def plugin_timeout() -> float | None:
    """Seconds a plugin's import or hook may take (``$PROMPTGEN_PLUGIN_TIMEOUT``); None waits forever."""
    raw = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    # threading's timeouts overflow above about 9e9 s (every plugin would then "fail"): a day is plenty.
    if not 0 <= seconds <= MAX_TIMEOUT:
        raise PromptgenError(
            f"{TIMEOUT_VARIABLE}={raw[:40]!r} is not a number of seconds from 0 to {MAX_TIMEOUT:g}; set it to e.g. 60, or 0 to wait forever"
        )
    return seconds or None


#: Longest $PROMPTGEN_PLUGIN_TIMEOUT: one day.
MAX_TIMEOUT = 86_400.0


def _call(fn: Callable[[], Any], timeout: float | None) -> Any:
    """``fn()``, in a helper thread when ``timeout`` is set, so a plugin that hangs cannot hang promptgen.

    A call that does not finish in time raises :class:`PluginTimeout`; its
    thread is left behind as a daemon (Python cannot stop it) and ends with the process.
    """
    if timeout is None:
        return fn()
    result: list[Any] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who reports it
            error.append(exc)

    worker = threading.Thread(target=run, name="promptgen-plugin", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise PluginTimeout(f"did not finish within {timeout:g} s (raise {TIMEOUT_VARIABLE} if it is just slow)")
    if error:
        raise error[0]
    return result[0]


def _failure(exc: BaseException) -> str:
    if isinstance(exc, PluginTimeout):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def build_registry(extra_plugins: Sequence[tuple[str, object]] = ()) -> Registry:
    """Discover plugins through the ``promptgen`` entry-point group.

    Args:
        extra_plugins: (name, module-or-object) pairs registered after the
            entry points; used by tests and by programs that embed promptgen.
    """
    import pluggy

    from promptgen.core import hooks as hookspecs

    timeout = plugin_timeout()
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    reg = Registry()
    records: dict[str, PluginRecord] = {}

    def register(plugin: object, key: str, record: PluginRecord) -> None:
        reg.plugins.append(record)
        try:
            pm.register(plugin, name=key)
            # A @hookimpl whose name matches no hook (a typo such as promptgen_energy) is an error.
            pm.check_pending()
        except Exception as exc:  # noqa: BLE001 - e.g. a hook whose signature does not match the spec
            record.error = one_line(f"cannot register: {type(exc).__name__}: {exc}")
            if pm.is_registered(plugin):
                pm.unregister(plugin)
            return
        records[key] = record

    # The built-in plugin first, so its names win ties and its errors show first.
    eps = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name != "builtin", e.name))
    for ep in eps:
        dist, version = _distribution_of(ep)
        key = f"{dist}:{ep.name}"
        if key in records or any(r.distribution == dist and r.name == ep.name for r in reg.plugins):
            continue  # the same distribution found twice on sys.path
        record = PluginRecord(name=ep.name, distribution=dist, version=version)
        # A plugin built for another core is not imported: its hooks might not fit this one.
        record.error = _core_problem(ep)
        if record.error:
            reg.plugins.append(record)
            continue
        try:
            plugin = _call(ep.load, timeout)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a broken plugin must not take the others down
            record.error = one_line(f"failed to import {ep.value}: {_failure(exc)}")
            reg.plugins.append(record)
            continue
        register(plugin, key, record)
    for name, plugin in extra_plugins:
        register(plugin, name, PluginRecord(name=name, distribution=name, version=""))

    for hook_name, kind, entry_type in _HOOKS:
        # Plugins in discovery order (built-in first), whatever tryfirst/trylast say:
        # on a name clash the first plugin keeps the name.
        impls = {impl.plugin_name: impl for impl in getattr(pm.hook, hook_name).get_hookimpls()}
        for key, record in records.items():
            if key not in impls:
                continue
            try:
                entries = _call(impls[key].function, timeout) or []
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin hook that raises is reported, not fatal
                record.fail(one_line(f"{hook_name} {'' if isinstance(exc, PluginTimeout) else 'raised '}{_failure(exc)}"))
                continue
            if not isinstance(entries, (list, tuple)):
                record.fail(f"{hook_name} returned a {type(entries).__name__}, not a list of {entry_type.__name__}")
                continue
            for entry in entries:
                legacy = isinstance(entry, LEGACY_TYPES) and type(entry).__name__.removeprefix("Legacy") == entry_type.__name__
                if not (isinstance(entry, entry_type) or legacy) or not isinstance(entry.name, str) or not entry.name:
                    record.fail(f"{hook_name} returned {_short(entry)}, not a {entry_type.__name__} with a name; skipped")
                    continue
                try:
                    entry = upgrade(entry)
                    check_options_model(entry.options)
                except Exception as exc:  # noqa: BLE001 - a broken options model: this entry is skipped, the others kept
                    record.fail(one_line(f"{kind} {entry.name!r}: {exc}; skipped"))
                    continue
                reg._add(kind, entry, record)
    return reg


def _short(value: object) -> str:
    text = one_line(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_registry()
    return _REGISTRY


def reset_registry() -> None:
    """Forget the process-wide registry (after installing a plugin at run time)."""
    global _REGISTRY
    _REGISTRY = None
