"""The installed distribution is found through its ``promptgen`` entry point."""

from __future__ import annotations

import importlib.metadata as md
import json

from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.testing import build_registry

DIST = "promptgen-plugin-ink"


def test_entry_point_is_declared_by_the_installed_distribution():
    eps = [ep for ep in md.distribution(DIST).entry_points if ep.group == "promptgen"]
    assert [(ep.name, ep.value) for ep in eps] == [("ink", "promptgen_plugin_ink")]


def test_registry_lists_the_plugin_and_its_energy():
    reg = build_registry()
    record = next(p for p in reg.plugins if p.distribution == DIST)
    assert record.name == "ink"
    assert record.version == md.version(DIST)
    assert record.error is None
    assert record.energies == ["ink"]
    assert record.generators == [] and record.classifiers == []
    assert DIST not in [p.distribution for p in reg.failures]

    entry = reg.energy("ink")
    assert entry.default_weight == 1.0
    assert entry.example == "ink:target=0.2"
    assert set(entry.options.model_fields) == {"target", "scale"} and not entry.arguments
    # the built-in plugin is unaffected
    assert "mnist" in reg.generators and "classifier" in reg.energies


def test_list_json_shows_the_plugin():
    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["distribution"]: r for r in json.loads(result.stdout)}
    row = rows[DIST]
    assert row["plugin"] == "ink"
    assert row["energies"] == ["ink"]
    assert row["error"] is None


def test_list_json_in_a_fresh_process(run_promptgen):
    proc = run_promptgen("list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["distribution"]: r for r in json.loads(proc.stdout)}
    assert rows[DIST]["energies"] == ["ink"] and rows[DIST]["error"] is None
