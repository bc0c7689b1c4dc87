"""The digit panel: installed as a stranger's plugin would be, found through its entry point,
and trained from images alone."""

from __future__ import annotations

import gzip
import importlib.metadata as md
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from promptgen_plugin_digit_panel import PANEL
from promptgen_plugin_digit_panel.training import RECIPES

from promptgen.artifacts.prompt import build_generator
from promptgen.core.registry import get_registry
from promptgen.datasets import mnist
from promptgen.plugin import SpecError

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = Path(__file__).resolve().parents[1]


def test_the_panel_is_found_through_its_entry_point():
    (entry,) = [e for e in md.distribution("promptgen-plugin-digit-panel").entry_points if e.group == "promptgen"]
    assert entry.name == "digit_panel" and entry.value == "promptgen_plugin_digit_panel"
    (record,) = [p for p in get_registry().plugins if p.distribution == "promptgen-plugin-digit-panel"]
    assert record.error is None
    assert sorted(record.generators) == sorted([*(f"panel-{name}" for name in PANEL), "panel-diffusion"])
    # Only the benchmarks' and tests' generators: no classifier, no energy, and the default stays the built-in one.
    assert record.classifiers == [] and record.energies == []
    # The core's digit evaluator judges them (its features and realism check in `promptgen eval`).
    registry = get_registry()
    assert all(registry.generators[g].judges == ("mnist-digit-evaluator",) for g in record.generators)


@pytest.mark.parametrize("name", list(PANEL))
def test_each_generator_draws_digits_from_its_own_latent(name):
    gen = build_generator(f"panel-{name}")
    latent, _ = PANEL[name]
    assert gen.latent_shape == (latent,) and gen.info.channels == 1 and gen.info.resolution == (28, 28)
    z = torch.randn(6, latent, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = gen.decode(z), gen.decode(z)
    assert a.shape == (6, 1, 28, 28) and torch.equal(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    # Strokes on a dark ground, different for different latents.
    assert 0.02 < float(a.mean()) < 0.5 and float((a[0] - a[1]).abs().mean()) > 0.01


def test_the_diffusion_model_is_a_diffusers_pipeline_sampled_by_ddim():
    from promptgen_plugin_digit_panel import DIFFUSION_SAMPLE_STEPS, DIFFUSION_STEPS
    from promptgen_plugin_digit_panel.training import WEIGHTS_DIR

    folder = WEIGHTS_DIR / "diffusion"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DModel"] and (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    gen = build_generator("panel-diffusion:sample_steps=6")
    assert gen.latent_shape == (1, 28, 28) and gen.info.channels == 1 and gen.info.resolution == (28, 28)
    assert (gen.module.steps, build_generator("panel-diffusion").module.sample_steps) == (DIFFUSION_STEPS, DIFFUSION_SAMPLE_STEPS)
    z = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = gen.decode(z), gen.decode(z)
    assert a.shape == (6, 1, 28, 28) and torch.equal(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert 0.02 < float(a.mean()) < 0.5 and float((a[0] - a[1]).abs().mean()) > 0.01


def test_the_panel_takes_no_options():
    with pytest.raises(SpecError, match="unknown option 'psi'; 'panel-vae' takes no options"):
        get_registry().build_generator("panel-vae:psi=0.5")
    with pytest.raises(SpecError, match="unexpected value 'big'"):
        get_registry().build_generator("panel-vae:big")


def images_only_folder(folder: Path) -> Path:
    """An MNIST folder in the real IDX format with its images file alone: no labels to read."""
    rng = np.random.default_rng(0)
    pixels = np.zeros((mnist.NUM_IMAGES, 28, 28), dtype=np.uint8)
    rows = rng.integers(6, 22, size=mnist.NUM_IMAGES)
    pixels[np.arange(mnist.NUM_IMAGES), rows, 8:20] = 255  # a bar each, at its own height
    header = b"".join(int(x).to_bytes(4, "big") for x in (mnist.IMAGES_MAGIC, mnist.NUM_IMAGES, 28, 28))
    folder.mkdir()
    with gzip.open(folder / mnist.IMAGES_FILE, "wb", compresslevel=1) as fh:
        fh.write(header + pixels.tobytes())
    return folder


def test_the_training_scripts_read_no_labels(tmp_path):
    data = images_only_folder(tmp_path / "mnist")
    assert not (data / mnist.LABELS_FILE).exists()
    out = tmp_path / "weights"
    panel = subprocess.run(
        [sys.executable, str(PLUGIN / "scripts" / "train_panel.py"), "all", "--data", str(data), "--out", str(out),
         "--steps", "2", "--no-measure"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert panel.returncode == 0, panel.stderr
    rows = [json.loads(line) for line in panel.stdout.splitlines()]
    assert [r["name"] for r in rows] == [*RECIPES, "diffusion"]
    for name in RECIPES:
        assert (out / f"{name}.safetensors").is_file()
    # The diffusion model is a diffusers folder the diffusers plugin reads like any downloaded pipeline.
    assert get_registry().build_generator(f"diffusers:path={out / 'diffusion'},sample_steps=2").latent_shape == (1, 28, 28)
    builtin = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_builtin.py"), "generator", "--data", str(data), "--out", str(out),
         "--steps", "2"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert builtin.returncode == 0, builtin.stderr
    assert (out / "generator.safetensors").is_file()
    # The classifiers do need labels: without the file they stop with one line naming it.
    clf = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_builtin.py"), "classifier", "--data", str(data), "--out", str(out), "--epochs", "1"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert clf.returncode == 2 and mnist.LABELS_FILE in clf.stderr
