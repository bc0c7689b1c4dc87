"""The CLI end to end on the built-in default, with few steps, and every bad input of the issue."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.testing import one_line_error

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def prompt_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prompts") / "three"
    result = runner.invoke(
        app, ["compose", "--gen", "mnist", "--energy", "classifier:digit=3", "--steps", "12", "--eval-every", "5",
              "--checkpoint-every", "10", "--out", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    return out


def test_compose_writes_a_complete_prompt(prompt_dir):
    assert {p.name for p in prompt_dir.iterdir()} >= {"manifest.json", "flow.safetensors", "samples.png", "checkpoint.pt"}
    m = json.loads((prompt_dir / "manifest.json").read_text())
    assert m["generator"]["spec"] == "mnist" and m["generator"]["latent_shape"] == [32]
    assert m["energies"] == [
        {
            "spec": "classifier:digit=3",
            "label": "classifier:digit=3",
            "weight": 100.0,
            "plugin": "promptgen-core 0.2.0",
            "state": {},
            "targets": [
                {"attribute": "digit", "labels": [str(d) for d in range(10)], "target": None, "asked": ["3"], "avoided": []}
            ],
        }
    ]
    assert m["generator"]["plugin"] == "promptgen-core 0.2.0"
    assert m["energies"][0]["weight"] > 0
    assert m["training"]["config"]["steps"] == 12
    assert [h["step"] for h in m["training"]["history"]] == [5.0, 10.0, 12.0]
    assert {"promptgen", "torch", "zuko", "python"} <= set(m["versions"])
    assert Image.open(prompt_dir / "samples.png").size[0] > 28


def test_the_preview_and_the_grids_say_what_they_show(prompt_dir):
    from promptgen.artifacts.captions import grid_labels
    from promptgen.artifacts.prompt import load_prompt, sample_images
    from promptgen.core.images import make_grid

    prompt = load_prompt(prompt_dir)
    labels = grid_labels(prompt, 0)
    assert labels.title == str(prompt_dir) and labels.columns == ()
    assert labels.lines == ("--gen mnist --energy classifier:digit=3@100", "seed 0")
    assert grid_labels(prompt, 5, title="runs/three").title == "runs/three"
    # samples.png: the 64 preview samples (seed 0), 2× to 484 px, under the band that draws those labels.
    preview = np.asarray(Image.open(prompt_dir / "samples.png"))
    raw = make_grid(sample_images(prompt, 64, seed=0))[..., 0].repeat(2, 0).repeat(2, 1)
    assert preview.shape[1] == 484 and preview.shape[0] > 484
    assert np.abs(preview[-484:].astype(int) - raw).max() <= 1
    assert (preview[:-484] < 128).sum() > 100


def test_sample_png_grid_folder_and_npz(prompt_dir, tmp_path):
    assert run("sample", prompt_dir, "-n", "9", "-o", tmp_path / "grid.png").exit_code == 0
    # 3×3 tiles of 28 px with 2 px padding, scaled 6× to be seen, under a band of labels.
    width, height = Image.open(tmp_path / "grid.png").size
    assert width == 6 * (3 * 30 + 2) and height > width
    assert run("sample", prompt_dir, "-n", "9", "--no-labels", "-o", tmp_path / "raw.png").exit_code == 0
    assert Image.open(tmp_path / "raw.png").size == (3 * 30 + 2, 3 * 30 + 2)
    assert run("sample", prompt_dir, "-n", "5", "-o", tmp_path / "pngs").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == [f"{i:06d}.png" for i in range(5)]
    assert Image.open(tmp_path / "pngs" / "000000.png").size == (28, 28)
    assert run("sample", prompt_dir, "-n", "7", "-o", tmp_path / "raw.npz").exit_code == 0
    images = np.load(tmp_path / "raw.npz")["images"]
    assert images.shape == (7, 1, 28, 28) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0.05


def test_seed_makes_sampling_repeatable(prompt_dir, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert run("sample", prompt_dir, "-n", "6", "--seed", seed, "-o", tmp_path / f"{name}.npz").exit_code == 0
    a, b, c = (np.load(tmp_path / f"{k}.npz")["images"] for k in "abc")
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_base_generator_is_sampled_the_same_way(prompt_dir, tmp_path):
    assert run("sample", "--gen", "mnist", "-n", "6", "--seed", "1", "-o", tmp_path / "base.npz").exit_code == 0
    assert run("sample", prompt_dir, "-n", "6", "--seed", "1", "-o", tmp_path / "prompt.npz").exit_code == 0
    base = np.load(tmp_path / "base.npz")["images"]
    prompt = np.load(tmp_path / "prompt.npz")["images"]
    assert base.shape == prompt.shape
    assert not np.allclose(base, prompt)  # the flow moved the latents


def test_sampling_needs_no_energy_model(prompt_dir, tmp_path, monkeypatch):
    from promptgen import builtin

    def refuse(name):
        raise AssertionError("a classifier was loaded while sampling a prompt")

    monkeypatch.setattr(builtin, "_digit_classifier", refuse)
    result = run("sample", prompt_dir, "-n", "4", "-o", tmp_path / "g.png")
    assert result.exit_code == 0, result.output


def test_info_shows_the_manifest(prompt_dir):
    result = run("info", prompt_dir)
    assert result.exit_code == 0
    assert "classifier:digit=3" in result.stdout and "mnist" in result.stdout
    as_json = json.loads(run("info", prompt_dir, "--json").stdout)
    assert as_json["flow"]["features"] == 32


def test_python_api_mirrors_cli(prompt_dir):
    import promptgen

    prompt = promptgen.load_prompt(prompt_dir)
    a = promptgen.sample(prompt, n=4, seed=2)
    b = promptgen.sample(str(prompt_dir), n=4, seed=2)
    assert a.shape == (4, 1, 28, 28) and np.array_equal(a.numpy(), b.numpy())
    assert promptgen.info(prompt_dir).energies[0].spec == "classifier:digit=3"
    assert any(p.name == "builtin" for p in promptgen.list_plugins())


def test_python_m_promptgen_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "promptgen", "sample", "--gen", "mnist", "-n", "4", "-o", str(tmp_path / "x.png")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "x.png").exists()


# -- bad input: one line, exit code 2, nothing damaged ---------------------------------------------------------------




@pytest.mark.parametrize(
    "args, words",
    [
        (["--gen", "mnsit", "--energy", "classifier:digit=3"], ["unknown generator 'mnsit'", "did you mean 'mnist'"]),
        (["--energy", "clasifier:digit=3"], ["unknown energy 'clasifier'", "did you mean 'classifier'"]),
        (["--energy", "classifier:digt=3"], ["unknown attribute 'digt'", "did you mean 'digit'"]),
        (["--energy", "classifier:digit=11"], ["unknown class of attribute 'digit'", "'11'"]),
        (["--energy", "classifier:digit==3"], ["malformed spec", "at character 18"]),
        (["--energy", "classifier:digit=3@-5"], ["negative"]),
        (["--energy", "classifier:digit=3@lots"], ["'lots' is not a number"]),
        (["--energy", "classifier:3"], ["needs an attribute", "classifier:digit=3"]),
        (["--gen", "mnist:truncation=0.5", "--energy", "classifier:digit=3"], ["unknown option 'truncation'"]),
        (["--gen", "mnist@3", "--energy", "classifier:digit=3"], ["takes no @weight"]),
        ([], ["give at least one --energy"]),
        (["--energy", "classifier:digit=3", "--device", "cuda:7"] if not __import__("torch").cuda.is_available() else
         ["--energy", "classifier:digit=3", "--device", "tpu"], ["device"]),
    ],
)
def test_compose_bad_specs(args, words, tmp_path):
    out = tmp_path / "p"
    one_line_error(run("compose", *args, "--steps", "1", "--out", out, "-q"), *words)
    assert not out.exists()  # nothing was created for a refused command


def test_compose_refuses_to_overwrite_a_user_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    one_line_error(run("compose", "--energy", "classifier:digit=3", "--steps", "1", "--out", out, "-q"), "not empty", "--overwrite")
    one_line_error(run("compose", "--energy", "classifier:digit=3", "--steps", "1", "--out", out, "-q", "--overwrite"), "not a prompt folder")
    assert (out / "notes.txt").read_text() == "precious" and len(list(out.iterdir())) == 1


def test_compose_out_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(run("compose", "--energy", "classifier:digit=3", "--steps", "1", "--out", blocker / "p", "-q"), "cannot create")
    assert blocker.read_text() == "x"


def test_sample_missing_prompt(tmp_path):
    one_line_error(run("sample", tmp_path / "nope", "-o", tmp_path / "g.png"), "does not exist", "promptgen compose")


def test_sample_folder_that_is_not_a_prompt(tmp_path):
    one_line_error(run("sample", tmp_path, "-o", tmp_path / "g.png"), "no manifest.json")


@pytest.fixture
def prompt_copy(prompt_dir, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(prompt_dir, tmp_path / "copy"))


def test_sample_prompt_from_a_newer_version(prompt_copy, tmp_path):
    m = json.loads((prompt_copy / "manifest.json").read_text())
    m["format_version"] = 99
    m["versions"]["promptgen"] = "9.0"
    (prompt_copy / "manifest.json").write_text(json.dumps(m))
    one_line_error(run("sample", prompt_copy, "-o", tmp_path / "g.png"), "format 99", "pip install -U promptgen-core")


def test_sample_prompt_with_corrupt_weights(prompt_copy, tmp_path):
    data = (prompt_copy / "flow.safetensors").read_bytes()
    (prompt_copy / "flow.safetensors").write_bytes(data[: len(data) // 2])
    one_line_error(run("sample", prompt_copy, "-o", tmp_path / "g.png"), "corrupt", "flow.safetensors")


def test_sample_prompt_with_garbage_manifest(prompt_copy, tmp_path):
    (prompt_copy / "manifest.json").write_text("{not json")
    one_line_error(run("sample", prompt_copy, "-o", tmp_path / "g.png"), "not valid JSON")


def test_manifest_pointing_outside_the_folder_is_refused(prompt_copy, tmp_path):
    m = json.loads((prompt_copy / "manifest.json").read_text())
    m["weights_file"] = "../../etc/passwd"
    (prompt_copy / "manifest.json").write_text(json.dumps(m))
    one_line_error(run("sample", prompt_copy, "-o", tmp_path / "g.png"), "weights_file", "plain file name")


def test_sample_prompt_with_wrong_shapes(prompt_copy, tmp_path):
    m = json.loads((prompt_copy / "manifest.json").read_text())
    m["flow"]["hidden"] = 7
    (prompt_copy / "manifest.json").write_text(json.dumps(m))
    one_line_error(run("sample", prompt_copy, "-o", tmp_path / "g.png"), "has shape")


def test_sample_output_that_cannot_be_written_keeps_existing_files(prompt_dir, tmp_path):
    one_line_error(run("sample", prompt_dir, "-o", tmp_path / "missing" / "g.png"), "does not exist")
    existing = tmp_path / "grid.png"
    existing.write_bytes(b"user's file")
    one_line_error(run("sample", prompt_dir, "-o", tmp_path / "g.jpg"), ".png")
    one_line_error(run("sample", prompt_dir, "-o", existing / "x.png"), "is a file, not a folder")
    assert existing.read_bytes() == b"user's file"


def test_sample_needs_exactly_one_source(prompt_dir, tmp_path):
    one_line_error(run("sample", "-o", tmp_path / "g.png"), "--gen")
    one_line_error(run("sample", prompt_dir, "--gen", "mnist", "-o", tmp_path / "g.png"), "not both")


def test_bad_numbers_are_refused_by_the_cli_parser(tmp_path):
    result = run("compose", "--energy", "classifier:digit=3", "--steps", "many", "--out", tmp_path / "p")
    assert result.exit_code == 2 and "Traceback" not in result.output
    result = run("sample", "--gen", "mnist", "-n", "0", "-o", tmp_path / "g.png")
    assert result.exit_code == 2


def test_errors_from_a_real_process_have_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "promptgen", "compose", "--energy", "classifier:digit=3@-1", "--out", str(tmp_path / "p")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().startswith("error:")
    assert len(proc.stderr.strip().splitlines()) == 1
