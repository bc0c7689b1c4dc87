"""BigGAN through the CLI: compose a prompt on the random-weight model, sample it twice with a seed; the zoo offline."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.testing import offline, one_line_error

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_compose_and_sample_twice_with_a_seed(tiny, tmp_path):
    out = tmp_path / "inky"
    result = run(
        "compose", "--gen", f"biggan:path={tiny}", "--energy", "ink:target=0.3",
        "--steps", 3, "--batch-size", 4, "--eval-every", 3, "--eval-batch", 8, "--transforms", 2, "--hidden", 16,
        "--out", out, "--quiet",
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"]["spec"].startswith("biggan:path=")
    assert manifest["generator"]["latent_shape"] == [32]
    arrays = []
    for i in range(2):
        result = run("sample", out, "-n", 4, "--seed", 7, "-o", tmp_path / f"s{i}.npz")
        assert result.exit_code == 0, result.output
        with np.load(tmp_path / f"s{i}.npz") as data:
            arrays.append({k: data[k] for k in data.files})
    assert arrays[0].keys() == arrays[1].keys()
    for k in arrays[0]:
        assert np.array_equal(arrays[0][k], arrays[1][k]), k


def test_the_zoo_offline_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path / "home"))
    with offline():
        line = one_line_error(run("compose", "--gen", "biggan-deep-128", "--energy", "ink:target=0.3", "--out", tmp_path / "x"))
    assert "biggan-deep-128" in line


def test_biggan_without_a_path_is_a_one_line_error(tmp_path):
    one_line_error(run("compose", "--gen", "biggan", "--energy", "ink:target=0.3", "--out", tmp_path / "x"), "path=")
