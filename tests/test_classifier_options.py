"""Classifier options (``ClassifierEntry.options``): ``classifier:...,path=FILE`` and ``debias:...,path=FILE``."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import promptgen.core.registry
from promptgen.cli import app
from promptgen.composing import build_energy, compose
from promptgen.core.classifiers import ModuleClassifier
from promptgen.core.errors import PromptgenError, SpecError, UnknownNameError
from promptgen.core.hooks import hookimpl
from promptgen.core.registry import build_registry
from promptgen.evaluation.evaluate import evaluate_prompt
from promptgen.plugin import ClassifierEntry, Options, option
from promptgen.testing import one_line_error, toy_generator_entry
from promptgen.training.trainer import TrainConfig

TINY = {
    "train": TrainConfig(steps=3, batch_size=8, eval_every=1, checkpoint_every=3, fit_samples=16, eval_batch=16),
    "flow": {"transforms": 1, "hidden": 8},
    "progress": False,
    "preview": 0,
}


class PathOption(Options):
    path: str | None = option(None, help="the weights file (a number: the gain)")


class TwinPath(Options):
    path: str | None = option(None, help="its own weights")


class ShadeSizeNet(nn.Module):
    """(B, 3, 8, 8) -> logits of shade (dark, light) from the mean pixel, then size (small, big), times ``gain``."""

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True) - 0.5
        s = x[:, :, 2:6, 2:6].flatten(1).mean(1, keepdim=True) - x.flatten(1).mean(1, keepdim=True)
        return self.gain * torch.cat([-m, m, -s, s], dim=1)


class FacePlugin:
    """A plugin whose classifier needs its weights (here: one number, the gain) from ``path=``.

    Without ``path`` its build fails as a download would offline. Every build's
    keyword arguments are recorded in ``calls``.
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []  # the options each build received

    def build_face(self, parsed: PathOption, registry: object) -> ModuleClassifier:
        options = parsed.model_dump(exclude_none=True)
        self.calls.append(dict(options))
        if "path" not in options:
            raise PromptgenError("toy-face has no weights; pass path=FILE")
        with open(options["path"], encoding="utf-8") as f:
            gain = float(f.read())
        heads = {"shade": (["dark", "light"], slice(0, 2)), "size": (["small", "big"], slice(2, 4))}
        return ModuleClassifier(ShadeSizeNet(gain), heads, (8, 8), 3)

    @hookimpl
    def promptgen_generators(self):
        return [toy_generator_entry()]

    @hookimpl
    def promptgen_attribute_classifiers(self):
        tint = lambda options, registry: ModuleClassifier(nn.Linear(1, 2), {"tint": (["warm", "cold"], slice(0, 2))}, (1, 1), 1)
        twin = lambda options, registry: ModuleClassifier(
            nn.Linear(1, 2), {"tone": (["flat", "glossy"], slice(0, 2))}, (1, 1), 1
        )
        return [
            ClassifierEntry(
                "toy-face",
                {"shade": ["dark", "light"], "size": ["small", "big"]},
                self.build_face,
                options=PathOption,
            ),
            ClassifierEntry("toy-tint", {"tint": ["warm", "cold"]}, tint),
            ClassifierEntry("toy-twin", {"tone": ["flat", "glossy"]}, twin, options=TwinPath),
        ]


@pytest.fixture
def plugin():
    return FacePlugin()


@pytest.fixture
def registry(plugin):
    return build_registry(extra_plugins=[("toy-face", plugin)])


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "face.txt"
    path.write_text("40")
    return path


def test_classifier_energy_passes_the_option_to_the_build(registry, plugin, weights):
    term = build_energy(f"classifier:shade=light,path={weights}", registry)
    assert plugin.calls == [{"path": str(weights)}]
    assert term.energy.label == f"classifier:shade=light,path={weights}"
    # The classifier built from the file: gain 40 on the mean pixel.
    images = torch.full((2, 3, 8, 8), 0.6)
    expected = -torch.log_softmax(torch.tensor([-0.1, 0.1]) * 40, 0)[1]
    assert torch.allclose(term.energy(images, torch.zeros(2, 4)), expected.expand(2), atol=1e-5)


def test_option_with_model_and_several_conditions(registry, plugin, weights):
    build_energy(f"classifier:path={weights},shade=light,size!=big,model=toy-face", registry)
    assert plugin.calls == [{"path": str(weights)}]


def test_without_the_option_the_build_gets_no_arguments(registry, plugin):
    with pytest.raises(PromptgenError, match="pass path=FILE"):
        build_energy("classifier:shade=light", registry)
    assert plugin.calls == [{}]


def test_debias_passes_the_option_once_per_classifier(registry, plugin, weights):
    term = build_energy(f"debias:shade,size,path={weights}", registry)
    assert plugin.calls == [{"path": str(weights)}]  # one classifier for both attributes
    energy = term.energy
    assert energy.classifiers["shade"] is energy.classifiers["size"]
    assert [b.attribute for b in energy.blocks] == ["shade", "size"]
    assert energy.features(torch.rand(3, 3, 8, 8)).shape == (3, 4)


def test_debias_with_targets_and_the_option(registry, plugin, weights):
    term = build_energy(f"debias:shade=0.3/0.7,path={weights},refit=0", registry)
    assert plugin.calls == [{"path": str(weights)}]
    assert term.energy.blocks[0].target == pytest.approx((0.3, 0.7)) and term.energy.adapt_every == 0


@pytest.mark.parametrize("energy", ["classifier:shade=light,pth=FILE", "debias:shade,pth=FILE"])
def test_misspelt_option_suggests_it(registry, plugin, energy):
    with pytest.raises(UnknownNameError) as info:
        build_energy(energy, registry)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("unknown attribute 'pth'; did you mean 'path'?")
    assert "toy-face takes options path=..." in text
    assert plugin.calls == []  # nothing was built


def test_unknown_key_lists_attributes_and_options(registry):
    with pytest.raises(UnknownNameError) as info:
        build_energy("classifier:shade=light,colour=red", registry)
    text = str(info.value)
    assert "unknown attribute 'colour'" in text and "path" in text and "toy-face takes options path=..." in text


def test_option_of_a_classifier_the_energy_does_not_use_is_unknown(registry):
    # toy-twin declares path, but classifier:tint uses toy-tint, which declares none:
    # the error is the one from before options existed.
    with pytest.raises(UnknownNameError) as info:
        build_energy("classifier:tint=warm,path=x", registry)
    text = str(info.value)
    assert text.startswith("unknown attribute 'path'") and "no installed classifier provides it" in text
    assert "takes options" not in text


def test_builtin_digit_classifiers_take_a_path_to_retrained_weights(tmp_path):
    import shutil

    import torch

    from promptgen.builtin.mnist.models import WEIGHTS_DIR
    from promptgen.core.errors import PromptgenError

    reg = build_registry()
    builtin = next(p for p in reg.plugins if p.name == "builtin")
    options = {name: dict(reg.classifiers[name].options.model_fields) for name in builtin.classifiers}
    assert set(options["mnist-digit"]) == {"path"} and set(options["mnist-digit-evaluator"]) == {"path"}
    assert options["mnist-stroke"] == {} and options["mnist-stroke-evaluator"] == {}
    with pytest.raises(PromptgenError, match=r"path='x': no such file"):
        build_energy("classifier:digit=3,path=x", reg)
    with pytest.raises(PromptgenError, match="not a built-in classifier's weights"):
        build_energy(f"classifier:digit=3,path={WEIGHTS_DIR / 'evaluator.safetensors'}", reg)
    copy = tmp_path / "retrained.safetensors"
    shutil.copy(WEIGHTS_DIR / "classifier.safetensors", copy)
    images = torch.rand(3, 1, 28, 28)
    z = torch.zeros(3, 32)
    mine, shipped = build_energy(f"debias:digit,path={copy}", reg).energy, build_energy("debias:digit", reg).energy
    assert torch.equal(mine(images, z), shipped(images, z))
    # A stroke attribute takes no path: the old message.
    with pytest.raises(UnknownNameError, match="unknown attribute 'path'"):
        build_energy("classifier:thickness=thick,path=x", reg)
    # A misspelt attribute keeps its old message.
    with pytest.raises(UnknownNameError, match="unknown attribute 'digti'; did you mean 'digit'"):
        build_energy("classifier:digti=3", reg)


@pytest.mark.parametrize(
    ("energy", "words"),
    [
        ("classifier:shade=light,path!=x", ["path is an option of classifier toy-face", "write path=VALUE"]),
        ("classifier:shade=light,path=a,path=b", ["option path is given twice"]),
        (
            "debias:shade,tone,path=x",
            ["path= is an option of both toy-face and toy-twin", "one --energy per classifier"],
        ),
        ("classifier:path=x", ["name a class to ask for"]),
        ("debias:path=x", ["name the attributes to even out"]),
    ],
)
def test_misused_options(registry, plugin, energy, words):
    with pytest.raises(SpecError) as info:
        build_energy(energy, registry)
    text = str(info.value)
    assert "\n" not in text and all(w in text for w in words), text
    assert plugin.calls == []


def test_cli_reports_a_misspelt_option_in_one_line(registry, tmp_path, monkeypatch):
    monkeypatch.setattr(promptgen.core.registry, "_REGISTRY", registry)
    result = CliRunner().invoke(
        app, ["compose", "--gen", "toy", "--energy", "classifier:shade=light,pth=x", "--out", str(tmp_path / "p"), "-q"]
    )
    one_line_error(result, "unknown attribute 'pth'", "did you mean 'path'?")
    assert not (tmp_path / "p").exists()


def test_eval_judges_with_the_options_the_energy_was_given(registry, plugin, weights, tmp_path):
    spec = f"classifier:shade=light,path={weights}"
    compose("toy", [spec], tmp_path / "light", registry=registry, **TINY)
    plugin.calls.clear()
    evaluation = evaluate_prompt(tmp_path / "light", n=32, seed=0, batch_size=16, registry=registry)
    (shade,) = evaluation.report.attributes
    # No independent evaluator: the control classifier judges, built from the same file
    # (without path= its build would fail and the row would be unavailable).
    assert shade.available and shade.evaluators == ["toy-face"] and not shade.independent
    assert {"path": str(weights)} in plugin.calls and {} not in plugin.calls
