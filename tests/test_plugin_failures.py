"""Issue 6: a broken or slow plugin cannot take the CLI down.

Plugins are installed as fake distributions with real entry points (as
``pip install`` would leave them), so discovery meets them like any other.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
import types

import pytest
from typer.testing import CliRunner

from promptgen import cli
from promptgen.cli import app
from promptgen.core.hooks import hookimpl
from promptgen.core.registry import GeneratorEntry, build_registry, get_registry
from promptgen.testing import install_fake_distribution, one_line_error

runner = CliRunner()

RAISES_AT_IMPORT = """
raise RuntimeError("weights server [/red] down\\nsecond line")
"""
EXITS_AT_IMPORT = """
import sys
sys.exit(3)
"""
HOOK_RAISES = """
from promptgen.core.hooks import hookimpl

@hookimpl
def promptgen_energies():
    raise ValueError("no licence key")
"""
RETURNS_GARBAGE = """
from promptgen.core.hooks import hookimpl
from promptgen.core.registry import GeneratorEntry

@hookimpl
def promptgen_generators():
    return [42, GeneratorEntry("fancy", lambda spec, options, registry: None, summary="[/bold] shiny \\x1b[2J")]

@hookimpl
def promptgen_energies():
    return "not a list"
"""
BROKEN = {
    "promptgen-plugin-raises": ("raisesplug", RAISES_AT_IMPORT, "failed to import raisesplug: RuntimeError: weights server [/red] down second line"),
    "promptgen-plugin-exits": ("exitsplug", EXITS_AT_IMPORT, "failed to import exitsplug: SystemExit: 3"),
    "promptgen-plugin-hookraises": ("hookplug", HOOK_RAISES, "promptgen_energies raised ValueError: no licence key"),
    "promptgen-plugin-garbage": ("garbageplug", RETURNS_GARBAGE, "promptgen_generators returned 42, not a GeneratorEntry with a name; skipped; promptgen_energies returned a str, not a list of EnergyEntry"),
}


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def broken_plugins(tmp_path, monkeypatch):
    for dist, (module, source, _) in BROKEN.items():
        install_fake_distribution(tmp_path, dist, "0.1.0", module, source, module)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    for module, _, _ in BROKEN.values():
        sys.modules.pop(module, None)


def test_each_failure_is_recorded_against_its_distribution(broken_plugins):
    reg = build_registry()
    errors = {p.distribution: p.error for p in reg.plugins}
    for dist, (_, _, error) in BROKEN.items():
        assert errors[dist] == error
    # What a half-broken plugin got right is kept; the built-in pieces are untouched.
    assert "fancy" in reg.generators and {"mnist", "prompt"} <= set(reg.generators) and "classifier" in reg.energies
    assert errors["promptgen-core"] is None


def test_list_shows_each_failure_on_its_plugins_row(broken_plugins, monkeypatch):
    monkeypatch.setattr(cli.out_console, "width", 400)  # so that no cell folds and a row is one line
    result = run("list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for dist, (_, _, error) in BROKEN.items():
        rows = [line for line in lines if dist in line]
        assert len(rows) == 1, rows
        assert error in rows[0], (error, rows[0])
    assert any("[/bold] shiny \\x1b[2J" in line for line in lines)  # a plugin's text, shown literally
    assert "\x1b" not in result.stdout


def test_compose_and_sample_work_with_broken_plugins_present(broken_plugins, tmp_path):
    out = tmp_path / "three"
    result = run("compose", "--gen", "mnist", "--energy", "classifier:digit=3", "--steps", "1", "--batch-size", "8",
                 "--eval-batch", "8", "--transforms", "1", "--hidden", "8", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    assert (out / "manifest.json").is_file()
    result = run("sample", out, "-n", "2", "-o", tmp_path / "g.png")
    assert result.exit_code == 0, result.output
    # Asking for what a broken plugin would have provided names it.
    one_line_error(run("sample", "--gen", "toy", "-o", tmp_path / "t.png"), "unknown generator 'toy'",
                   "promptgen-plugin-raises", "failed to load")


MARKS_IMPORT = """
import os
from pathlib import Path

Path(os.environ["PROMPTGEN_TEST_MARKER"]).write_text("imported")
"""


def test_help_imports_no_plugin(tmp_path, monkeypatch):
    marker = tmp_path / "MARKER"
    install_fake_distribution(tmp_path, "promptgen-plugin-marks", "0.1.0", "marksplug", MARKS_IMPORT, "marks")
    monkeypatch.setenv("PROMPTGEN_TEST_MARKER", str(marker))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    proc = subprocess.run([sys.executable, "-m", "promptgen", "--help"], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0 and "compose" in proc.stdout, proc.stderr
    for args in ([], ["compose", "--help"], ["sample", "--help"], ["list", "--help"], ["info", "--help"],
                 ["eval", "--help"], ["report", "--help"]):
        result = run(*args)
        assert "Usage" in result.output, (args, result.output)
    assert not marker.exists()
    from promptgen.core import registry

    assert registry._REGISTRY is None
    # The plugin is found as soon as a command needs plugins: the check above could have failed.
    assert run("list").exit_code == 0
    assert marker.read_text() == "imported"


WAITS_AT_IMPORT = """
import promptgen_test_gate
promptgen_test_gate.OPEN.wait()
"""
HOOK_WAITS = """
import promptgen_test_gate
from promptgen.core.hooks import hookimpl

@hookimpl
def promptgen_energies():
    promptgen_test_gate.OPEN.wait()
    return []
"""


@pytest.fixture
def gate(monkeypatch):
    module = types.ModuleType("promptgen_test_gate")
    module.OPEN = threading.Event()
    monkeypatch.setitem(sys.modules, "promptgen_test_gate", module)
    yield module.OPEN
    module.OPEN.set()  # let the abandoned plugin threads finish


def test_plugin_that_hangs_is_given_up_on_not_waited_for(gate, tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, "promptgen-plugin-waits", "0.1.0", "waitsplug", WAITS_AT_IMPORT, "waits")
    install_fake_distribution(tmp_path, "promptgen-plugin-hookwaits", "0.1.0", "hookwaitsplug", HOOK_WAITS, "hookwaits")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.setenv("PROMPTGEN_PLUGIN_TIMEOUT", "0.2")
    result = run("list", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["distribution"]: r for r in json.loads(result.stdout)}
    assert rows["promptgen-plugin-waits"]["error"] == (
        "failed to import waitsplug: did not finish within 0.2 s (raise PROMPTGEN_PLUGIN_TIMEOUT if it is just slow)"
    )
    assert rows["promptgen-plugin-hookwaits"]["error"].startswith("promptgen_energies did not finish within 0.2 s")
    assert rows["promptgen-core"]["error"] is None and "mnist" in get_registry().generators
    assert not gate.is_set()  # they really were still waiting


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
def test_bad_timeout_setting_is_one_line(value, monkeypatch):
    monkeypatch.setenv("PROMPTGEN_PLUGIN_TIMEOUT", value)
    one_line_error(run("list"), "PROMPTGEN_PLUGIN_TIMEOUT", "0 to wait forever")


def test_zero_timeout_calls_hooks_in_the_main_thread(monkeypatch):
    monkeypatch.setenv("PROMPTGEN_PLUGIN_TIMEOUT", "0")
    seen = []

    def hook():
        seen.append(threading.current_thread() is threading.main_thread())
        return [GeneratorEntry("here", lambda spec, options, registry: None)]

    reg = build_registry(extra_plugins=[("here", types.SimpleNamespace(promptgen_generators=hookimpl(hook)))])
    assert seen == [True] and "here" in reg.generators
