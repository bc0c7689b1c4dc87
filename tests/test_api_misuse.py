"""Issue 25: the public Python API raises promptgen's own one-line errors for every misuse, never a
TypeError, AttributeError, IndexError, pydantic ValidationError or an error from inside torch.

Each case is a call a user could type; each must raise a :class:`promptgen.PromptgenError` whose message is
one line, names the function or the settings model, and (where an argument was wrong) the argument.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import promptgen
from promptgen.composing import compose as inner_compose
from promptgen.testing.tally import record
from promptgen.training.trainer import TrainConfig


@pytest.fixture(scope="module")
def prompt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("api") / "three"
    inner_compose("mnist", ["classifier:digit=3"], out, train=TrainConfig(steps=2, batch_size=8, eval_batch=8, check_samples=0),
                  flow={"transforms": 2, "hidden": 8}, progress=False, preview=0)
    return out


def cases(p: Path):
    """(call, words its message must hold), the issue's examples first, then more of each kind."""
    big = 2**70
    return [
        (lambda: promptgen.sweep(p, 5), ["sweep=5", "valid string"]),
        (lambda: promptgen.sample(123), ["source=123", "a str, a Path or a Generator"]),
        (lambda: promptgen.sample(p, seed=big), ["seed=", "less than or equal"]),
        (lambda: promptgen.sample(p, seed="x"), ["seed='x'", "valid integer"]),
        (lambda: promptgen.sample(p, condition={"slant": "abc"}), ["condition=", "slant", "valid number"]),
        (lambda: promptgen.sample(p, condition={"slant": float("nan")}), ["condition=", "finite"]),
        (lambda: promptgen.compose("mnist", ["classifier:digit=3"], train={"steps": -1}), ["steps=-1"]),
        (lambda: promptgen.compose("mnist", ["classifier:digit=3"], conditions=[1]), ["conditions=[1]", "valid string"]),
        (lambda: promptgen.compose("mnist", ["classifier:digit=3"], flow="x"), ["flow='x'", "dictionary"]),
        (lambda: promptgen.TrainConfig(steps=-1), ["TrainConfig", "steps=-1"]),
        (lambda: promptgen.load_prompt(None), ["path=None"]),
        (lambda: promptgen.info(123), ["path=123"]),
        (lambda: promptgen.compose("mnist", ["classifier:digit=3"], out=123), ["out=123"]),
        (lambda: promptgen.sample(p, n=0), ["n=0", "greater than or equal to 1"]),
        (lambda: promptgen.sample(p, n=-1), ["n=-1"]),
        # more of each kind
        (lambda: promptgen.sample(p, n=2.5), ["n=2.5"]),
        (lambda: promptgen.sample(p, n=10**9), ["n=1000000000", "less than or equal"]),
        (lambda: promptgen.sample(p, device="gpu"), ["device='gpu'", "e.g. device="]),
        (lambda: promptgen.sample(p, device=0), ["device=0"]),
        (lambda: promptgen.sample(p, condition=[0.1]), ["condition=[0.1]"]),
        (lambda: promptgen.sample(p, condition={"slant": float("inf")}), ["finite"]),
        (lambda: promptgen.sample(p, condition={"slant": 1e30}), ["less than or equal"]),
        (lambda: promptgen.sample(p, nosuch=1), ["unexpected keyword argument 'nosuch'"]),
        (lambda: promptgen.sample(), ["missing a required argument: 'source'"]),
        (lambda: promptgen.sample(p, 2, 0, "cpu", "flow", None, 3), ["too many positional"]),
        (lambda: promptgen.sample(p, method="rejection", steps=-1), ["steps=-1"]),
        (lambda: promptgen.sample(p, method="langevin", step_size=float("nan")), ["step_size=nan"]),
        (lambda: promptgen.sample(p, method="nosuch"), ["unknown method 'nosuch'"]),
        (lambda: promptgen.sample("nosuch-generator"), ["nosuch-generator"]),
        (lambda: promptgen.sample(Path("mnist")), ["mnist"]),  # a Path is always a folder
        (lambda: promptgen.sample(p, condition={"yaw": 0.1}), ["trained without conditions"]),
        (lambda: promptgen.sample_with_cost(p, batch_size=0), ["batch_size=0"]),
        (lambda: promptgen.sample_with_cost(p, max_draws="many"), ["max_draws='many'"]),
        (lambda: promptgen.sweep(p, "slant=0:1:3"), ["trained without conditions"]),
        (lambda: promptgen.sweep(p, "slant=0:1:3", n=0), ["n=0"]),
        (lambda: promptgen.sweep("mnist", "slant=0:1:3"), ["base generator"]),
        (lambda: promptgen.sweep(None, "slant=0:1:3"), ["source=None"]),
        (lambda: promptgen.compose(123, ["classifier:digit=3"]), ["generator=123"]),
        (lambda: promptgen.compose("mnist", [3]), ["energies=[3]"]),
        (lambda: promptgen.compose("mnist", ["classifier:digit=3"], train=5), ["train=5"]),
        (lambda: promptgen.compose("mnist", ["classifier:digit=3"], train={"nosuch": 1}), ["nosuch"]),
        (lambda: promptgen.compose("mnist", ["classifier:digit=3"], train={"lr": float("nan")}), ["lr"]),
        (lambda: promptgen.compose("mnist", ["classifier:digit=3"], preview="x"), ["preview='x'"]),
        (lambda: promptgen.compose("mnist", ["classifier:digit=3"], device=["cpu"]), ["device=['cpu']"]),
        (lambda: promptgen.compose("mnist", ["classifier:digit=3"], realism=None), ["realism=None"]),
        (lambda: promptgen.compose("mnist", ["classifier:digit=3"], flow={"hidden": 0}), ["hidden"]),
        (lambda: promptgen.compose("mnist", ["classifier:digit=3"], flow={"nosuch": 1}), ["nosuch"]),
        (lambda: promptgen.compose("mnist", ["classifier:digit=3"], nosuch=1), ["unexpected keyword argument"]),
        (lambda: promptgen.TrainConfig(seed=2**70), ["TrainConfig", "seed="]),
        (lambda: promptgen.TrainConfig(steps="x"), ["TrainConfig", "steps='x'"]),
        (lambda: promptgen.TrainConfig(nosuch=1), ["TrainConfig", "nosuch"]),
        (lambda: promptgen.FlowConfig(features=1), ["FlowConfig", "features=1"]),
        (lambda: promptgen.load_prompt(123), ["path=123"]),
        (lambda: promptgen.load_prompt("no/such/folder"), ["no/such/folder"]),
        (lambda: promptgen.info(None), ["path=None"]),
        (lambda: promptgen.evaluate(p, n=1), ["n=1"]),
        (lambda: promptgen.evaluate(p, attrs="digit"), ["attrs='digit'", "a list or a tuple"]),
        (lambda: promptgen.evaluate(p, seed=None), ["seed=None"]),
        (lambda: promptgen.evaluate(123), ["prompt=123"]),
        (lambda: promptgen.report(p, out=None), ["out=None"]),
        (lambda: promptgen.report(p, n="x"), ["n='x'"]),
        (lambda: promptgen.report(p, batch_size=-3), ["batch_size=-3"]),
    ]


def test_every_misuse_of_the_api_is_one_promptgen_line(prompt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # compose's default out folder, should a case get that far
    failures = []
    all_cases = cases(prompt)
    for i, (call, words) in enumerate(all_cases):
        problem = None
        try:
            call()
        except promptgen.PromptgenError as exc:
            message = str(exc)
            if len(message.splitlines()) != 1 or not all(w in message for w in words):
                problem = f"not the expected line: {message}"
        except Exception as exc:  # noqa: BLE001 (what this test looks for)
            problem = f"foreign exception {type(exc).__name__}: {exc}"
        else:
            problem = "no error"
        record("Python API", f"case {i}: {words[0]}", [problem] if problem else [])
        if problem:
            failures.append((i, words, problem))
    assert not failures, failures
    assert len(all_cases) >= 60
    assert not (tmp_path / "runs").exists()  # nothing was written by any of them


def test_good_calls_still_work_and_a_dict_is_a_train_config(prompt, tmp_path):
    images = promptgen.sample(str(prompt), n="3", seed=1)  # pydantic's conversions: "3" is 3
    assert tuple(images.shape) == (3, 1, 28, 28)
    assert promptgen.sample(prompt, n=3, seed=1).equal(images)
    assert promptgen.sample("mnist", n=2).shape == (2, 1, 28, 28)
    made = promptgen.compose("mnist", ["classifier:digit=3"], tmp_path / "d", train={"steps": 1, "batch_size": 4, "eval_batch": 4,
                             "check_samples": 0}, flow={"transforms": 2, "hidden": 8}, progress=False, preview=0)
    assert made.manifest.training.config.steps == 1
    # One spec as a string is one spec (issue 26), not a list of one-character specs.
    one = promptgen.compose("mnist", "classifier:digit!=1", tmp_path / "one", train={"steps": 1, "batch_size": 4, "eval_batch": 4,
                            "check_samples": 0}, flow={"transforms": 2, "hidden": 8}, progress=False, preview=0)
    assert [e.spec for e in one.manifest.energies] == ["classifier:digit!=1"]


def test_a_spec_and_a_prompt_folder_are_told_apart_by_one_rule(prompt, tmp_path, monkeypatch):
    """A spec whose options hold a path (biggan:path=/abs/dir) is a spec; an existing folder is a prompt."""
    from promptgen.artifacts.prompt import is_generator_spec

    assert is_generator_spec("mnist") and is_generator_spec("mnist:noise=0.5") and is_generator_spec("prompt:/x")
    assert is_generator_spec("biggan:path=/abs/dir") and is_generator_spec("stylegan2:path=/a/b/ffhq.pkl")
    assert not is_generator_spec(str(prompt)) and not is_generator_spec("runs/three") and not is_generator_spec("nosuch")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist").mkdir()  # a folder named like a generator is a folder
    assert not is_generator_spec("mnist")
