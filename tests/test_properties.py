"""Issue 6, property tests: arbitrary spec strings and mutated manifests never escape as anything but one line.

Hypothesis runs derandomised (the same examples each run, no example database
in the tree) and with few examples, so the suite stays fast and repeatable.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from promptgen.artifacts.manifest import MANIFEST
from promptgen.artifacts.prompt import Prompt, build_generator, load_prompt
from promptgen.cli import app
from promptgen.composing import build_energy, compose
from promptgen.core.errors import PromptgenError, SpecError
from promptgen.core.registry import get_registry
from promptgen.core.spec import Spec, parse_spec
from promptgen.testing import one_line_error
from promptgen.training.trainer import TrainConfig

runner = CliRunner()
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Text built from what the grammar gives meaning to, plus what it must refuse or keep verbatim.
TOKENS = [
    "mnist", "classifier", "debias", "prompt", "clip", "digit", "thickness", "path", "3", "1", "0.5", "1e2", "-5", "nan", "inf",
    ":", ",", "=", "!=", "!", "@", '"', "'", "\\", " ", "  ", "\t", "\n", "_", "-", ".", "/", "é", "数字", "→", "😀", "\u2028",
    "\x1b", "\x00", "[/red]", "a b",
]
grammar_text = st.lists(st.sampled_from(TOKENS), max_size=12).map("".join)
any_text = st.one_of(st.text(max_size=30), grammar_text)


def assert_one_line(exc: BaseException) -> None:
    text = str(exc)
    assert text and len(text.splitlines()) == 1 and "\n" not in text, repr(text)


@SETTINGS
@given(any_text)
def test_spec_round_trips_or_is_one_line_spec_error(text):
    try:
        spec = parse_spec(text)
    except SpecError as exc:
        assert_one_line(exc)
        return
    assert isinstance(spec, Spec)
    again = parse_spec(spec.format())
    assert again == spec
    assert again.format() == spec.format()


def not_a_registered_energy(text: str) -> bool:
    try:
        return parse_spec(text).name not in get_registry().energies
    except SpecError:
        return True


@SETTINGS
@given(
    gen=st.one_of(any_text, st.tuples(st.sampled_from(["mnist", "prompt", "mnsit"]), st.sampled_from([":", "@", ""]), grammar_text).map("".join)),
    energy=st.one_of(any_text, st.tuples(st.sampled_from(["clasifier", "debiass", "zz"]), grammar_text).map("".join)).filter(
        not_a_registered_energy
    ),
)
def test_compose_with_arbitrary_specs_is_one_line_error(gen, energy, tmp_path_factory):
    # The energy never names a registered energy (so nothing trains); the generator may be anything, valid or not.
    out = tmp_path_factory.mktemp("compose") / "p"
    result = runner.invoke(app, ["compose", "--gen", gen, "--energy", energy, "--steps", "1", "--out", str(out), "-q"])
    one_line_error(result)
    assert not out.exists()


@SETTINGS
@given(
    kind=st.sampled_from(["generator", "energy"]),
    name=st.sampled_from(["mnist", "prompt", "classifier", "debias"]),
    args=grammar_text,
)
def test_known_names_with_arbitrary_arguments_build_or_fail_in_one_line(kind, name, args):
    # What compose would build from a spec, without training: arguments the plugins must refuse cleanly.
    spec = f"{name}:{args}" if args else name
    try:
        built = build_generator(spec) if kind == "generator" else build_energy(spec)
    except PromptgenError as exc:
        assert_one_line(exc)
        return
    assert built is not None


# -- mutated manifests ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prompt_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("props") / "three"
    compose("mnist", ["classifier:digit=3"], out, train=TrainConfig(steps=2, eval_every=1, eval_batch=8, batch_size=8),
            preview=0, progress=False)
    return out


@pytest.fixture(scope="module")
def scratch(prompt_dir, tmp_path_factory) -> Path:
    """A copy whose manifest each example overwrites (the weights stay as trained)."""
    return Path(shutil.copytree(prompt_dir, tmp_path_factory.mktemp("scratch") / "copy"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from([0, 1, 2, -1, 10**30, "mnist", "../../etc/passwd", "/etc/passwd", "prompt:/", "spline-coupling", [32], [4, 8]]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into a JSON value (the root excluded)."""
    out = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for k, v in items:
        out.append((*prefix, k))
        out.extend(paths(v, (*prefix, k)))
    return out


def mutate(manifest: dict, data: st.DataObject) -> str:
    """Delete keys, replace values, add keys, change the version, or cut the text short."""
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        action = data.draw(st.sampled_from(["delete", "replace", "replace", "add", "version"]), label="action")
        if action == "version":
            manifest["format_version"] = data.draw(st.one_of(st.integers(-2, 5), json_values), label="version")
            continue
        where = data.draw(st.sampled_from(paths(manifest)), label="path") if paths(manifest) else ()
        parent: Any = manifest
        for k in where[:-1]:
            parent = parent[k]
        if not where:
            continue
        key = where[-1]
        if action == "delete":
            del parent[key]
        elif action == "replace":
            parent[key] = data.draw(json_values, label="value")
        elif isinstance(parent[key], dict):
            parent[key][data.draw(st.text(max_size=8), label="new key")] = data.draw(json_values, label="value")
    text = json.dumps(manifest, ensure_ascii=False)
    if data.draw(st.booleans(), label="truncate"):
        text = text[: data.draw(st.integers(0, len(text)), label="cut at")]
    return text


@SETTINGS
@given(data=st.data())
def test_mutated_manifest_loads_or_is_one_line_error(prompt_dir, scratch, data):
    manifest = json.loads((prompt_dir / MANIFEST).read_text())
    (scratch / MANIFEST).write_text(mutate(manifest, data), encoding="utf-8")
    try:
        prompt = load_prompt(scratch)
    except PromptgenError as exc:
        assert_one_line(exc)
    else:
        assert isinstance(prompt, Prompt)
        assert math.isfinite(float(prompt.decode(torch.zeros(1, *prompt.latent_shape)).mean()))
    result = runner.invoke(app, ["info", str(scratch)])
    if result.exit_code != 0:
        one_line_error(result)
