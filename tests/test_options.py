"""Typed options: plugins declare them as pydantic models; the core checks specs and writes every error."""

from __future__ import annotations

import typing
import warnings
from typing import Literal

import annotated_types
import pytest
from pydantic import ConfigDict
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.core.errors import SpecError
from promptgen.core.options import Options, describe_option, option, parse_options
from promptgen.core.registry import build_registry, get_registry
from promptgen.core.spec import parse_spec
from promptgen.plugin import GeneratorEntry, hookimpl
from promptgen.testing import one_line_error, toy_generator_entry

runner = CliRunner()


class Toy(Options):
    psi: float = option(1.0, ge=0, le=1, help="truncation")
    steps: int = option(4, ge=1, help="how many")
    mode: Literal["mean", "sample"] = option("mean", help="decoder output")
    path: str | None = option(None, help="a file")
    label: str | None = option(None, alias="class", help="a class")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("toy:psi=2", "'toy:psi=2': psi=2 must be at most 1; psi: truncation (a number from 0 to 1, default 1)"),
        ("toy:psi=-1", "psi=-1 must be at least 0"),
        ("toy:psi=inf", "psi=inf must be a finite number"),
        ("toy:psi=nan", "psi=nan must be a finite number"),
        ("toy:psi=big", "psi='big' must be a number"),
        ("toy:steps=2.5", "steps=2.5 must be a whole number"),
        ("toy:steps=0", "steps=0 must be at least 1; steps: how many (a whole number >= 1, default 4)"),
        ("toy:mode=median", "mode='median' must be one of 'mean', 'sample'; mode: decoder output (one of mean, sample, default mean)"),
        ("toy:psy=0.5", "unknown option 'psy'; did you mean 'psi'?"),
        ("toy:zzz=1", "unknown option 'zzz'; 'toy' takes options psi=..., steps=..., mode=..., path=..., class=..."),
        ("toy:psi!=1", "psi!= is not how options are given; write psi=VALUE"),
        ("toy:psi=0.5,psi=0.6", "option 'psi' is given twice; keep one"),
        ("toy:0.5", "unexpected value '0.5'; 'toy' takes options"),
    ],
)
def test_each_mistake_gets_the_cores_one_line(spec, message):
    with pytest.raises(SpecError) as info:
        parse_options(parse_spec(spec), Toy)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_valid_options_are_typed():
    parsed = parse_options(parse_spec("toy:psi=0.5,steps=3,mode=sample,class=cat,path=a b"), Toy)
    assert parsed.options.psi == 0.5 and parsed.options.steps == 3 and parsed.options.mode == "sample"
    assert parsed.options.label == "cat" and parsed.options.path == "a b" and parsed.rest == ()
    assert parse_options(parse_spec("toy:x.pkl"), Toy, positional="path").options.path == "x.pkl"


def test_choices_among_numbers_and_aliases_read_as_typed():
    class Sizes(Options):
        size: Literal[8, 16, 32] = option(16, help="output size")
        label: str | None = option(None, alias="class", help="a class")

    assert parse_options(parse_spec("toy:size=8"), Sizes).options.size == 8
    with pytest.raises(SpecError, match="size=12 must be one of 8, 16, 32"):
        parse_options(parse_spec("toy:size=12"), Sizes)
    with pytest.raises(SpecError, match=r"'toy' takes options size=\.\.\., class=\.\.\."):
        parse_options(parse_spec("toy:zzz=1"), Sizes)
    assert describe_option(Sizes, "class") == "class: a class (text)"


def test_free_arguments_reach_the_build():
    parsed = parse_options(parse_spec("toy:digit=3,psi=0.2,thin"), Toy, free=True)
    assert parsed.options.psi == 0.2
    assert [(a.key, a.value) for a in parsed.rest] == [("digit", "3"), (None, "thin")]


def test_a_required_option_says_so():
    class Needs(Options):
        target: float = option(..., ge=0, le=1, help="the mean ink")

    with pytest.raises(SpecError, match=r"option target= is required; target: the mean ink \(a number from 0 to 1\)"):
        parse_options(parse_spec("ink"), Needs)
    assert describe_option(Needs, "target") == "target: the mean ink (a number from 0 to 1)"


def bad_values(model: type[Options]) -> dict[str, str]:
    """One value per constrained option that its model must refuse."""
    out = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        plain = args[0] if len(args) == 1 else annotation
        if typing.get_origin(plain) is Literal:
            out[info.alias or name] = "no-such-choice"
            continue
        for m in info.metadata:
            if isinstance(m, annotated_types.Le):
                out[info.alias or name] = str(m.le * 2 + 1)
            elif isinstance(m, annotated_types.Lt):
                out[info.alias or name] = str(m.lt + 1)
            elif isinstance(m, annotated_types.Ge):
                out.setdefault(info.alias or name, str(m.ge - 1))
            elif isinstance(m, annotated_types.Gt):
                out.setdefault(info.alias or name, str(m.gt - 1))
    return out


def option_cases():
    reg = get_registry()
    cases = []
    for name, entry in reg.generators.items():
        for key, value in bad_values(entry.options).items():
            cases.append(pytest.param(["sample", "--gen", f"{name}:{key}={value}", "-n", "1", "-o", "x.png"], key, id=f"gen {name} {key}"))
    for name, entry in reg.energies.items():
        example = parse_spec(entry.example or name)
        for key, value in bad_values(entry.options).items():
            kept = [a.format() for a in example.args if a.key != key]
            spec = f"{name}:" + ",".join([*kept, f"{key}={value}"])
            cases.append(pytest.param(["compose", "--gen", "mnist", "--energy", spec, "--out", "o"], key, id=f"energy {name} {key}"))
    return cases


@pytest.mark.parametrize(("argv", "key"), option_cases())
def test_every_plugins_option_errors_come_from_the_core(argv, key, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(runner.invoke(app, argv), f"{key}=")
    assert " must be " in line and f"; {key}:" in line  # what was wrong, then the option's help
    assert not (tmp_path / "o").exists() and not (tmp_path / "x.png").exists()


def test_the_registered_plugins_declare_typed_options():
    reg = get_registry()
    assert "psi" in reg.generators["stylegan2"].options.model_fields
    assert {"mode", "refit", "shifts", "realism"} <= set(reg.energies["debias"].options.model_fields)
    assert bad_values(reg.generators["stylegan2"].options)  # so the CLI cases above include StyleGAN2's


class BrokenOptionsPlugin:
    @hookimpl
    def promptgen_generators(self):
        class NoHelp(Options):
            psi: float = 1.0  # no help: refused

        build = toy_generator_entry().build
        return [GeneratorEntry("no-help", build, options=NoHelp), GeneratorEntry("not-a-model", build, options={"psi": "x"}), toy_generator_entry("fine")]


def test_a_broken_options_model_is_reported_against_its_plugin_and_the_rest_works(monkeypatch):
    reg = build_registry(extra_plugins=[("broken-options", BrokenOptionsPlugin())])
    record = next(p for p in reg.plugins if p.name == "broken-options")
    # Each broken entry is named, not only the last.
    assert "option 'psi' of NoHelp has no help" in (record.error or "") and "'not-a-model'" in (record.error or "")
    assert "no-help" not in reg.generators and "not-a-model" not in reg.generators
    assert "fine" in reg.generators and "mnist" in reg.generators
    assert reg.build_generator("fine").latent_shape == (4,)
    monkeypatch.setattr("promptgen.core.registry._REGISTRY", reg)
    result = runner.invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "broken-options" in result.output and "skipped" in result.output


def test_an_extra_allow_model_does_not_silently_accept_unknown_options():
    class Loose(Options):
        model_config = ConfigDict(extra="allow")
        psi: float = option(1.0, help="truncation")

    with pytest.raises(SpecError, match="unknown option 'bogus'"):
        parse_options(parse_spec("toy:bogus=1"), Loose)


LEGACY_PLUGIN = '''
import torch
from promptgen.hookspecs import hookimpl
from promptgen.registry import GeneratorEntry
from promptgen.generators import ModuleGenerator
from promptgen.protocols import GeneratorInfo
from promptgen.spec import expect_options


def build(spec):
    expect_options(spec, {"gain": "a number"})
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Sigmoid(), torch.nn.Unflatten(1, (1, 2, 2)))
    return ModuleGenerator(module, (3,), GeneratorInfo("old", (2, 2), 1))


@hookimpl
def promptgen_generators():
    return [GeneratorEntry("old", build, summary="written against promptgen 0.1", options={"gain": "a number"})]
'''


def test_a_plugin_written_for_0_1_still_works_and_is_told_the_new_imports(tmp_path, monkeypatch):
    import importlib
    import sys

    from promptgen.testing import install_fake_distribution

    install_fake_distribution(tmp_path, "promptgen-plugin-old", "0.1.0", "oldplug", LEGACY_PLUGIN, "old")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    sys.modules.pop("oldplug", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = build_registry()
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any("promptgen.registry.GeneratorEntry is deprecated" in m and "from promptgen.plugin import GeneratorEntry" in m for m in messages)
    assert any("promptgen.hookspecs.hookimpl" in m and "from promptgen.plugin import hookimpl" in m for m in messages)
    assert any("promptgen.spec.expect_options" in m and "promptgen.plugin.Options" in m for m in messages)
    record = next(p for p in reg.plugins if p.name == "old")
    assert record.error is None and record.generators == ["old"]
    assert reg.build_generator("old:gain=2").latent_shape == (3,)
    with pytest.raises(SpecError, match="unknown option 'loud'"):
        reg.build_generator("old:loud=1")  # the 0.1 plugin's own check still runs


def test_list_fits_80_columns_without_breaking_names():
    result = runner.invoke(app, ["list"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    reg = get_registry()
    for name in [*reg.generators, *reg.energies, *reg.classifiers]:
        assert any(name in line for line in lines), name


def test_list_name_shows_options_defaults_ranges_and_an_example():
    result = runner.invoke(app, ["list", "debias"], env={"COLUMNS": "120"}, terminal_width=120)
    assert result.exit_code == 0, result.output
    text = result.output
    for expected in ("energy debias", "--energy debias:digit,thickness", "default weight", "refit", "a whole number >= 0", "shifts", "from 0 to 64", "one of auto, tilt, mixture"):
        assert expected in text, expected
    result = runner.invoke(app, ["list", "stylegan2", "--json"])
    [entry] = __import__("json").loads(result.output)
    psi = next(o for o in entry["options"] if o["name"] == "psi")
    assert entry["kind"] == "generator" and psi["takes"] == "a number from 0 to 1" and psi["default"] == "1"
    assert "class" in {o["name"] for o in entry["options"]}  # as users type it


def test_list_of_an_unknown_name_is_one_line():
    one_line_error(runner.invoke(app, ["list", "debaisx"]), "unknown generator, energy or classifier 'debaisx'")


def test_a_generator_spec_with_options_builds_with_them():
    class Gain(Options):
        gain: float = option(1.0, gt=0, help="multiplies the latent")

    seen = {}

    def build(spec, options, registry):
        seen["gain"] = options.gain
        return toy_generator_entry().build(spec, options, registry)

    class Plugin:
        @hookimpl
        def promptgen_generators(self):
            return [GeneratorEntry("gainy", build, options=Gain)]

    reg = build_registry(extra_plugins=[("gainy", Plugin())])
    reg.build_generator("gainy:gain=2.5")
    assert seen == {"gain": 2.5}
    with pytest.raises(SpecError, match="gain=0 must be greater than 0"):
        reg.build_generator("gainy:gain=0")
