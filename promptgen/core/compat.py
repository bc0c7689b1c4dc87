"""Which promptgen-core releases a plugin works with.

A plugin declares them as an ordinary dependency, ``promptgen-core>=0.2,<0.3``
(promptgen-core is 0.x: its plugin API may change in a minor release). pip
honours that range when it installs, but not every install goes through a
resolver (``--no-deps``, ``pip install -e``, a core upgraded afterwards, a
copied site-packages), so the registry checks it again: a plugin built for
another core is reported as failed in one line, and its hooks are not called.

>>> plugin = MetadataDistribution(
...     "Name: promptgen-plugin-ink\\nVersion: 0.3.0\\nRequires-Dist: torch>=2.2\\nRequires-Dist: promptgen-core<0.4,>=0.3\\n"
... )
>>> print(core_requirement_problem(plugin, "0.3.1"))
None
>>> print(core_requirement_problem(plugin, "0.2.0"))
built for promptgen-core >=0.3,<0.4, but 0.2.0 is installed; upgrade promptgen-core (pip install -U 'promptgen-core>=0.3,<0.4') or install a release of promptgen-plugin-ink made for 0.2.0
"""

from __future__ import annotations

import importlib.metadata as md
import os
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

CORE_DISTRIBUTION = "promptgen-core"

_LOWER = (">", ">=")
_UPPER = ("<", "<=")


class MetadataDistribution(md.Distribution):
    """A distribution that exists only as the text of its METADATA (for tests, or a wheel not yet installed).

    >>> MetadataDistribution("Name: p\\nVersion: 1.0\\nRequires-Dist: promptgen-core>=0.2\\n").requires
    ['promptgen-core>=0.2']
    """

    def __init__(self, metadata: str) -> None:
        self._text = metadata

    def read_text(self, filename: str) -> str | None:
        return self._text if filename in ("METADATA", "PKG-INFO") else None

    def locate_file(self, path: str | os.PathLike[str]) -> Any:
        raise FileNotFoundError(path)


def core_specifier(distribution: md.Distribution) -> SpecifierSet | None:
    """The promptgen-core versions ``distribution`` declares it works with; None if it names none.

    Requirements that apply only with an extra (``; extra == "test"``) or on
    another platform are left out; two that apply are combined. A
    ``Requires-Dist`` line that does not parse is skipped (damaged metadata is
    not this check's business).

    >>> str(core_specifier(MetadataDistribution("Name: p\\nRequires-Dist: Promptgen_Core >=0.2, <0.3\\n")))
    '<0.3,>=0.2'
    >>> print(core_specifier(MetadataDistribution("Name: p\\nRequires-Dist: promptgen-core>=9; extra == 'dev'\\n")))
    None
    >>> print(core_specifier(MetadataDistribution("Name: p\\nRequires-Dist: torch\\n")))
    None
    """
    try:
        lines = distribution.requires or []
    except Exception:  # noqa: BLE001 - unreadable metadata: no declared range to check
        return None
    found: SpecifierSet | None = None
    for line in lines:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(requirement.name) != CORE_DISTRIBUTION:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        found = requirement.specifier if found is None else found & requirement.specifier
    return found


def _name(distribution: md.Distribution) -> str:
    try:
        name = distribution.metadata["Name"]
    except Exception:  # noqa: BLE001 - unreadable metadata
        name = None
    return " ".join(str(name or "the plugin").split())


def _ordered(specifier: SpecifierSet) -> str:
    """``>=0.3,<0.4`` rather than packaging's alphabetical ``<0.4,>=0.3``."""
    return ",".join(sorted((str(s) for s in specifier), key=lambda s: (not s.startswith((">", "~", "=")), s)))


def core_requirement_problem(distribution: md.Distribution, core_version: str) -> str | None:
    """Why ``distribution`` cannot work with promptgen-core ``core_version``, in one line; None if it can.

    None too when the distribution names no promptgen-core range (the core's own
    distribution, a plugin from before ranges were declared) or when
    ``core_version`` is not a version (nothing to compare). Pre-releases count
    as their release: a plugin for ``>=0.2,<0.3`` works with 0.2.1.dev0.
    The advice depends on which end of the range the core is past.

    >>> def plugin(requires):
    ...     return MetadataDistribution(f"Name: promptgen-plugin-x\\nVersion: 1.0\\nRequires-Dist: promptgen-core{requires}\\n")
    >>> print(core_requirement_problem(plugin(">=0.2,<0.3"), "0.2.5"))
    None
    >>> print(core_requirement_problem(plugin(">=0.2,<0.3"), "0.2.1.dev0"))
    None
    >>> print(core_requirement_problem(plugin(">=0.2,<0.3"), "0.3.0"))
    built for promptgen-core >=0.2,<0.3, but 0.3.0 is installed; upgrade the plugin (pip install -U promptgen-plugin-x) or install a matching promptgen-core (pip install 'promptgen-core>=0.2,<0.3')
    >>> print(core_requirement_problem(plugin("==0.1.*"), "0.2.0"))
    built for promptgen-core ==0.1.*, but 0.2.0 is installed; upgrade the plugin (pip install -U promptgen-plugin-x) or install a matching promptgen-core (pip install 'promptgen-core==0.1.*')
    >>> print(core_requirement_problem(plugin("!=0.2.0"), "0.2.0"))
    built for promptgen-core !=0.2.0, but 0.2.0 is installed; install a release of promptgen-plugin-x made for 0.2.0, or a matching promptgen-core (pip install 'promptgen-core!=0.2.0')
    >>> print(core_requirement_problem(plugin(""), "0.2.0"))
    None
    >>> print(core_requirement_problem(plugin(">=0.3"), "?"))
    None
    """
    specifier = core_specifier(distribution)
    if specifier is None:
        return None
    try:
        version = Version(core_version)
    except InvalidVersion:
        return None
    if specifier.contains(version, prereleases=True):
        return None
    name, wanted, past = _name(distribution), _ordered(specifier), _past(specifier, version)
    install_core = f"pip install {'-U ' if past == 'below' else ''}'{CORE_DISTRIBUTION}{wanted}'"
    head = f"built for {CORE_DISTRIBUTION} {wanted}, but {core_version} is installed"
    if past == "above":
        return f"{head}; upgrade the plugin (pip install -U {name}) or install a matching {CORE_DISTRIBUTION} ({install_core})"
    if past == "below":
        return f"{head}; upgrade {CORE_DISTRIBUTION} ({install_core}) or install a release of {name} made for {core_version}"
    return f"{head}; install a release of {name} made for {core_version}, or a matching {CORE_DISTRIBUTION} ({install_core})"


def _past(specifier: SpecifierSet, version: Version) -> str | None:
    """Whether ``version`` is ``"above"`` or ``"below"`` the range it fails (None: an exclusion such as ``!=``)."""
    for s in specifier:
        if s.contains(version, prereleases=True):
            continue
        if s.operator in _UPPER:
            return "above"
        if s.operator in _LOWER:
            return "below"
        if s.operator in ("==", "~=", "==="):
            try:
                return "above" if version > Version(s.version.removesuffix(".*")) else "below"
            except InvalidVersion:
                return None
    return None
