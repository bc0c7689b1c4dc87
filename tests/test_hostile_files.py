"""Issue 6: prompt folders and training checkpoints from strangers.

Loading never runs code, never reads outside the prompt folder, never hangs on
a special file, and fails on anything broken with one ArtifactError line, the
same through ``load_prompt``, ``promptgen sample`` and ``promptgen info``; the
damaged folder is left exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from promptgen.artifacts.manifest import FORMAT_VERSION, MANIFEST, WEIGHTS, check_prompt, read_manifest
from promptgen.artifacts.prompt import load_prompt
from promptgen.cli import app
from promptgen.composing import compose
from promptgen.core.errors import ArtifactError, PromptgenError
from promptgen.testing import one_line_error
from promptgen.training.checkpoint import load_checkpoint
from promptgen.training.flow import CouplingFlow, FlowConfig
from promptgen.training.trainer import TrainConfig

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def prompt_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hostile") / "three"
    compose(
        "mnist",
        ["classifier:digit=3"],
        out,
        train=TrainConfig(steps=2, eval_every=1, eval_batch=8, batch_size=8, fit_samples=16, checkpoint_every=1),
        flow={"transforms": 2, "hidden": 8},
        preview=0,
        progress=False,
    )
    return out


@pytest.fixture
def copy(prompt_dir, tmp_path) -> Path:
    return Path(shutil.copytree(prompt_dir, tmp_path / "copy"))


def edit_manifest(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        m = json.loads((folder / MANIFEST).read_text())
        change(m)
        (folder / MANIFEST).write_text(json.dumps(m))

    return apply


def setter(*path_and_value):
    *path, value = path_and_value

    def change(m: dict) -> None:
        for key in path[:-1]:
            m = m[key]
        m[path[-1]] = value

    return edit_manifest(change)


def edit_weights(change: Callable[[dict[str, torch.Tensor]], None], keep_checksum: bool = False) -> Callable[[Path], None]:
    """Rewrite the weights; the manifest's checksum is dropped too (as in a hand-made prompt), so the
    checks on the tensors themselves are what refuses them, unless ``keep_checksum``."""

    def apply(folder: Path) -> None:
        tensors = load_file(str(folder / WEIGHTS))
        change(tensors)
        save_file(tensors, str(folder / WEIGHTS))
        if not keep_checksum:
            edit_manifest(lambda m: m.pop("weights_sha256"))(folder)

    return apply


def flip_a_data_byte(folder: Path) -> None:
    """One bit of one weight flipped: still a valid safetensors file of finite float32s."""
    data = bytearray((folder / WEIGHTS).read_bytes())
    data[-3] ^= 0x01  # a low mantissa bit of the last number
    (folder / WEIGHTS).write_bytes(bytes(data))


def write_bytes(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes(data)


def truncate(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes((folder / name).read_bytes()[: (folder / name).stat().st_size // 2])


def remove(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


def link_outside(name: str) -> Callable[[Path], None]:
    """Replace ``name`` by a symlink to an identical copy outside the folder."""

    def apply(folder: Path) -> None:
        outside = folder.parent / f"outside-{name}"
        shutil.copy(folder / name, outside)
        (folder / name).unlink()
        (folder / name).symlink_to(outside)

    return apply


def fifo(name: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        (folder / name).unlink()
        os.mkfifo(folder / name)

    return apply


def sparse(name: str, size: int) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        with open(folder / name, "r+b") as f:
            f.truncate(size)

    return apply


def poke(key: str, value: float) -> Callable[[dict[str, torch.Tensor]], None]:
    def change(t: dict[str, torch.Tensor]) -> None:
        t[key] = t[key].clone()
        t[key].view(-1)[0] = value

    return change


FIRST_WEIGHT = "transform.transforms.0.hyper.0.weight"
MASK = "transform.transforms.0.mask"


def flip_mask(t: dict[str, torch.Tensor]) -> None:
    t[MASK] = t[MASK].clone()
    t[MASK][0] = ~t[MASK][0]


def huge_flow(m: dict) -> None:
    n = 10**12  # a flow of ~10^16 numbers: building it would exhaust memory
    m["flow"]["features"] = n
    m["flow"]["latent_shape"] = [n]
    m["generator"]["latent_shape"] = [n]


def one_line_artifact_error(load: Callable[[Path], object], path: Path, words: list[str]) -> str:
    """``load(path)`` raises an ArtifactError of one line that contains each of ``words``."""
    with pytest.raises(ArtifactError) as err:
        load(path)
    text = str(err.value)
    assert len(text.splitlines()) == 1 and "\n" not in text, text
    for w in words:
        assert w in text, (w, text)
    return text


# (damage, words the one-line error must contain)
BROKEN: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "no folder": (lambda f: shutil.rmtree(f), ["does not exist", "promptgen compose"]),
    "file, not folder": (lambda f: (shutil.rmtree(f), f.write_text("x")), ["is a file"]),
    "no manifest": (remove(MANIFEST), ["no manifest.json"]),
    "empty manifest": (write_bytes(MANIFEST, b""), ["not valid JSON"]),
    "truncated manifest": (truncate(MANIFEST), ["not valid JSON", "train it again"]),
    "binary manifest": (write_bytes(MANIFEST, bytes(range(256))), ["not UTF-8"]),
    "manifest is a list": (write_bytes(MANIFEST, b"[1, 2]"), ["not a promptgen manifest"]),
    "deeply nested manifest": (write_bytes(MANIFEST, b"[" * 200_000 + b"]" * 200_000), ["nested too deeply"]),
    "integer of 10^5 digits": (write_bytes(MANIFEST, b'{"format": "promptgen-prompt", "x": ' + b"9" * 100_000 + b"}"),
                               ["not valid JSON"]),
    "manifest of 80 MB": (sparse(MANIFEST, 80 * 2**20), ["80 MB", "not a prompt manifest"]),
    "manifest is a folder": (lambda f: (remove(MANIFEST)(f), (f / MANIFEST).mkdir()), ["not a regular file"]),
    "manifest is a FIFO": (fifo(MANIFEST), ["not a regular file"]),
    "manifest links outside": (link_outside(MANIFEST), ["outside the prompt folder", "copy the file"]),
    "missing field": (edit_manifest(lambda m: m.pop("flow")), ["invalid at flow", "Field required"]),
    "wrong type": (setter("generator", "latent_shape", "thirty-two"), ["invalid at generator.latent_shape"]),
    "negative weight": (setter("energies", 0, "weight", -1), ["invalid at energies.0.weight"]),
    "unknown key with markup and a newline": (setter("[/red]\nkey", 1), ["invalid at '[/red]\\nkey'", "Extra inputs"]),
    "future version": (setter("format_version", FORMAT_VERSION + 1), [f"format {FORMAT_VERSION + 1}",
                       f"reads up to format {FORMAT_VERSION}", "pip install -U promptgen-core"]),
    "future version as a float": (setter("format_version", FORMAT_VERSION + 1.0), [f"format {FORMAT_VERSION + 1}", "upgrade"]),
    "version 0": (setter("format_version", 0), ["invalid at format_version"]),
    "version as text": (setter("format_version", "1"), ["invalid at format_version"]),
    "weights ../../etc/passwd": (setter("weights_file", "../../etc/passwd"), ["weights_file", "plain file name"]),
    "weights absolute": (setter("weights_file", "/etc/passwd"), ["weights_file", "plain file name"]),
    "weights hidden name": (setter("weights_file", ".."), ["weights_file", "plain file name"]),
    "weights name with NUL": (setter("weights_file", "flow\x00.safetensors"), ["weights_file", "plain file name"]),
    "weights drive letter": (setter("weights_file", "C:flow.safetensors"), ["weights_file", "plain file name"]),
    "weights link outside": (link_outside(WEIGHTS), ["outside the prompt folder"]),
    "weights missing": (remove(WEIGHTS), ["flow.safetensors", "is missing"]),
    "weights empty": (write_bytes(WEIGHTS, b""), ["flow.safetensors", "corrupt"]),
    "weights truncated": (truncate(WEIGHTS), ["flow.safetensors", "corrupt"]),
    "weights garbage": (write_bytes(WEIGHTS, b"\xff" * 4096), ["corrupt"]),
    "weights are a FIFO": (fifo(WEIGHTS), ["not a regular file"]),
    "weights for another flow": (setter("flow", "hidden", 7), ["has shape", "do not belong together"]),
    "flow far larger than the weights": (edit_manifest(huge_flow), ["far fewer than the manifest's flow"]),
    "tensor missing": (edit_weights(lambda t: t.pop(FIRST_WEIGHT)), ["missing", FIRST_WEIGHT]),
    "tensor extra": (edit_weights(lambda t: t.update(evil=torch.zeros(3))), ["unexpected", "'evil'"]),
    "float64 weights": (edit_weights(lambda t: t.update({FIRST_WEIGHT: t[FIRST_WEIGHT].double()})), ["torch.float64", "torch.float32"]),
    "NaN weight": (edit_weights(poke(FIRST_WEIGHT, float("nan"))), ["NaN or infinite", FIRST_WEIGHT]),
    "infinite weight": (edit_weights(poke(FIRST_WEIGHT, float("inf"))), ["NaN or infinite"]),
    "coupling mask changed": (edit_weights(flip_mask), [MASK, "fixed value"]),
    "mask seed overflow": (setter("flow", "mask_seed", 10**30), ["invalid at flow.mask_seed"]),
    "flow shape not the generator's": (setter("flow", "latent_shape", [4, 8]), ["differs from the generator's"]),
    "flow shape not its features": (setter("flow", "latent_shape", [5]), ["product is features"]),
    "weights changed after training": (edit_weights(poke(FIRST_WEIGHT, 0.5), keep_checksum=True),
                                       ["flow.safetensors", "does not match the sha256", "restore the prompt folder"]),
    "one bit of a weight flipped": (flip_a_data_byte, ["does not match the sha256"]),
    "bad weights hash": (setter("weights_sha256", "$(rm -rf ~)"), ["invalid at weights_sha256"]),
    "bad lineage hash": (edit_manifest(lambda m: m["lineage"].append(
        {"path": "/x", "generator": "mnist", "energies": [], "created": "", "weights_sha256": "$(rm -rf ~)"})),
        ["invalid at lineage.0.weights_sha256"]),
}


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root`` (and the files next to it): what a refused command must leave alone."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.parent.rglob("*")):
        if p.is_symlink():
            out[str(p)] = "-> " + os.readlink(p)
        elif p.is_fifo():
            out[str(p)] = "fifo"
        elif p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest().encode()
        else:
            out[str(p)] = "dir"
    return out


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_broken_prompt_is_one_line_everywhere_and_left_alone(case, copy, tmp_path):
    damage, words = BROKEN[case]
    damage(copy)
    before = snapshot(copy)
    one_line_artifact_error(load_prompt, copy, words)
    grid = tmp_path / "grid.png"
    one_line_error(run("sample", copy, "-n", "2", "-o", grid), *words)
    one_line_error(run("info", copy), *words)
    assert not grid.exists()
    assert snapshot(copy) == before  # nothing the user had was changed


def test_the_undamaged_copy_loads(copy, tmp_path):
    # The damage above is what breaks each case: the same folder untouched works everywhere.
    assert load_prompt(copy).flow.config.transforms == 2
    assert run("sample", copy, "-n", "2", "-o", tmp_path / "g.png").exit_code == 0
    assert run("info", copy).exit_code == 0


def test_manifest_written_by_python_json_reads_back_with_nan_figures(copy):
    # An evaluation that overflowed leaves NaN in the history; pydantic's JSON would write null and refuse it later.
    from promptgen.artifacts.manifest import manifest_json

    m = read_manifest(copy)
    m.training.history[0]["loss"] = float("nan")
    m.training.final_loss = float("inf")
    (copy / MANIFEST).write_text(manifest_json(m))
    again = read_manifest(copy)
    assert again.training.final_loss == float("inf") and again.training.history[0]["loss"] != again.training.history[0]["loss"]


def test_info_prints_a_strangers_text_literally(copy):
    # Rich markup would crash the table ("[/red]") and an escape sequence would drive the terminal.
    def change(m):
        m["energies"][0]["spec"] = "classifier:digit=3 [/red][bold]"
        m["generator"]["licence"] = "MIT\x1b]0;pwned\x07\x1b[2J"

    edit_manifest(change)(copy)
    result = run("info", copy)
    assert result.exit_code == 0, result.output
    assert "[/red][bold]" in result.stdout
    assert "\x1b" not in result.stdout and "\\x1b]0;pwned\\x07\\x1b[2J" in result.stdout


def test_error_quoting_a_strangers_text_stays_one_plain_line(copy, tmp_path):
    setter("generator", "spec", "nosuchgen:x=[/red]\x1b[2J")(copy)
    text = one_line_error(run("sample", copy, "-n", "2", "-o", tmp_path / "g.png"), "unknown generator 'nosuchgen'")
    assert "\x1b" not in text


def test_check_prompt_checks_weights_without_building_the_generator(copy, monkeypatch):
    import promptgen.artifacts.prompt

    monkeypatch.setattr(promptgen.artifacts.prompt, "build_generator", lambda *a, **k: pytest.fail("generator built"))
    assert check_prompt(copy).generator.spec == "mnist"
    truncate(WEIGHTS)(copy)
    with pytest.raises(ArtifactError, match="corrupt"):
        check_prompt(copy)


def test_chained_prompt_with_a_missing_parent(prompt_dir, tmp_path):
    parent = Path(shutil.copytree(prompt_dir, tmp_path / "parent"))
    child = tmp_path / "child"
    compose(f"prompt:{parent}", ["classifier:digit=3"], child, train=TrainConfig(steps=1, eval_batch=8, batch_size=8),
            flow={"transforms": 1, "hidden": 8}, preview=0, progress=False)
    assert load_prompt(child).generator.path == parent.resolve()
    shutil.rmtree(parent)
    with pytest.raises(ArtifactError, match="which is missing"):
        load_prompt(child)
    one_line_error(run("sample", child, "-o", tmp_path / "g.png"), "which is missing")


# -- training checkpoints --------------------------------------------------------------------------------------------


def trained_state(step: int = 3, **extra) -> dict:
    flow = CouplingFlow(FlowConfig(features=4, transforms=2, hidden=8))
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    flow(torch.randn(5, 4))[0].sum().backward()
    opt.step()
    return {"flow": flow.state_dict(), "optimizer": opt.state_dict(), "step": step, **extra}


def test_checkpoint_from_training_loads(prompt_dir):
    state = load_checkpoint(prompt_dir / "checkpoint.pt")
    assert state["step"] == 2
    assert set(state["flow"]) == set(load_prompt(prompt_dir).flow.state_dict())
    assert all(t.device.type == "cpu" for t in state["flow"].values())


def test_checkpoint_with_the_trainers_other_keys_loads(tmp_path):
    extra = {
        "format": "promptgen-checkpoint", "version": 1, "scheduler": {"last_epoch": 3}, "generator": torch.Generator().get_state(),
        "torch_rng": torch.get_rng_state(), "energies": {"debias": {"beta": [0.5, -1.0]}}, "fits": {"debias": {"ess": 3.0}},
        "history": [{"step": 1.0, "loss": 2.5}], "adaptations": [], "eval_eps": torch.randn(8, 4), "bank": None,
        "skipped": 0, "rollbacks": 1, "resumed_at": [2], "seconds": 1.5, "checkpoint_seconds": 0.1, "config": {"steps": 10},
    }
    torch.save(trained_state(**extra), tmp_path / "c.pt")
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["energies"] == extra["energies"] and torch.equal(state["generator"], extra["generator"])


@pytest.mark.parametrize(("key", "value"), [
    ("readings", [{"step": "one", "n": 3}]),
    ("readings", {"step": 1}),
    ("best", {"step": 2, "score": 0.1}),
    ("best", {"step": 2, "score": "low", "flow": {"w": torch.zeros(2)}}),
    ("backoff", 0.0),
    ("backoff", 2.0),
])
def test_checkpoint_with_a_broken_guard_state_is_one_line(key, value, tmp_path):
    good = {"readings": [{"step": 0, "n": 8, "junk": 0.1, "base_junk": 0.1}], "best": None, "backoff": 0.5}
    torch.save(trained_state(**good), tmp_path / "good.pt")
    assert load_checkpoint(tmp_path / "good.pt")["backoff"] == 0.5
    torch.save(trained_state(**{**good, key: value}), tmp_path / "c.pt")
    with pytest.raises(ArtifactError) as err:
        load_checkpoint(tmp_path / "c.pt")
    assert repr(key) in str(err.value) and len(str(err.value).splitlines()) == 1


class RunsCommand:
    """A pickle payload: unpickling it runs ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("container", ["torch.save zip", "bare pickle"])
def test_checkpoint_that_would_run_code_is_refused_before_running_it(container, tmp_path):
    # The payload is real: plain pickle runs it.
    proof = tmp_path / "PROOF"
    pickle.loads(pickle.dumps(RunsCommand(f"touch {proof}")))
    assert proof.exists()

    marker = tmp_path / "MARKER"
    # The payload first, where an unpickler meets it before anything else.
    state = {"step": RunsCommand(f"touch {marker}"), **{k: v for k, v in trained_state().items() if k != "step"}}
    path = tmp_path / "checkpoint.pt"
    if container == "torch.save zip":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state, protocol=2))
    with pytest.raises(ArtifactError) as err:
        load_checkpoint(path)
    text = str(err.value)
    assert "system" in text and "refused without running it" in text and len(text.splitlines()) == 1, text
    assert not marker.exists()


def corrupt_zip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 64] = b"\x00" * 64
    path.write_bytes(bytes(data))


CHECKPOINTS: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "missing": (lambda p: p.unlink(), ["does not exist", "without --resume"]),
    "folder": (lambda p: (p.unlink(), p.mkdir()), ["not a regular file"]),
    "fifo": (lambda p: (p.unlink(), os.mkfifo(p)), ["not a regular file"]),
    "empty": (lambda p: p.write_bytes(b""), ["truncated or corrupt"]),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), ["truncated or corrupt"]),
    "garbage": (lambda p: p.write_bytes(b"hello world" * 50), ["truncated or corrupt"]),
    "bytes zeroed inside a tensor": (corrupt_zip, ["fails its checksum"]),
    "not a dict": (lambda p: torch.save([1, 2], p), ["holds a list"]),
    "a bare tensor": (lambda p: torch.save(torch.zeros(3), p), ["holds a Tensor"]),
    "no step": (lambda p: torch.save({k: v for k, v in trained_state().items() if k != "step"}, p), ["no 'step'"]),
    "step is text": (lambda p: torch.save(trained_state(step="3"), p), ["'step' is a str", "whole number"]),
    "step is negative": (lambda p: torch.save(trained_state(step=-1), p), ["'step' is -1"]),
    "step is a bool": (lambda p: torch.save(trained_state(step=True), p), ["'step' is True"]),
    "flow not tensors": (lambda p: torch.save({**trained_state(), "flow": {"w": [1.0]}}, p), ["'flow' is a dict", "tensors"]),
    "flow empty": (lambda p: torch.save({**trained_state(), "flow": {}}, p), ["'flow'", "non-empty"]),
    "optimizer wrong": (lambda p: torch.save({**trained_state(), "optimizer": {"state": []}}, p), ["'optimizer'"]),
    "NaN in flow": (lambda p: torch.save({**trained_state(), "flow": {"w": torch.tensor([1.0, float("nan")])}}, p), ["NaN"]),
    "inf in optimizer": (
        lambda p: torch.save({**trained_state(), "optimizer": {"state": {0: {"exp_avg": torch.tensor([float("inf")])}},
                                                               "param_groups": [{"params": [0]}]}}, p), ["optimizer", "NaN or infinite"]),
    "newer format": (lambda p: torch.save(trained_state(version=99), p), ["format 99", "pip install -U promptgen-core"]),
    "foreign format": (lambda p: torch.save(trained_state(format="lightning"), p), ["'format'"]),
    "history wrong": (lambda p: torch.save(trained_state(history=[{"loss": "low"}]), p), ["'history'"]),
    "rng state wrong": (lambda p: torch.save(trained_state(generator=torch.zeros(3)), p), ["'generator'", "uint8"]),
}


@pytest.mark.parametrize("case", CHECKPOINTS, ids=list(CHECKPOINTS))
def test_broken_checkpoint_is_one_line(case, tmp_path):
    damage, words = CHECKPOINTS[case]
    path = tmp_path / "checkpoint.pt"
    torch.save(trained_state(), path)
    assert load_checkpoint(path)["step"] == 3  # sound before the damage
    damage(path)
    one_line_artifact_error(load_checkpoint, path, words)


def test_checkpoint_errors_are_promptgen_errors_for_the_cli(tmp_path):
    # The CLI prints PromptgenErrors as one line with exit code 2; --resume relies on that.
    assert issubclass(ArtifactError, PromptgenError)
    with pytest.raises(PromptgenError):
        load_checkpoint(tmp_path / "nothing.pt")


def test_the_manifest_records_the_weights_checksum_and_older_prompts_without_it_still_load(copy):
    recorded = json.loads((copy / MANIFEST).read_text())["weights_sha256"]
    assert recorded == hashlib.sha256((copy / WEIGHTS).read_bytes()).hexdigest()
    eps = torch.randn(4, 32, generator=torch.Generator().manual_seed(0))
    with_checksum = load_prompt(copy).flow(eps)[0]
    edit_manifest(lambda m: m.pop("weights_sha256"))(copy)
    torch.testing.assert_close(load_prompt(copy).flow(eps)[0], with_checksum, rtol=0, atol=0)
