"""arcface-id through the CLI: listed with its options; an unconditional compose is refused in one line, before training."""

from __future__ import annotations

from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.core.registry import get_registry
from promptgen.testing import check_entry, offline, one_line_error

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_listed_with_its_options():
    result = run("list", "arcface-id")
    assert result.exit_code == 0, result.output
    for word in ("promptgen-plugin-arcface", "default weight", "path", "crop", "ffhq"):
        assert word in result.output


def test_an_unconditional_compose_is_refused_in_one_line(weights, tmp_path):
    out = tmp_path / "run"
    result = run("compose", "--gen", "mnist", "--energy", f"arcface-id:path={weights}", "--steps", 2, "--batch-size", 2, "--out", out, "--quiet")
    assert result.exit_code == 2
    assert "compares each sample with its twin" in one_line_error(result, "--cond")
    assert not (out / "manifest.json").exists()


def test_the_conformance_kit_reports_needs_files_offline(tmp_path, monkeypatch):
    # check_energy calls energy(images, latents), which arcface-id refuses: the kit cannot exercise
    # context_energy yet (tests/test_arcface.py checks it directly). Without the weights it needs files.
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path))
    with offline():
        result = check_entry(get_registry(), "energy", "arcface-id")
    assert result.status == "needs files" and "model_ir_se50.pth" in result.reason
