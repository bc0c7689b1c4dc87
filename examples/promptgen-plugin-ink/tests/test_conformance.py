"""The conformance kit over this plugin's entries, as docs/writing-plugins.md asks every plugin to run it."""

from __future__ import annotations

from promptgen.testing import build_registry, check_energy, check_registered


def test_ink_passes_the_conformance_kit():
    registry = build_registry()
    check_energy(registry, "ink:target=0.2", generator="mnist")
    check_energy(registry, "ink:target=0.8,scale=0.05", generator="mnist")


def test_every_entry_of_this_plugin_is_checked():
    registry = build_registry()
    ours = next(p for p in registry.plugins if p.distribution == "promptgen-plugin-ink")
    report = check_registered(registry, skip=[n for n in _all(registry) if n != "energy:ink"])
    assert ours.energies == ["ink"] and report.passed == ["energy:ink"]


def _all(registry):
    return [f"{kind}:{name}" for kind, table in (("generator", registry.generators), ("energy", registry.energies),
                                                  ("classifier", registry.classifiers)) for name in table]
