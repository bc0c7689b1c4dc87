"""The conformance kit over every entry the installed plugins register (:func:`check_registered`)."""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from promptgen.testing.classifiers import check_classifier
from promptgen.testing.common import _NEEDS_FILES, DEFAULT_DEVICES, SKIPPED_BY_DEFAULT, Kind, _exc, _fail, _one_line
from promptgen.testing.energies import check_energy
from promptgen.testing.generators import check_generator
from promptgen.testing.helpers import offline

# -- every registered entry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryResult:
    """What :func:`check_entry` found for one registered entry.

    Attributes:
        kind: ``"generator"``, ``"energy"`` or ``"classifier"``.
        name: the registered name.
        spec: what was built (a spec; for a classifier, ``name:key=value,...`` of its options).
        status: ``"passed"``; ``"needs files"`` (building it needs weights that are not
            here and cannot be downloaded offline, or a ``path=``); ``"skipped"``.
        reason: one line: why it needs files or was skipped ("" when it passed).
    """

    kind: str
    name: str
    spec: str
    status: Literal["passed", "needs files", "skipped"]
    reason: str = ""

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass
class ConformanceReport:
    """The results of :func:`check_registered`, one per entry."""

    results: list[EntryResult] = field(default_factory=list)

    def _ids(self, status: str) -> list[str]:
        return [r.id for r in self.results if r.status == status]

    @property
    def passed(self) -> list[str]:
        return self._ids("passed")

    @property
    def needs_files(self) -> dict[str, str]:
        return {r.id: r.reason for r in self.results if r.status == "needs files"}

    @property
    def skipped(self) -> dict[str, str]:
        return {r.id: r.reason for r in self.results if r.status == "skipped"}

    def __str__(self) -> str:
        return f"{len(self.passed)} passed, {len(self.needs_files)} need files, {len(self.skipped)} skipped"


def registered_entries(registry: Any = None) -> list[str]:
    """Every entry of ``registry`` (default: the installed plugins') as ``kind:name``: generators, energies, classifiers."""
    from promptgen.core.registry import get_registry

    reg = registry if registry is not None else get_registry()
    return (
        [f"generator:{n}" for n in reg.generators]
        + [f"energy:{n}" for n in reg.energies]
        + [f"classifier:{n}" for n in reg.classifiers]
    )


def needs_files(exc: BaseException) -> bool:
    """Whether a build error says that weights or a file are missing (a DownloadError, or a PromptgenError
    that mentions a download, being offline, the cache or a ``path=``) rather than that something is wrong."""
    from promptgen.core.download import DownloadError
    from promptgen.core.errors import PromptgenError

    return isinstance(exc, DownloadError) or isinstance(exc, PromptgenError) and bool(_NEEDS_FILES.search(str(exc)))


def _lookup(table: Mapping[str, str] | None, kind: str, name: str) -> str | None:
    if not table:
        return None
    return table.get(f"{kind}:{name}", table.get(name))


def check_entry(
    registry: Any,
    kind: Kind,
    name: str,
    *,
    spec: str | None = None,
    generator: str | Any = "mnist",
    devices: Sequence[str | torch.device] = DEFAULT_DEVICES,
    allow_downloads: bool = False,
) -> EntryResult:
    """Run the right check on one registered entry, built from ``spec`` or its defaults.

    The default spec: a generator's or energy's ``example`` (else its name);
    a classifier with no options. A classifier's ``spec`` is ``name:key=value,...``
    of its options. Energies are checked on images of ``generator``. Unless
    ``allow_downloads``, nothing is downloaded (:func:`offline`).

    Returns:
        "passed", or "needs files" with the one-line reason when building needs
        weights that are not here (:func:`needs_files`).

    Raises:
        AssertionError: the entry fails a check, or cannot be built for another reason.
    """
    from promptgen.core.errors import PromptgenError
    from promptgen.core.spec import parse_spec

    if kind == "generator":
        text = spec or registry.generator(name).example or name
    elif kind == "energy":
        text = spec or registry.energy(name).example or name
    elif kind == "classifier":
        registry.classifier(name)
        text = spec or name
    else:
        raise ValueError(f"kind must be generator, energy or classifier, not {kind!r}")
    who = f"{kind} {name!r}"
    with contextlib.nullcontext() if allow_downloads else offline():
        try:
            if kind == "generator":
                check_generator(registry, text, devices=devices)
            elif kind == "energy":
                check_energy(registry, text, generator, devices=devices)
            else:
                parsed = parse_spec(text)
                if parsed.name != name:
                    raise ValueError(f"a spec for classifier {name!r} must start with {name!r}, not {text!r}")
                check_classifier(registry, name, parsed.options(), devices=devices)
        except PromptgenError as exc:
            if needs_files(exc):
                return EntryResult(kind, name, text, "needs files", _one_line(str(exc)))
            _fail(
                who,
                f"cannot be built from {text!r}: {_exc(exc)}; give the entry an example= spec that builds offline, "
                f"or check it with a spec that does",
            )
    return EntryResult(kind, name, text, "passed")


def check_registered(
    registry: Any = None,
    *,
    skip: Iterable[str] = (),
    specs: Mapping[str, str] | None = None,
    generator: str | Any = "mnist",
    devices: Sequence[str | torch.device] = DEFAULT_DEVICES,
    allow_downloads: bool = False,
) -> ConformanceReport:
    """Check every generator, energy and attribute classifier in ``registry`` (default: the installed plugins').

    Each entry is checked with :func:`check_entry`. Entries whose weights are not
    here and cannot be downloaded (zoo models, CLIP's pretrained weights, a
    classifier without ``path=``) are reported as "needs files", not failures.

    Args:
        skip: entries not to check, as ``kind:name`` or a bare name, besides
            :data:`SKIPPED_BY_DEFAULT` (``generator:prompt``: it needs a prompt
            folder trained by ``promptgen compose``; give one in ``specs`` to check it).
        specs: ``kind:name`` (or name) -> the spec to build it from instead of
            its default (for a classifier, ``name:key=value,...``). An entry
            given a spec is checked even if ``skip`` names it.
        generator: what energies are checked on.

    Returns:
        the report: which entries passed, need files, or were skipped.

    Raises:
        AssertionError: listing every entry that failed, one per line.
    """
    from promptgen.core.registry import get_registry

    reg = registry if registry is not None else get_registry()
    skipped = set(skip) | set(SKIPPED_BY_DEFAULT)
    report = ConformanceReport()
    failures: list[str] = []
    for entry_id in registered_entries(reg):
        kind, name = entry_id.split(":", 1)
        spec = _lookup(specs, kind, name)
        if spec is None and (entry_id in skipped or name in skipped):
            reason = SKIPPED_BY_DEFAULT.get(entry_id, "skipped by the caller")
            report.results.append(EntryResult(kind, name, "", "skipped", reason))
            continue
        try:
            result = check_entry(
                reg,
                typing.cast(Kind, kind),
                name,
                spec=spec,
                generator=generator,
                devices=devices,
                allow_downloads=allow_downloads,
            )
            report.results.append(result)
        except AssertionError as exc:
            failures.append(str(exc))
    if failures:
        checked = len(failures) + sum(r.status != "skipped" for r in report.results)
        raise AssertionError(f"{len(failures)} of {checked} entries checked failed:\n" + "\n".join(failures))
    return report
