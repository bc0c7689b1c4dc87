"""The plugin as installed: discovered through its entry point, used by the classifier and debias energies."""

from __future__ import annotations

import importlib.metadata as md
import json
import subprocess
import sys

import pytest
import torch
from promptgen_plugin_fairface.attributes import AGES, GENDERS, RACES
from typer.testing import CliRunner

from promptgen.artifacts.prompt import load_prompt
from promptgen.cli import app
from promptgen.composing import build_energy, compose
from promptgen.core.registry import build_registry
from promptgen.evaluation.evaluate import evaluate_prompt
from promptgen.training.trainer import TrainConfig


def test_discovered_through_its_entry_point():
    reg = build_registry()
    record = next(p for p in reg.plugins if p.distribution == "promptgen-plugin-fairface")
    assert record.error is None and record.name == "fairface"
    assert record.version == md.version("promptgen-plugin-fairface")
    assert record.classifiers == ["fairface"]
    rows = {r["distribution"]: r for r in json.loads(CliRunner().invoke(app, ["list", "--json"]).stdout)}
    assert rows["promptgen-plugin-fairface"]["classifiers"] == ["fairface"]


def test_classifier_energy_with_path(weights_file):
    term = build_energy(f"classifier:gender=female,path={weights_file}", build_registry())
    energy = term.energy
    assert energy.label == f"classifier:gender=female,path={weights_file}"
    (target,) = energy.targets()
    assert target.attribute == "gender" and target.asked == ("Female",)
    images = torch.rand(2, 3, 96, 96, requires_grad=True)
    values = energy(images, torch.zeros(2, 8))
    expected = -energy.classifier.log_probs(images)["gender"][:, 1]
    assert values.shape == (2,) and torch.allclose(values, expected)
    values.sum().backward()
    assert images.grad.abs().sum() > 0


def test_debias_over_all_three_attributes_with_path(weights_file):
    term = build_energy(f"debias:race,gender,age,path={weights_file}", build_registry())
    energy = term.energy
    assert [b.labels for b in energy.blocks] == [RACES, GENDERS, AGES]
    assert energy.classifiers["race"] is energy.classifiers["gender"] is energy.classifiers["age"]
    with torch.no_grad():
        phi = energy.features(torch.rand(2, 3, 64, 64))
    assert phi.shape == (2, 18)
    # Each block is a probability vector.
    assert torch.allclose(torch.stack([phi[:, :7].sum(1), phi[:, 7:9].sum(1), phi[:, 9:].sum(1)]), torch.ones(3, 2))


def test_a_class_name_typo_is_suggested(weights_file):
    result = CliRunner().invoke(
        app, ["compose", "--energy", f"classifier:race=East Asain,path={weights_file}", "--out", "x"]
    )
    assert result.exit_code == 2 and "did you mean 'East Asian'" in result.output


def test_compose_and_eval_with_a_local_weights_file(weights_file, tmp_path):
    """A few training steps on the built-in digits (grey, 28×28: upsampled to 224 RGB), then eval."""
    spec = f"classifier:gender=female,path={weights_file}"
    tiny = TrainConfig(steps=2, batch_size=4, eval_every=1, checkpoint_every=2, fit_samples=8, eval_batch=8)
    compose("mnist", [spec], tmp_path / "p", train=tiny, flow={"transforms": 1, "hidden": 8}, progress=False, preview=0)
    prompt = load_prompt(tmp_path / "p")
    assert [e.spec for e in prompt.manifest.energies] == [spec]
    report = evaluate_prompt(tmp_path / "p", n=8, seed=0, batch_size=8).report
    (gender,) = report.attributes
    assert gender.available and gender.evaluators == ["fairface"] and not gender.independent
    assert len(gender.prompt.histogram) == 2 and sum(gender.prompt.histogram) == pytest.approx(1)


def test_registering_imports_no_torchvision():
    # `promptgen list` and every command import all plugins: the model must wait for build().
    code = "import sys; from promptgen.core.registry import build_registry; build_registry(); print('torchvision' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
