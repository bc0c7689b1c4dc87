"""Iterative control: `--gen prompt:PATH` trains a prompt on a trained prompt, chains of any length."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from promptgen.artifacts.manifest import read_manifest
from promptgen.artifacts.prompt import Prompt, build_generator, load_prompt
from promptgen.cli import app
from promptgen.composing import compose
from promptgen.core.errors import ArtifactError
from promptgen.testing import one_line_error
from promptgen.training.trainer import TrainConfig

runner = CliRunner()
TINY = {
    "train": TrainConfig(steps=3, batch_size=8, eval_every=3, checkpoint_every=3, fit_samples=16, eval_batch=16),
    "flow": {"transforms": 1, "hidden": 8},
    "progress": False,
    "preview": 0,
}
ENERGY = ["classifier:digit=3"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])




def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def noise(n: int, seed: int) -> torch.Tensor:
    """The ε that `promptgen sample --seed SEED` draws for 32-dimensional latents."""
    return torch.randn((n, 32), generator=torch.Generator().manual_seed(seed))


def by_hand(eps: torch.Tensor, *folders: Path) -> torch.Tensor:
    """``G(f_1(f_2(...f_k(ε))))`` from each folder's own flow, outermost prompt last."""
    z = eps
    for folder in reversed(folders):
        z = load_prompt(folder).flow(z)[0]  # each folder alone: its own flow, nothing else
    return build_generator("mnist").decode(z).clamp(0, 1)


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, Path]:
    """a on mnist, b on prompt:a (given relative to the cwd), c on prompt:path=b."""
    root = tmp_path_factory.mktemp("chain")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        compose("mnist", ENERGY, "a", **TINY)
        compose("prompt:a", ENERGY, "b", **TINY)
        compose("prompt:path=b", ENERGY, "c", **TINY)
    return {"root": root, "a": root / "a", "b": root / "b", "c": root / "c"}


@pytest.fixture
def fresh_chain(tmp_path) -> dict[str, Path]:
    """A chain of two in its own folder, for tests that damage it."""
    root = tmp_path / "x"
    compose("mnist", ENERGY, root / "a", **TINY)
    compose(f"prompt:{root / 'a'}", ENERGY, root / "b", **TINY)
    return {"root": root, "a": root / "a", "b": root / "b"}


# -- sampling a chain ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [2, 3])
def test_chain_samples_through_the_cli_as_the_composed_flows(chain, tmp_path, depth):
    folders = [chain["a"], chain["b"], chain["c"]][:depth]
    child = folders[-1]
    result = run("sample", child, "-n", "8", "--no-labels", "-o", tmp_path / "x.png")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "x.png").size == (3 * 30 + 2, 3 * 30 + 2)
    assert run("sample", child, "-n", "8", "--seed", "5", "-o", tmp_path / "x.npz").exit_code == 0
    images = torch.from_numpy(np.load(tmp_path / "x.npz")["images"])

    expected = by_hand(noise(8, 5), *folders)
    torch.testing.assert_close(images, expected, rtol=0, atol=1e-5)
    # Every flow of the chain matters: dropping the newest one gives other images.
    assert (images - by_hand(noise(8, 5), *folders[:-1])).abs().max() > 1e-3


def test_chain_samples_through_load_prompt(chain):
    c = load_prompt(chain["c"])
    b, a = c.generator, c.generator.generator
    assert isinstance(b, Prompt) and isinstance(a, Prompt) and not isinstance(a.generator, Prompt)
    assert b.path == chain["b"].resolve() and a.path == chain["a"].resolve()
    assert c.latent_shape == (32,)
    eps = noise(6, 1)
    with torch.no_grad():
        torch.testing.assert_close(c.decode(eps).clamp(0, 1), by_hand(eps, chain["a"], chain["b"], chain["c"]), rtol=0, atol=1e-5)
    assert c.info.description == f"classifier:digit=3 on prompt:{chain['b'].resolve()}"


def test_python_api_takes_a_prompt_spec_or_folder(chain):
    import promptgen

    via_spec = promptgen.sample(f"prompt:{chain['b']}", n=4, seed=2)
    via_folder = promptgen.sample(chain["b"], n=4, seed=2)
    torch.testing.assert_close(via_spec, via_folder, rtol=0, atol=0)
    torch.testing.assert_close(via_spec, by_hand(noise(4, 2), chain["a"], chain["b"]), rtol=0, atol=1e-5)


def test_sampling_a_chain_needs_no_energy(chain, tmp_path, monkeypatch):
    from promptgen import builtin
    from promptgen.core.registry import get_registry

    def refuse(*args, **kwargs):
        raise AssertionError("an energy or classifier was built while sampling a prompt")

    registry = get_registry()
    monkeypatch.setattr(registry, "energies", {})
    monkeypatch.setattr(registry, "classifiers", {})
    monkeypatch.setattr(builtin, "_digit_classifier", refuse)
    monkeypatch.setattr("promptgen.energies.classifier.build_classifier_energy", refuse)
    result = run("sample", chain["c"], "-n", "4", "-o", tmp_path / "g.png")
    assert result.exit_code == 0, result.output
    assert load_prompt(chain["c"]).decode(noise(2, 0)).shape == (2, 1, 28, 28)
    # ...whereas training a new prompt does need it.
    one_line_error(run("compose", "--gen", f"prompt:{chain['c']}", "--energy", "classifier:digit=3", "--out", tmp_path / "d"), "unknown energy")


# -- the manifest ----------------------------------------------------------------------------------------------------


def test_manifest_records_lineage_nearest_first(chain):
    a, b, c = (chain[k].resolve() for k in "abc")
    m = json.loads((c / "manifest.json").read_text())
    assert m["format_version"] == 1
    assert m["generator"]["spec"] == f"prompt:{b}"  # absolute, although b was given relative to the cwd
    assert m["generator"]["plugin"].startswith("promptgen-core")
    assert [r["path"] for r in m["lineage"]] == [str(b), str(a)]
    assert [r["relative"] for r in m["lineage"]] == ["../b", "../a"]
    assert [r["weights_sha256"] for r in m["lineage"]] == [sha256(b / "flow.safetensors"), sha256(a / "flow.safetensors")]
    assert [r["generator"] for r in m["lineage"]] == [f"prompt:{a}", "mnist"]
    assert [r["energies"] for r in m["lineage"]] == [["classifier:digit=3"], ["classifier:digit=3"]]
    assert [r["created"] for r in m["lineage"]] == [read_manifest(b).created, read_manifest(a).created]
    assert [r["path"] for r in json.loads((b / "manifest.json").read_text())["lineage"]] == [str(a)]
    assert json.loads((a / "manifest.json").read_text())["lineage"] == []


def test_manifest_without_lineage_still_loads(chain, tmp_path):
    old = Path(shutil.copytree(chain["a"], tmp_path / "old"))
    m = json.loads((old / "manifest.json").read_text())
    del m["lineage"]  # as written before chaining existed
    (old / "manifest.json").write_text(json.dumps(m))
    assert read_manifest(old).lineage == []
    assert load_prompt(old).decode(noise(2, 0)).shape == (2, 1, 28, 28)


def test_info_shows_the_lineage(chain):
    result = run("info", chain["c"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "lineage" in out and out.count("sha256") == 2
    for k in "ba":
        assert sha256(chain[k] / "flow.safetensors")[:12] in out
    assert json.loads(run("info", chain["c"], "--json").stdout)["lineage"][0]["path"] == str(chain["b"].resolve())


def test_chained_prompt_works_from_another_cwd(chain, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("sample", chain["b"], "-n", "2", "-o", tmp_path / "g.png").exit_code == 0


# -- a missing, moved or changed parent ------------------------------------------------------------------------------


def test_parent_moved_with_child_loads_then_missing_parent_is_one_line(fresh_chain, tmp_path, monkeypatch):
    old_a = str(fresh_chain["a"].resolve())
    moved = Path(shutil.move(str(fresh_chain["root"]), str(tmp_path / "y")))
    b = load_prompt(moved / "b")  # the absolute path is gone; the relative one still works
    assert b.generator.path == (moved / "a").resolve()
    monkeypatch.chdir(tmp_path)
    assert run("sample", "y/b", "-n", "2", "-o", tmp_path / "g.png").exit_code == 0

    shutil.rmtree(moved / "a")
    text = one_line_error(run("sample", "y/b", "-n", "2", "-o", tmp_path / "h.png"), f"'{old_a}'", "missing", "retrain y/b")
    assert "put that prompt folder back" in text
    assert not (tmp_path / "h.png").exists()


def test_changed_parent_is_refused(fresh_chain, tmp_path):
    weights = fresh_chain["a"] / "flow.safetensors"
    tensors = load_file(str(weights))
    key = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[key] = tensors[key] + 0.01
    save_file(tensors, str(weights), metadata={"format": "promptgen-prompt"})
    # As a retrain in place would: the parent's own manifest records its new weights.
    manifest = json.loads((fresh_chain["a"] / "manifest.json").read_text())
    manifest["weights_sha256"] = sha256(weights)
    (fresh_chain["a"] / "manifest.json").write_text(json.dumps(manifest))
    assert load_prompt(fresh_chain["a"]) is not None  # the parent itself is still a valid prompt
    with pytest.raises(ArtifactError, match="has changed since"):
        load_prompt(fresh_chain["b"])
    one_line_error(run("sample", fresh_chain["b"], "-o", tmp_path / "g.png"), "changed", "retrain", str(fresh_chain["b"]))


# -- cycles ----------------------------------------------------------------------------------------------------------


def test_cycle_in_edited_manifests_is_one_line(fresh_chain, tmp_path):
    a, b = fresh_chain["a"], fresh_chain["b"]
    m = json.loads((a / "manifest.json").read_text())
    m["generator"]["spec"] = f"prompt:{b.resolve()}"  # a now claims to be trained on b, which is trained on a
    (a / "manifest.json").write_text(json.dumps(m))
    for folder in (a, b):
        with pytest.raises(ArtifactError, match="loops back on itself"):
            load_prompt(folder)
        one_line_error(run("sample", folder, "-o", tmp_path / "g.png"), "loops", "manifest.json", "retrain")
    one_line_error(run("compose", "--gen", f"prompt:{b}", "--energy", "classifier:digit=3", "--out", tmp_path / "d"), "loops")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("gen, out", [("a", "a"), ("c", "a"), ("c", "b")])
def test_compose_refuses_out_inside_the_chain(chain, gen, out, monkeypatch):
    monkeypatch.chdir(chain["root"])
    before = {p.relative_to(chain[out]): p.read_bytes() for p in chain[out].rglob("*") if p.is_file()}
    text = one_line_error(
        run("compose", "--gen", f"prompt:{gen}", "--energy", "classifier:digit=3", "--steps", "3", "--out", out, "--overwrite", "-q"),
        "would make the chain loop", "new --out",
    )
    assert ("is an ancestor of" in text) == (gen != out)
    assert {p.relative_to(chain[out]): p.read_bytes() for p in chain[out].rglob("*") if p.is_file()} == before


def test_bad_prompt_specs(tmp_path):
    one_line_error(run("compose", "--gen", f"prompt:{tmp_path / 'nope'}", "--energy", "classifier:digit=3", "--out", tmp_path / "d"),
                   "does not exist")
    one_line_error(run("compose", "--gen", "prompt:a,b", "--energy", "classifier:digit=3", "--out", tmp_path / "d"), "unexpected value 'b'")
    one_line_error(run("compose", "--gen", "prompt:path=a,a", "--energy", "classifier:digit=3", "--out", tmp_path / "d"), "one prompt folder")
    assert not (tmp_path / "d").exists()


# -- --keep-parent ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_energy_parent(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("keep") / "parent"
    compose("mnist", ["classifier:digit=3@7", "classifier:thickness=thick"], folder, **TINY)
    return folder


def test_keep_parent_trains_the_child_on_the_parents_energies_too(two_energy_parent, tmp_path):
    child = compose(f"prompt:{two_energy_parent}", ["classifier:slant=upright"], tmp_path / "child", keep_parent=True, **TINY)
    records = child.manifest.energies
    assert [r.spec for r in records] == ["classifier:slant=upright", "classifier:digit=3@7", "classifier:thickness=thick@100"]
    assert [r.weight for r in records] == [100.0, 7.0, 100.0]  # the parent's weights, as trained
    # Trained on, not only recorded: every term has its own curve, and a resumed run asks them again.
    assert set(child.manifest.training.final_terms) >= {"classifier:digit=3", "classifier:thickness=thick"}
    assert json.loads((tmp_path / "child" / "run.json").read_text())["energies"] == [r.spec for r in records]
    assert child.manifest.lineage[0].energies == ["classifier:digit=3@7", "classifier:thickness=thick"]
    # A grandchild keeps the whole chain's conditions: the child's kept energies are among its own.
    grandchild = compose(f"prompt:{tmp_path / 'child'}", ["classifier:digit=3@9"], tmp_path / "grandchild", keep_parent=True, **TINY)
    assert [r.spec for r in grandchild.manifest.energies] == [
        "classifier:digit=3@9", "classifier:slant=upright@100", "classifier:thickness=thick@100"
    ]
    # Without the flag the child has its own energies only.
    plain = compose(f"prompt:{two_energy_parent}", ["classifier:slant=upright"], tmp_path / "plain", **TINY)
    assert [r.spec for r in plain.manifest.energies] == ["classifier:slant=upright"]


def test_keep_parent_lets_the_users_own_weight_win(two_energy_parent, tmp_path):
    child = compose(f"prompt:{two_energy_parent}", ["classifier:digit=3@2"], tmp_path / "child", keep_parent=True, **TINY)
    assert [(r.spec, r.weight) for r in child.manifest.energies] == [
        ("classifier:digit=3@2", 2.0), ("classifier:thickness=thick@100", 100.0)
    ]


def test_keep_parent_bad_input_is_one_line(two_energy_parent, tmp_path):
    one_line_error(run("compose", "--gen", "mnist", "--energy", "classifier:digit=3", "--keep-parent", "--out", tmp_path / "d"),
                   "--gen 'mnist' is not a prompt", "--gen prompt:PATH", "drop --keep-parent")
    one_line_error(run("compose", "--resume", tmp_path / "d", "--keep-parent"), "drop --energy, --out, --cond, --realism and --keep-parent")
    # A parent trained with an energy whose plugin is not installed here.
    parent = tmp_path / "parent"
    shutil.copytree(two_energy_parent, parent)
    manifest = json.loads((parent / "manifest.json").read_text())
    manifest["energies"][0]["spec"] = "smile-detector:strength=2"
    manifest["energies"][0]["plugin"] = "promptgen-plugin-smiles 0.3"
    (parent / "manifest.json").write_text(json.dumps(manifest))
    one_line_error(run("compose", "--gen", f"prompt:{parent}", "--energy", "classifier:digit=3", "--keep-parent", "--out", tmp_path / "d"),
                   "'smile-detector:strength=2'", "promptgen-plugin-smiles 0.3", "drop --keep-parent")
    assert not (tmp_path / "d").exists()
