"""Plugin discovery through real entry points of (fake) installed distributions."""

import importlib

import pytest
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.core.errors import UnknownNameError
from promptgen.core.registry import build_registry
from promptgen.testing import install_fake_distribution

PLUGIN = '''
import torch
from promptgen.core.hooks import hookimpl
from promptgen.core.registry import EnergyEntry, GeneratorEntry
from promptgen.core.generators import ModuleGenerator
from promptgen.core.protocols import GeneratorInfo


class Brightness:
    label = "brightness"
    default_weight = 7.0
    needs_fit = False

    def fit(self, base):
        return {}

    def __call__(self, images, latents):
        return -images.flatten(1).mean(1)

    def to(self, device):
        return self


def build_toy(spec, options, registry):
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Sigmoid(), torch.nn.Unflatten(1, (1, 2, 2)))
    return ModuleGenerator(module, (3,), GeneratorInfo("toy", (2, 2), 1))


@hookimpl
def promptgen_generators():
    return [GeneratorEntry("toy", build_toy, summary="a 2x2 toy")]


@hookimpl
def promptgen_energies():
    return [EnergyEntry("brightness", lambda spec, options, registry: Brightness(), default_weight=7.0)]
'''


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, "promptgen-plugin-toy", "1.2.0", "toyplug", PLUGIN, "toy")
    install_fake_distribution(
        tmp_path, "promptgen-plugin-broken", "0.1.0", "brokenplug", "import a_module_that_does_not_exist\n", "broken"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path


def test_entry_point_plugin_is_discovered(fake_plugins):
    reg = build_registry()
    toy = next(p for p in reg.plugins if p.distribution == "promptgen-plugin-toy")
    assert toy.version == "1.2.0" and toy.error is None
    assert toy.generators == ["toy"] and toy.energies == ["brightness"]
    gen = reg.build_generator("toy")
    assert gen.decode(__import__("torch").zeros(2, 3)).shape == (2, 1, 2, 2)


def test_broken_plugin_is_reported_by_distribution_and_others_keep_working(fake_plugins):
    reg = build_registry()
    broken = next(p for p in reg.plugins if p.distribution == "promptgen-plugin-broken")
    assert "ModuleNotFoundError" in broken.error and "a_module_that_does_not_exist" in broken.error
    assert [p.distribution for p in reg.failures] == ["promptgen-plugin-broken"]
    # The built-in plugin and the toy plugin still work.
    assert {"mnist", "toy"} <= set(reg.generators)


def test_builtin_registers_through_its_own_entry_point():
    reg = build_registry()
    builtin = next(p for p in reg.plugins if p.name == "builtin")
    assert builtin.distribution == "promptgen-core"
    assert builtin.generators == ["mnist"]
    assert builtin.energies == ["classifier", "debias", "slant", "digit-id"]
    assert set(builtin.classifiers) == {"mnist-digit", "mnist-digit-evaluator", "mnist-stroke", "mnist-stroke-evaluator"}
    prompts = next(p for p in reg.plugins if p.name == "prompts")
    assert (prompts.distribution, prompts.generators) == ("promptgen-core", ["prompt"])


def test_name_clash_keeps_the_first_and_reports_the_second():
    import types

    from promptgen.core.hooks import hookimpl
    from promptgen.core.registry import GeneratorEntry

    clash = types.SimpleNamespace(promptgen_generators=hookimpl(lambda: [GeneratorEntry("mnist", lambda s, o, r: None)]))
    reg = build_registry(extra_plugins=[("clasher", clash)])
    record = next(p for p in reg.plugins if p.name == "clasher")
    assert "already registered by promptgen-core" in record.error
    assert reg.generators["mnist"].summary.startswith("built-in")


def test_hook_that_raises_is_reported_not_fatal():
    import types

    from promptgen.core.hooks import hookimpl

    def boom():
        raise RuntimeError("weights server down")

    bad = types.SimpleNamespace(promptgen_energies=hookimpl(boom))
    reg = build_registry(extra_plugins=[("bad", bad)])
    assert "weights server down" in next(p for p in reg.plugins if p.name == "bad").error
    assert "classifier" in reg.energies


def test_list_command_shows_plugins_and_failures(fake_plugins):
    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    import json

    rows = {r["distribution"]: r for r in json.loads(result.stdout) if r["plugin"] != "prompts"}
    assert rows["promptgen-plugin-toy"]["generators"] == ["toy"]
    assert rows["promptgen-plugin-broken"]["error"].startswith("failed to import brokenplug")
    assert rows["promptgen-core"]["generators"] == ["mnist"]


def test_unknown_names_suggest_the_closest(fake_plugins):
    reg = build_registry()
    with pytest.raises(UnknownNameError, match="unknown generator 'mnsit'; did you mean 'mnist'"):
        reg.generator("mnsit")
    with pytest.raises(UnknownNameError, match="unknown energy 'brightnes'; did you mean 'brightness'"):
        reg.energy("brightnes")
