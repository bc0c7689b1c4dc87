"""Issue 17's face command through the real CLI, on the zoo names, with random-weight models in the official formats:

    promptgen compose --gen stylegan2-ffhq --energy deca-pose --energy arcface-id --cond yaw=... --cond pitch=...
    promptgen sample PROMPT --sweep yaw=-0.35:0.35:3

The cache (``$PROMPTGEN_HOME``) holds what a download leaves, but small or random: a tiny StyleGAN2 pickle in
NVIDIA's format, a random-weight ``deca_model.tar`` (its real-sized coarse encoder) and a random-weight
``model_ir_se50.pth``. Offline: the cache must serve everything.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from promptgen_plugin_arcface.testing import write_weights
from promptgen_plugin_arcface.zoo import IR_SE50
from promptgen_plugin_deca.testing import write_deca_model
from promptgen_plugin_deca.zoo import DECA_MODEL
from promptgen_plugin_stylegan2 import zoo
from promptgen_plugin_stylegan2.testing import random_generator, write_nvidia_pickle
from typer.testing import CliRunner

from promptgen.artifacts.prompt import load_prompt, sample_images
from promptgen.cli import app
from promptgen.core.registry import reset_registry
from promptgen.testing import one_line_error

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROMPTGEN_HOME", str(home))
        mp.setenv("PROMPTGEN_OFFLINE", "1")
        target = home / "stylegan2" / zoo.MODELS["stylegan2-ffhq"].filename
        target.parent.mkdir(parents=True)
        write_nvidia_pickle(random_generator(0), target)
        write_deca_model(home / "deca" / DECA_MODEL.filename, seed=0)
        (home / "arcface").mkdir()
        write_weights(home / "arcface" / IR_SE50.filename, seed=0)
        reset_registry()
        out = root / "pose"
        result = run(
            "compose", "--gen", "stylegan2-ffhq", "--energy", "deca-pose", "--energy", "arcface-id",
            "--cond", "yaw=-0.35:0.35", "--cond", "pitch=-0.35:0.35",
            "--steps", 2, "--batch-size", 2, "--eval-every", 2, "--eval-batch", 2, "--out", out, "-q",
        )
        assert result.exit_code == 0, result.output
        yield root, out
    reset_registry()


def test_compose_writes_a_conditional_face_prompt(faces):
    _, out = faces
    m = json.loads((out / "manifest.json").read_text())
    assert [c["name"] for c in m["conditions"]] == ["yaw", "pitch"] and m["flow"]["conditions"] == 2
    assert [e["label"] for e in m["energies"]] == ["deca-pose", "arcface-id"]
    terms = m["training"]["final_terms"]
    assert set(terms) == {"deca-pose", "arcface-id"} and all(np.isfinite(v) for v in terms.values())


def test_sample_sweep_writes_the_grid(faces, monkeypatch):
    root, out = faces
    monkeypatch.setenv("PROMPTGEN_HOME", str(root / "home"))
    monkeypatch.setenv("PROMPTGEN_OFFLINE", "1")
    grid = root / "sweep.png"
    result = run("sample", out, "--sweep", "yaw=-0.35:0.35:3", "--cond", "pitch=-0.1", "-n", 2, "--no-labels", "-o", grid)
    assert result.exit_code == 0, result.output
    side = 32 + 2  # the tiny generator's 32 px, and the grid's padding
    assert Image.open(grid).size == (3 * side + 2, 2 * side + 2)
    result = run("sample", out, "--sweep", "yaw=-0.35:0.35:3", "--cond", "pitch=-0.1", "-n", 2, "-o", root / "labelled.png")
    assert result.exit_code == 0, result.output
    with Image.open(root / "labelled.png") as labelled:  # colour, 5× to 520 px, under a band of labels
        assert labelled.mode == "RGB" and labelled.width == 5 * (3 * side + 2) and labelled.height > 5 * (2 * side + 2)
    values = root / "values.npz"
    assert run("sample", out, "--cond", "yaw=0.2,pitch=-0.1", "-n", 2, "-o", values).exit_code == 0
    prompt = load_prompt(out)
    assert np.allclose(np.load(values)["images"], sample_images(prompt, 2, condition={"yaw": 0.2, "pitch": -0.1}).numpy(), atol=1e-6)
    one_line_error(run("sample", out, "--cond", "roll=0.1", "-o", root / "x.png"), "no condition 'roll'", "yaw, pitch")


def test_a_condition_the_pose_energy_does_not_read_is_refused(faces, monkeypatch):
    root, _ = faces
    monkeypatch.setenv("PROMPTGEN_HOME", str(root / "home"))
    monkeypatch.setenv("PROMPTGEN_OFFLINE", "1")
    one_line_error(
        run("compose", "--gen", "stylegan2-ffhq", "--energy", "deca-pose", "--energy", "arcface-id", "--cond", "age=20:60",
            "--steps", 1, "--out", root / "age"),
        "no energy reads a condition 'age'", "deca-pose reads pitch, yaw, roll",
    )
    assert not (root / "age").exists()
