"""Bad ``ink`` specs are user errors: one line that says what to type instead."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.plugin import PromptgenError, SpecError, UnknownNameError
from promptgen.testing import build_energy, build_registry

# The core checks each spec against InkOptions and writes the line; each entry is what the line must say.
BAD = {
    "ink": "option target= is required",
    "ink:target=abc": "target='abc' must be a number",
    "ink:target=2": "target=2 must be at most 1",
    "ink:target=-0.1": "target=-0.1 must be at least 0",
    "ink:target=nan": "target=nan must be a finite number",
    "ink:target=inf": "target=inf must be a finite number",
    "ink:0.2": "unexpected value '0.2'; 'ink' takes options target=..., scale=...",
    "ink:colour=red": "unknown option 'colour'; 'ink' takes options target=..., scale=...",
    "ink:targte=0.2": "did you mean 'target'?",
    "ink:target!=0.2": "write target=VALUE",
    "ink:target=0.1,target=0.2": "given twice",
    "ink:target=0.2,scale=0": "scale=0 must be greater than 0",
    "ink:target=0.2,scale=-1": "scale=-1 must be greater than 0",
    "ink:target=0.2,scale=wide": "scale='wide' must be a number",
}


@pytest.mark.parametrize("spec", sorted(BAD))
def test_bad_spec_is_a_one_line_spec_error(spec):
    with pytest.raises(SpecError) as info:
        build_energy(spec, build_registry())
    message = str(info.value)
    assert BAD[spec] in message
    assert "\n" not in message
    assert "target=" in message or "did you mean 'target'" in message  # says what to type instead
    assert isinstance(info.value, PromptgenError)


def test_misspelt_energy_name_suggests_ink():

    with pytest.raises(UnknownNameError, match="unknown energy 'inc'; did you mean 'ink'"):
        build_energy("inc:target=0.2", build_registry())


@pytest.mark.parametrize("spec", ["ink:target=abc", "ink:target=2", "ink:colour=red"])
def test_cli_exits_2_with_one_line(spec, tmp_path):
    result = CliRunner().invoke(app, ["compose", "--gen", "mnist", "--energy", spec, "--out", str(tmp_path / "p"), "-q"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert BAD[spec] in lines[0]
    assert not (tmp_path / "p").exists()  # nothing was written


def test_cli_error_in_a_fresh_process(tmp_path, run_promptgen):
    proc = run_promptgen("compose", "--energy", "ink:target=2", "--out", str(tmp_path / "p"), "-q")
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert BAD["ink:target=2"] in lines[0] and "a number from 0 to 1" in lines[0]  # what was wrong, and what to type
