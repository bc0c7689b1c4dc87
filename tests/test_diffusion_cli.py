"""Issue 27 through the CLI: a random-weight diffusers pipeline controlled by CLIP, sampled repeatably."""

from __future__ import annotations

import json

import pytest
from promptgen_plugin_diffusers.testing import write_pipeline
from typer.testing import CliRunner

from promptgen.cli import app

#: A tiny open_clip architecture (random weights, the real tokenizer), as the CLIP plugin's tests use.
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    import open_clip

    folder = tmp_path_factory.mktemp("clip-configs")
    (folder / "promptgen-tiny-clip-27.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder)
    return "promptgen-tiny-clip-27"


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("latent", ["full", "blocks,block=4"])
def test_compose_a_diffusers_pipeline_with_clip_then_sample_repeatably(tmp_path, tiny_clip, latent):
    folder = write_pipeline(tmp_path / "ddpm", size=8, channels=3)
    out = tmp_path / "red"
    result = run(
        "compose", "--gen", f"diffusers:path={folder},steps=2,sample_steps=3,latent={latent}",
        "--energy", f"clip:a red square,model={tiny_clip},pretrained=none,augs=2",
        "--steps", 3, "--batch-size", 4, "--eval-every", 3, "--eval-batch", 8, "--out", out, "--quiet",
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"]["spec"].startswith("diffusers:path=") and manifest["energies"][0]["spec"].startswith("clip:a red square")
    grids = []
    for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
        result = run("sample", out, "-n", 4, "--seed", seed, "-o", tmp_path / f"{name}.npz")
        assert result.exit_code == 0, result.output
        grids.append((tmp_path / f"{name}.npz").read_bytes())
    assert grids[0] == grids[1]  # the same seed: the same x_T, the generator's noise included
    assert grids[0] != grids[2]
