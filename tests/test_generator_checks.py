"""Issue 13, bad input: a generator that decodes the wrong thing, and an attribute its images cannot carry.

Each is one line at the CLI (exit 2) naming the plugin, found before anything
is trained or written.
"""

from __future__ import annotations

import importlib
import sys

import pytest
import torch
from typer.testing import CliRunner

from promptgen.artifacts.prompt import build_generator
from promptgen.cli import app
from promptgen.composing import compose
from promptgen.core.errors import PromptgenError
from promptgen.core.generators import GeneratorOutputError, check_images, probe_generator
from promptgen.testing import install_fake_distribution, one_line_error

runner = CliRunner()

BAD_GENERATORS = '''
import torch
from torch import nn
from promptgen.core.generators import ModuleGenerator
from promptgen.core.hooks import hookimpl
from promptgen.core.protocols import GeneratorInfo
from promptgen.core.registry import ClassifierEntry, GeneratorEntry
from promptgen.core.classifiers import ModuleClassifier


class Signed(nn.Module):  # returns [-1, 1]: a common slip
    def forward(self, z):
        return torch.tanh(z[:, :1, None, None] * 3).expand(-1, 1, 28, 28)


class Small(nn.Module):  # returns 14x14 where its info promises 28x28
    def forward(self, z):
        return torch.sigmoid(z[:, :1, None, None]).expand(-1, 1, 14, 14)


class Hue(nn.Module):
    def forward(self, x):
        return x.mean((2, 3))[:, :2] * 0 + x.amax((1, 2, 3))[:, None] * torch.tensor([1.0, -1.0])


@hookimpl
def promptgen_generators():
    return [
        GeneratorEntry("signed-gen", lambda spec, options, registry: ModuleGenerator(Signed(), (4,), GeneratorInfo("signed-gen", (28, 28), 1))),
        GeneratorEntry("small-gen", lambda spec, options, registry: ModuleGenerator(Small(), (4,), GeneratorInfo("small-gen", (28, 28), 1))),
    ]


@hookimpl
def promptgen_attribute_classifiers():
    build = lambda options, registry: ModuleClassifier(Hue(), {"hair": (["red", "dark"], slice(0, 2))}, (28, 28), 3)
    return [ClassifierEntry("hair-colour", {"hair": ["red", "dark"]}, build, role="control", colour=("hair",))]
'''


@pytest.fixture
def bad_plugin(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, "promptgen-plugin-badgen", "0.3.0", "badgenplug", BAD_GENERATORS, "badgen")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    sys.modules.pop("badgenplug", None)


@pytest.mark.parametrize(
    ("gen", "words"),
    [
        ("signed-gen", ["signed-gen", "promptgen-plugin-badgen 0.3.0", "from -", "(x + 1) / 2"]),
        ("small-gen", ["small-gen", "promptgen-plugin-badgen 0.3.0", "(2, 1, 14, 14)", "(2, 1, 28, 28)"]),
    ],
)
def test_compose_refuses_a_generator_that_decodes_the_wrong_thing(bad_plugin, tmp_path, gen, words):
    out = tmp_path / "never"
    result = runner.invoke(app, ["compose", "--gen", gen, "--energy", "classifier:digit=3", "--out", str(out), "-q"])
    one_line_error(result, *words)
    assert not out.exists()


def test_sample_refuses_it_too(bad_plugin, tmp_path):
    out = tmp_path / "grid.png"
    result = runner.invoke(app, ["sample", "--gen", "signed-gen", "-n", "4", "-o", str(out)])
    one_line_error(result, "signed-gen", "[0, 1]")
    assert not out.exists()


def test_a_colour_attribute_on_greyscale_images(bad_plugin, tmp_path):
    out = tmp_path / "never"
    result = runner.invoke(app, ["compose", "--gen", "mnist", "--energy", "classifier:hair=red", "--out", str(out), "-q"])
    one_line_error(result, "'hair'", "hair-colour", "colour", "greyscale", "mnist")
    assert not out.exists()
    result = runner.invoke(app, ["compose", "--gen", "mnist", "--energy", "debias:hair", "--out", str(out), "-q"])
    one_line_error(result, "'hair'", "greyscale")


def test_check_images_passes_good_images_and_names_what_is_wrong():
    gen = build_generator("mnist")
    images = probe_generator(gen, "promptgen-core")
    assert images.shape == (2, 1, 28, 28)
    assert check_images(images, gen, 2) is images
    with pytest.raises(GeneratorOutputError, match="non-finite"):
        check_images(torch.full((2, 1, 28, 28), float("nan")), gen, 2)
    with pytest.raises(GeneratorOutputError, match="int64"):
        check_images(torch.zeros(2, 1, 28, 28, dtype=torch.long), gen, 2)
    with pytest.raises(GeneratorOutputError, match="tuple"):
        check_images((images,), gen, 2)
    assert issubclass(GeneratorOutputError, PromptgenError)


class PlainEnergy:
    """An energy a plugin might write: ``values(images)`` is all it computes."""

    default_weight, needs_fit = 1.0, False

    def __init__(self, label, values):
        self.label, self.values = label, values

    def fit(self, base):
        return {}

    def __call__(self, images, latents):
        return self.values(images)

    def to(self, device):
        return self


@pytest.mark.parametrize(
    ("name", "values", "message"),
    [
        # Written for 3-channel images: fails on the built-in greyscale digits.
        ("broken", lambda images: images.view(images.shape[0], 3, -1).sum((1, 2)),
         r"energy 'broken' .* failed on 'mnist''s images \(1×28×28\)"),
        ("nan", lambda images: images.flatten(1).sum(1) * float("nan"), r"energy 'nan' .* returned non-finite values .* must be finite"),
    ],
)
def test_an_energy_that_cannot_score_the_images_is_one_line(tmp_path, name, values, message):
    from promptgen.core.hooks import hookimpl
    from promptgen.core.registry import EnergyEntry, build_registry

    class Plugin:
        @hookimpl
        def promptgen_energies(self):
            return [EnergyEntry(name, lambda spec, options, registry: PlainEnergy(name, values))]

    reg = build_registry(extra_plugins=[(f"{name}plug", Plugin())])
    with pytest.raises(PromptgenError, match=message) as info:
        compose("mnist", [name], tmp_path / "never", registry=reg, progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "never").exists()


def test_a_decode_that_raises_is_one_line_naming_the_plugin():
    from torch import nn

    from promptgen.core.generators import ModuleGenerator
    from promptgen.core.protocols import GeneratorInfo

    class Crashes(nn.Module):
        def forward(self, z):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x4 and 8x16)\nmore detail")

    gen = ModuleGenerator(Crashes(), (4,), GeneratorInfo("crashing-gen", (28, 28), 1))
    with pytest.raises(GeneratorOutputError, match=r"generator 'crashing-gen' \(from plug 1\.0\) failed to decode 2 latents: mat1 and mat2") as info:
        probe_generator(gen, "plug 1.0")
    assert "\n" not in str(info.value)
