"""Issue 26: hints that fit what is installed.

- an unknown name a known distribution provides gets its install line (the zoo table in the core);
- a prompt whose plugin is missing names the distribution and version its manifest records;
- condition hints name the installed energies that read a condition, not a face plugin for a digit prompt;
- "did you mean" offers only names that are close.
"""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptgen.artifacts.prompt import load_prompt
from promptgen.cli import app
from promptgen.composing import compose
from promptgen.composing.terms import rebuild_terms
from promptgen.core.errors import UnknownNameError, closest
from promptgen.core.registry import Registry, build_registry, get_registry, reset_registry
from promptgen.core.zoo import ON_PYPI, ZOO, install_command, provider_of
from promptgen.testing import install_fake_distribution, one_line_error
from promptgen.training.trainer import TrainConfig

runner = CliRunner()
TINY = {
    "train": TrainConfig(steps=2, batch_size=8, eval_every=2, checkpoint_every=2, fit_samples=16, eval_batch=16, check_samples=0),
    "flow": {"transforms": 1, "hidden": 8},
    "progress": False,
    "preview": 0,
}


def core_only() -> Registry:
    """The registry of a machine with promptgen-core alone."""
    full = get_registry()
    core = [p for p in full.plugins if p.distribution == "promptgen-core"]
    keep = {kind: {n for p in core for n in getattr(p, kind)} for kind in ("generators", "energies", "classifiers")}
    return Registry(
        generators={k: v for k, v in full.generators.items() if k in keep["generators"]},
        energies={k: v for k, v in full.energies.items() if k in keep["energies"]},
        classifiers={k: v for k, v in full.classifiers.items() if k in keep["classifiers"]},
        plugins=core,
    )


def test_the_zoo_names_exactly_what_each_installed_distribution_registers():
    registry = build_registry()
    installed = {p.distribution: p for p in registry.plugins if p.distribution != "promptgen-core"}
    zoo = {d.name: d for d in ZOO}
    # Every plugin of this repository is in the table (scripts/test.sh installs them all) ...
    assert set(installed) - {"unknown"} <= set(zoo), f"add to promptgen.core.zoo.ZOO: {sorted(set(installed) - set(zoo))}"
    for name, dist in zoo.items():
        record = installed.get(name)
        assert record is not None, f"{name} is in the zoo but not installed; install it (scripts/test.sh does)"
        # ... and each row lists exactly the names the plugin registers.
        assert set(record.generators) == set(dist.generators), name
        assert set(record.energies) == set(dist.energies), name
        assert set(record.classifiers) == set(dist.classifiers), name
        assert (Path(__file__).parents[1] / dist.folder / "pyproject.toml").is_file(), dist.folder
        assert md.version(name)


@pytest.mark.parametrize(
    ("kind", "name", "dist"),
    [("energy", "clip", "promptgen-plugin-clip"), ("generator", "stylegan2-ffhq", "promptgen-plugin-stylegan2"),
     ("classifier", "fairface", "promptgen-plugin-fairface"), ("generator", "nvae-ffhq-256", "promptgen-plugin-nvae")],
)  # fmt: skip
def test_a_name_a_known_distribution_provides_gets_its_install_line(kind, name, dist):
    with pytest.raises(UnknownNameError) as info:
        getattr(core_only(), kind)(name)
    text = str(info.value)
    assert text.startswith(f"unknown {kind} {name!r}; {dist} provides it and is not installed")
    folder = provider_of(kind, name).folder
    # Not on PyPI yet: the line names the clone's folder and the wheelhouse, never a bare PyPI install.
    assert dist not in ON_PYPI
    assert f"pip install ./{folder}" in text and f"pip install --find-links dist {dist}" in text
    assert "\n" not in text


def test_a_near_name_of_a_distribution_not_installed_is_offered_with_its_install_line():
    text = str(core_only().unknown("generator", "stylegan"))
    assert "did you mean 'stylegan2'?" in text and "promptgen-plugin-stylegan2 provides it" in text
    # The installed names that are not close are not offered (0.5 offered 'slant' for 'stylegan').
    assert "slant" not in text and "debias" not in str(core_only().unknown("energy", "deca"))


def test_the_cli_says_how_to_install_a_missing_energy(monkeypatch):
    import promptgen.core.registry as registry_module

    monkeypatch.setattr(registry_module, "_REGISTRY", core_only())
    result = runner.invoke(app, ["compose", "--energy", "clip:a smiling face", "--out", "unused"])
    one_line_error(result, "unknown energy 'clip'; promptgen-plugin-clip provides it", "pip install ./plugins/promptgen-plugin-clip")


def test_list_of_an_unknown_name_does_not_suggest_an_unrelated_one():
    result = runner.invoke(app, ["list", "nosuch"])
    message = one_line_error(result, "unknown generator, energy or classifier 'nosuch'")
    assert "did you mean" not in message
    assert "arcface-id" not in message  # not the whole list of 50 names either


def test_closest_keeps_typos_and_drops_unrelated_names():
    assert closest("clasifier", ["classifier", "clip"]) == ["classifier"]
    assert closest("inc", ["ink"]) == ["ink"] and closest("psy", ["psi"]) == ["psi"]
    assert closest("stylegan", ["slant", "debias"]) == [] and closest("deca", ["debias"]) == []


def test_install_command_pins_a_recorded_version_and_names_unknown_distributions_plainly():
    assert "promptgen-plugin-ink==0.2.0" in install_command("promptgen-plugin-ink", "0.2.0")
    assert install_command("acme-energies", "1.4.0").startswith("pip install acme-energies==1.4.0")


def test_a_prompt_whose_energy_plugin_is_missing_names_the_distribution_and_version_recorded(tmp_path):
    compose("mnist", ["ink:target=0.2"], tmp_path / "p", **TINY)
    manifest = load_prompt(tmp_path / "p").manifest
    recorded = manifest.energies[0].plugin
    assert recorded == f"promptgen-plugin-ink {md.version('promptgen-plugin-ink')}"
    with pytest.raises(UnknownNameError) as info:
        rebuild_terms(manifest.energies, core_only())
    text = str(info.value)
    assert f"from {recorded}, which is not installed here" in text
    assert f"promptgen-plugin-ink=={md.version('promptgen-plugin-ink')}" in text


PLUGIN = """
import torch
from promptgen.core.hooks import hookimpl
from promptgen.core.registry import GeneratorEntry
from promptgen.core.generators import ModuleGenerator
from promptgen.core.protocols import GeneratorInfo


def build(spec, options, registry):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 28 * 28), torch.nn.Sigmoid(), torch.nn.Unflatten(1, (1, 28, 28)))
    return ModuleGenerator(module, (4,), GeneratorInfo("acme", (28, 28), 1))


@hookimpl
def promptgen_generators():
    return [GeneratorEntry("acme-gan", build, summary="a stranger's generator")]
"""


def test_a_prompt_whose_generator_plugin_is_missing_names_it_at_eval_and_sample(tmp_path, monkeypatch):
    plugin_root = tmp_path / "site"
    plugin_root.mkdir()
    install_fake_distribution(plugin_root, "acme-generators", "1.4.0", "acmegen", PLUGIN, "acme")
    with monkeypatch.context() as m:
        m.syspath_prepend(str(plugin_root))
        reset_registry()
        compose("acme-gan", ["classifier:digit=3"], tmp_path / "p", **TINY)
    reset_registry()  # the plugin is gone
    for command in (["sample", str(tmp_path / "p"), "-n", "2", "-o", str(tmp_path / "x.png")], ["eval", str(tmp_path / "p"), "-n", "8"]):
        result = runner.invoke(app, command)
        one_line_error(result, "unknown generator 'acme-gan'", "from acme-generators 1.4.0", "pip install acme-generators==1.4.0")
    assert not (tmp_path / "x.png").exists()


def test_a_condition_hint_names_the_installed_reader_of_that_condition(tmp_path):
    result = runner.invoke(app, ["compose", "--energy", "classifier:digit=3", "--cond", "slant=-0.3:0.3", "--out", str(tmp_path / "r")])
    message = one_line_error(result, "--cond slant", "--energy slant --cond slant=-0.3:0.3")
    assert "deca-pose" not in message


def test_a_twin_energy_alone_is_pointed_at_a_reader_that_exists_with_its_range(tmp_path):
    result = runner.invoke(app, ["compose", "--energy", "digit-id", "--out", str(tmp_path / "r")])
    message = one_line_error(result, "needs one", "e.g. --energy slant --cond slant=-0.3:0.3")
    # The suggestion is a digit energy of promptgen-core, listed before any face plugin's reader.
    assert "--cond yaw" not in message
    assert message.index("slant (slant)") < message.index("deca-pose") if "deca-pose" in message else True


def test_the_suggested_command_works(tmp_path):
    # The hint's own suggestion, typed as given, gets past the check that refused the first command.
    result = runner.invoke(
        app,
        ["compose", "--energy", "digit-id", "--energy", "slant", "--cond", "slant=-0.3:0.3", "--steps", "2", "--batch-size", "8",
         "--eval-batch", "8", "--transforms", "1", "--hidden", "8", "--check-samples", "0", "--out", str(tmp_path / "r"), "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
