"""`promptgen eval`: the maths on hand-built numbers, then the command on tiny prompts (real and fake)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from promptgen.artifacts.manifest import EnergyRecord, TargetRecord
from promptgen.artifacts.prompt import Prompt, load_prompt, sample_images
from promptgen.builtin.mnist.models import load_pretrained
from promptgen.cli import app
from promptgen.composing import compose, prompt_ebm
from promptgen.core.classifiers import ModuleClassifier
from promptgen.core.hooks import hookimpl
from promptgen.core.metrics import (
    class_histogram,
    class_share,
    effective_sample_size,
    frechet_distance,
    joint_classes,
    joint_labels,
    kl_divergence,
    mean_pairwise_distance,
    total_variation,
)
from promptgen.core.registry import build_registry, get_registry
from promptgen.evaluation.evaluate import EvalReport, evaluate_prompt
from promptgen.plugin import ClassifierEntry
from promptgen.testing import one_line_error, toy_generator_entry
from promptgen.training.trainer import TrainConfig

runner = CliRunner()
MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
DIGITS = [str(d) for d in range(10)]
TINY = {
    "train": TrainConfig(steps=3, batch_size=8, eval_every=1, checkpoint_every=3, fit_samples=16, eval_batch=16),
    "flow": {"transforms": 1, "hidden": 8},
    "progress": False,
    "preview": 0,
}
TOP_KEYS = {
    "format", "format_version", "created", "prompt_path", "generator", "n", "seed", "features", "reference",
    "reference_n", "frechet_base_prompt", "frechet_exact", "exact_ess", "realism", "warnings", "base", "prompt",
    "attributes", "energies", "versions", "verdict", "met", "flags", "frechet_base_prompt_ci", "frechet_exact_ci", "intervals",
}


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "three"
    compose("mnist", ["classifier:digit=3"], out, **TINY)
    return out


# --- the maths, by hand -----------------------------------------------------------------------


def test_kl_and_total_variation_by_hand():
    hist, uniform = [0.5, 0.25, 0.25], [1 / 3] * 3
    assert kl_divergence(hist, uniform) == pytest.approx(0.5 * math.log(1.5) + 2 * 0.25 * math.log(0.75), abs=1e-12)
    assert total_variation(hist, uniform) == pytest.approx(0.5 * (1 / 6 + 2 * (1 / 12)), abs=1e-12)
    assert kl_divergence(hist, hist) == 0.0 and total_variation(hist, hist) == 0.0
    # KL is not symmetric, TV is.
    assert kl_divergence(uniform, hist) == pytest.approx(sum(u * math.log(u / h) for u, h in zip(uniform, hist)), abs=1e-12)
    assert total_variation(uniform, hist) == total_variation(hist, uniform)
    assert kl_divergence([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]) == math.inf
    assert kl_divergence([0.0, 1.0], [0.5, 0.5]) == pytest.approx(math.log(2))
    with pytest.raises(ValueError):
        kl_divergence([0.5, 0.5], [1.0])


def test_joint_histogram_of_hand_built_classes():
    digit = torch.tensor([0, 1, 1, 2])
    thickness = torch.tensor([0, 2, 2, 1])  # thin, thick, thick, medium
    joint = joint_classes([digit, thickness], [3, 3])
    assert joint.tolist() == [0, 5, 5, 7]
    labels = joint_labels([["0", "1", "2"], ["thin", "medium", "thick"]])
    assert labels[:4] == ["0/thin", "0/medium", "0/thick", "1/thin"] and len(labels) == 9
    hist = class_histogram(joint, 9)
    assert dict(zip(labels, hist)) == {
        "0/thin": 0.25, "0/medium": 0.0, "0/thick": 0.0, "1/thin": 0.0, "1/medium": 0.0,
        "1/thick": 0.5, "2/thin": 0.0, "2/medium": 0.25, "2/thick": 0.0,
    }
    assert class_share(hist, labels, asked=["1/thick"]) == 0.5
    assert class_share(hist, labels, avoided=["0/thin"]) == 0.75
    with pytest.raises(ValueError):
        class_histogram(torch.tensor([3]), 3)


def test_frechet_distance_with_fewer_samples_than_dimensions():
    # The sample-space shortcut (N < D) agrees with the covariance formula, and with
    # the closed form for Gaussians differing by a shift: FD(x, x + c) = ‖c‖².
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(40, 100, generator=gen, dtype=torch.float64) @ torch.randn(100, 100, generator=gen, dtype=torch.float64) * 0.2
    b = torch.randn(30, 100, generator=gen, dtype=torch.float64) * 1.5 + 0.1
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    vals, vecs = torch.linalg.eigh(ca)
    root = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    tr_sqrt = torch.linalg.eigvalsh(root @ cb @ root).clamp(min=0).sqrt().sum()
    expected = float((a.mean(0) - b.mean(0)).pow(2).sum() + ca.trace() + cb.trace() - 2 * tr_sqrt)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a + 0.5) == pytest.approx(100 * 0.25, rel=1e-9)


def test_module_classifier_features_only_when_the_module_has_them():
    evaluator = ModuleClassifier(load_pretrained("evaluator"), {"digit": (DIGITS, slice(0, 10))}, (28, 28), 1)
    x = torch.rand(5, 1, 28, 28)
    assert torch.allclose(evaluator.features(x), evaluator.module.features(x))
    assert evaluator.features(torch.rand(2, 3, 56, 56)).shape == (2, 64)  # resized and converted like log_probs
    plain = ModuleClassifier(nn.Sequential(nn.Flatten(), nn.Linear(784, 2)), {"a": (["x", "y"], slice(0, 2))}, (28, 28), 1)
    assert not hasattr(plain, "features")


# --- the command on a tiny digit prompt ---------------------------------------------------------


def evaluator_histogram(images: torch.Tensor, passing: bool = True) -> list[float]:
    """The evaluator's digit histogram of the images its realism check passes (``passing``), or of all of them."""
    clf = get_registry().build_classifier("mnist-digit-evaluator")
    with torch.no_grad():
        classes = clf.log_probs(images)["digit"].argmax(1)
        keep = clf.realism(images) >= 0 if passing else torch.ones(len(images), dtype=torch.bool)
    return class_histogram(classes[keep], 10)


def test_eval_json_matches_a_direct_computation(three, tmp_path):
    out = tmp_path / "eval.json"
    result = run("eval", three, "-n", 200, "--seed", 5, "--batch-size", 64, "--attr", "digit*digit", "--json", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert json.loads(out.read_text()) == data  # --out writes the same JSON
    assert set(data) == TOP_KEYS and data["format"] == "promptgen-eval"
    assert data["n"] == 200 and data["seed"] == 5 and data["generator"] == "mnist"
    assert "mnist-digit-evaluator" in data["features"] and data["reference"] is None
    report = EvalReport.model_validate(data)

    prompt = load_prompt(three)
    images = {
        "prompt": sample_images(prompt, 200, seed=5, batch_size=64),
        "base": sample_images(prompt.generator, 200, seed=5, batch_size=64),
    }
    digit, joint = report.attributes
    assert (digit.attribute, digit.origin, digit.energy) == ("digit", "prompt", "classifier:digit=3")
    assert digit.asked == ["3"] and digit.target is None and digit.labels == DIGITS
    assert digit.evaluators == ["mnist-digit-evaluator"] and digit.independent
    for side in ("base", "prompt"):
        s = data["attributes"][0][side]
        assert sum(s["histogram"]) == pytest.approx(1.0)
        # Junk counted as junk: the histogram is of the samples the realism check passes, junk beside it.
        assert s["histogram"] == pytest.approx(evaluator_histogram(images[side]), abs=1e-12)
        assert s["histogram_all"] == pytest.approx(evaluator_histogram(images[side], passing=False), abs=1e-12)
        assert s["junk"] == pytest.approx(data[side]["junk_rate"]) and s["counted"] == round(200 * (1 - s["junk"]))
        assert s["share"] == pytest.approx(s["histogram"][3]) and s["kl"] is None and s["tv"] is None
        # 95 % intervals around every share (a bootstrap of the 200 samples), none for figures not measured.
        assert len(s["histogram_ci"]) == 10 and all(lo <= h <= hi for h, (lo, hi) in zip(s["histogram"], s["histogram_ci"]))
        assert s["share_ci"][0] <= s["share"] <= s["share_ci"][1] and s["share_ci"][1] - s["share_ci"][0] < 0.3
        assert s["junk_ci"][0] <= s["junk"] <= s["junk_ci"][1] and s["kl_ci"] is None
        assert data[side]["junk_rate_ci"] == pytest.approx(s["junk_ci"]) and data[side]["frechet_ci"] is None
        # The diversity of the samples of the asked class (3s that pass the realism check), beside the share.
        clf = get_registry().build_classifier("mnist-digit-evaluator")
        with torch.no_grad():
            threes = (clf.log_probs(images[side])["digit"].argmax(1) == 3) & (clf.realism(images[side]) >= 0)
            feats = clf.features(images[side][threes]).double()
        assert s["diversity_n"] == int(threes.sum())
        if s["diversity_n"] > 1:
            assert s["diversity"] == pytest.approx(mean_pairwise_distance(feats), rel=1e-6)
        assert 0 < data[side]["diversity"] < math.inf and data[side]["frechet"] is None
        assert data[side]["n"] == 200 and data[side]["samples_per_second"] > 0
        # The joint of an attribute with itself lies on the diagonal "k/k", in the same shares.
        j = dict(zip(joint.labels, data["attributes"][1][side]["histogram"]))
        assert [j[f"{d}/{d}"] for d in DIGITS] == pytest.approx(s["histogram"])
        assert sum(j.values()) == pytest.approx(1.0)
    assert joint.origin == "asked" and joint.energy is None and joint.base.share is None

    (energy,) = report.energies
    assert energy.available and energy.label == "classifier:digit=3" and energy.weight == 100.0
    term = prompt_ebm(prompt).terms[0]
    with torch.no_grad():
        direct = term.energy(images["prompt"], torch.zeros(200, 32)).double()
    assert energy.prompt.mean == pytest.approx(float(direct.mean()), rel=1e-5)
    assert energy.prompt.std == pytest.approx(float(direct.std()), rel=1e-4)

    # Realism: the junk rate is the share the evaluator's realism check scores below 0; the exact samples'
    # weights are exp(-100 E) of the base samples (no Fréchet distance without --data).
    realism = get_registry().build_classifier("mnist-digit-evaluator").realism
    assert data["realism"] == "realism check of classifier mnist-digit-evaluator"
    with torch.no_grad():
        for side in ("base", "prompt"):
            assert data[side]["junk_rate"] == pytest.approx(float((realism(images[side]) < 0).double().mean()))
        base_energy = term.energy(images["base"], torch.zeros(200, 32)).double()
    assert data["exact_ess"] == pytest.approx(effective_sample_size(-100.0 * base_energy), rel=1e-4)
    assert data["frechet_exact"] is None and data["warnings"] == []
    assert data["intervals"]["level"] == 0.95 and data["intervals"]["resamples"] >= 200 and data["intervals"]["seed"] == 5
    lo, hi = data["frechet_base_prompt_ci"]
    assert 0 <= lo <= hi and data["frechet_exact_ci"] is None
    # The flags: the 3-step prompt missed its target, said with the generator's figure and a next step.
    missed = [f for f in data["flags"] if f["kind"] == "missed"]
    assert len(missed) == 1 and missed[0]["value"] == pytest.approx(digit.prompt.share)
    assert missed[0]["base"] == pytest.approx(digit.base.share) and "generator" in missed[0]["message"]
    # A 3-step prompt is far from 95 % 3s: the verdict says so, and names the figure and the junk.
    assert data["met"] is False and digit.met is False and joint.met is None
    assert any(line.startswith("classifier:digit=3: ") and "by mnist-digit-evaluator" in line for line in data["verdict"])
    assert any(line.startswith("junk ") for line in data["verdict"]) and any(line.startswith("not met") for line in data["verdict"])


def test_eval_table_on_screen(three, monkeypatch):
    from promptgen import cli

    monkeypatch.setattr(cli.out_console, "width", 250)  # a wide terminal: no cell wraps
    result = run("eval", three, "-n", 50, "-q")
    assert result.exit_code == 0, result.output
    for words in ("base (mnist)", "prompt", "share of asked classes", "diversity", "energy classifier:digit=3 (mean ± std)",
                  "digit (asked 3), judged by mnist-digit-evaluator", "features of classifier mnist-digit-evaluator",
                  "95% intervals, a bootstrap over the 50 samples of each side"):
        assert words in result.stdout, (words, result.stdout)
    # Figures with their intervals: "0.080 [0.020, 0.140]".
    import re

    share_row = next(line for line in result.stdout.splitlines() if "share of asked classes" in line)
    assert len(re.findall(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", share_row)) == 2, share_row
    # The 3-step prompt missed its target: a flag on the terminal, after the verdict.
    assert "warning: classifier:digit=3: missed its target" in " ".join(result.output.split())


def test_a_collapsed_prompt_is_flagged_in_eval_and_report(three, tmp_path, monkeypatch):
    # Every sample of the prompt made from the same latent: no diversity at all.
    monkeypatch.setattr(Prompt, "latents_at", lambda self, noise, condition=None: self.noise(noise[:1].expand_as(noise).contiguous()))
    report = evaluate_prompt(three, n=120, seed=2).report
    assert report.prompt.diversity < 1e-3 and report.base.diversity > 1.0
    (collapse,) = [f for f in report.flags if f.kind == "collapse"]
    assert collapse.value < 1e-3 and collapse.base > 1.0
    assert "collapsed" in collapse.message and "--forward-weight" in collapse.message
    # The same prompt, not collapsed: no such flag.
    monkeypatch.undo()
    assert not [f for f in evaluate_prompt(three, n=120, seed=2).report.flags if f.kind == "collapse"]
    monkeypatch.setattr(Prompt, "latents_at", lambda self, noise, condition=None: self.noise(noise[:1].expand_as(noise).contiguous()))
    result = run("eval", three, "-n", 120, "--seed", 2, "-q")
    assert result.exit_code == 0, result.output
    assert "the prompt's samples collapsed onto a few modes" in " ".join(result.output.split())
    page = tmp_path / "collapsed.html"
    result = run("report", three, "-o", page, "-n", 120, "--seed", 2, "-q")
    assert result.exit_code == 0, result.output
    assert "the prompt's samples collapsed onto a few modes" in " ".join(result.output.split())
    text = page.read_text()
    assert 'data-kind="collapse"' in text and text.index('id="warnings"') < text.index('id="energies"') < text.index('id="samples"')


def test_old_eval_json_without_intervals_still_loads(three):
    report = evaluate_prompt(three, n=40, seed=0).report
    data = json.loads(report.model_dump_json())
    for key in ("flags", "frechet_base_prompt_ci", "frechet_exact_ci", "intervals"):
        del data[key]
    data["format_version"] = 3
    for side in ("base", "prompt"):
        for key in ("frechet_ci", "junk_rate_ci"):
            del data[side][key]
        for a in data["attributes"]:
            for key in ("histogram_ci", "junk_ci", "kl_ci", "share_ci", "diversity", "diversity_n"):
                a[side].pop(key, None)
    old = EvalReport.model_validate(data)
    assert old.intervals is None and old.flags == [] and old.attributes[0].prompt.share_ci is None
    from promptgen.evaluation.render import summary_rows

    assert all("[" not in b + p for _, b, p in summary_rows(old))  # figures without intervals print as before


def write_mnist_folder(folder: Path) -> Path:
    """A stand-in MNIST folder in the real IDX format (random digits), so the test needs no download."""
    import gzip

    from promptgen.datasets import mnist

    rng = np.random.default_rng(0)
    folder.mkdir()
    pixels = rng.integers(0, 256, size=(mnist.NUM_IMAGES, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=mnist.NUM_IMAGES, dtype=np.uint8)
    header = lambda *xs: b"".join(int(x).to_bytes(4, "big") for x in xs)
    with gzip.open(folder / mnist.IMAGES_FILE, "wb", compresslevel=1) as fh:
        fh.write(header(mnist.IMAGES_MAGIC, mnist.NUM_IMAGES, 28, 28) + pixels.tobytes())
    with gzip.open(folder / mnist.LABELS_FILE, "wb") as fh:
        fh.write(header(mnist.LABELS_MAGIC, mnist.NUM_IMAGES) + labels.tobytes())
    return folder


def test_eval_with_mnist_folder_gives_a_finite_frechet_distance(three, tmp_path):
    folder = MNIST if MNIST.is_dir() else write_mnist_folder(tmp_path / "mnist")
    result = run("eval", three, "-n", 200, "--data", folder, "--json", "-q")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["reference_n"] == 2000  # the held-out split
    for side in ("base", "prompt"):
        assert 0 <= data[side]["frechet"] < math.inf


def test_eval_with_npz_reference(three, tmp_path):
    ref = sample_images(load_prompt(three).generator, 100, seed=11).numpy()
    np.savez(tmp_path / "ref.npz", images=ref)
    report = evaluate_prompt(three, n=100, seed=11, data=tmp_path / "ref.npz").report
    assert report.reference_n == 100
    # The reference is the base's own samples: distance 0 up to float error, the prompt's is larger.
    assert report.base.frechet == pytest.approx(0.0, abs=1e-6)
    assert report.prompt.frechet > report.base.frechet


def test_bad_attr_and_bad_data_are_one_line_errors(three, tmp_path):
    one_line_error(run("eval", three, "-n", 10, "--attr", "digt"), "--attr", "'digit'")
    one_line_error(run("eval", three, "-n", 10, "--attr", "digit*"), "--attr")
    one_line_error(run("eval", three, "-n", 10, "--data", tmp_path / "nope"), "does not exist", ".npz")
    one_line_error(run("eval", three, "-n", 10, "--data", tmp_path), "MNIST file not found", ".npz")
    (tmp_path / "notes.txt").write_text("x")
    one_line_error(run("eval", three, "-n", 10, "--data", tmp_path / "notes.txt"), "neither a folder nor an .npz")
    np.savez(tmp_path / "wrong.npz", pixels=np.zeros((3, 1, 4, 4), np.float32))
    one_line_error(run("eval", three, "-n", 10, "--data", tmp_path / "wrong.npz"), "no 'images' array")
    np.savez(tmp_path / "range.npz", images=np.full((3, 1, 4, 4), 255.0, np.float32))
    one_line_error(run("eval", three, "-n", 10, "--data", tmp_path / "range.npz"), "[0, 1]")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    one_line_error(run("eval", three, "-n", 10, "--data", tmp_path / "junk.npz"), "not a readable .npz")
    one_line_error(run("eval", three, "-n", 10, "-o", tmp_path / "missing" / "e.json"), "does not exist")
    one_line_error(run("eval", tmp_path / "no-prompt", "-n", 10), "does not exist")


# --- hand-built fakes: a chain, targets the installed plugins cannot judge, an unknown energy -----


def test_chained_prompt_with_distribution_targets_and_a_missing_energy(three):
    parent = load_prompt(three)
    records = [
        EnergyRecord(
            spec="nosuch:thing", label="nosuch:thing", weight=1.0, plugin="promptgen-plugin-nosuch 1.0",
            targets=[
                TargetRecord(attribute="digit", labels=DIGITS, target=[0.1] * 10),
                TargetRecord(attribute="digit", labels=DIGITS[::-1], target=[0.5] + [0.5 / 9] * 9),
                TargetRecord(attribute="colour", labels=["red", "blue"], target=[0.5, 0.5]),
            ],
        ),
        EnergyRecord(
            spec="classifier:digit!=1", label="classifier:digit!=1", weight=30.0,
            targets=[TargetRecord(attribute="digit", labels=DIGITS, avoided=["1"])],
        ),
    ]
    manifest = parent.manifest.model_copy(update={"energies": records, "generator": parent.manifest.generator.model_copy(update={"spec": "prompt:" + str(three)})})
    child = Prompt(manifest, parent, parent.flow)  # the same flow again: a chain of two
    report = evaluate_prompt(child, n=120, seed=3, batch_size=50).report
    parent_report = evaluate_prompt(parent, n=120, seed=3, batch_size=50).report

    uniform, reversed_, colour, avoided, ancestor = report.attributes
    # The child's base is its parent prompt: the same histogram as the parent's prompt side.
    assert ancestor.origin == "ancestor" and ancestor.ancestor == str(three) and ancestor.asked == ["3"]
    assert ancestor.base.histogram == parent_report.attributes[0].prompt.histogram
    for side in ("base", "prompt"):
        hist = getattr(uniform, side).histogram
        assert getattr(uniform, side).kl == pytest.approx(sum(h * math.log(h / 0.1) for h in hist if h > 0), abs=1e-9)
        assert getattr(uniform, side).tv == pytest.approx(0.5 * sum(abs(h - 0.1) for h in hist), abs=1e-12)
        # Target labels in another order: the histogram follows the target's order.
        assert getattr(reversed_, side).histogram == hist[::-1]
        assert getattr(reversed_, side).kl == pytest.approx(kl_divergence(hist[::-1], [0.5] + [0.5 / 9] * 9))
        assert getattr(avoided, side).share == pytest.approx(1 - hist[1])
    assert uniform.energy == "nosuch:thing" and uniform.origin == "prompt"
    assert not colour.available and "colour" in colour.reason and colour.base is None

    missing, available = report.energies
    assert not missing.available and "nosuch" in missing.reason and "\n" not in missing.reason and missing.base is None
    assert available.available and available.base.mean > 0 and available.prompt.std >= 0


class ShadeModule(nn.Module):
    """Logits of dark/light from the mean pixel: no ``features`` method."""

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True) - 0.5
        return torch.cat([-20 * m, 20 * m], dim=1)


class ToyPlugin:
    @hookimpl
    def promptgen_generators(self):
        return [toy_generator_entry()]

    @hookimpl
    def promptgen_attribute_classifiers(self):
        clf = lambda options, registry: ModuleClassifier(ShadeModule(), {"shade": (["dark", "light"], slice(0, 2))}, (8, 8), 3)
        return [ClassifierEntry("toy-shade", {"shade": ["dark", "light"]}, clf, role="control")]


def test_plugin_without_evaluator_or_features(tmp_path):
    reg = build_registry(extra_plugins=[("toy", ToyPlugin())])
    compose("toy", ["classifier:shade=light"], tmp_path / "light", registry=reg, **TINY)
    evaluation = evaluate_prompt(tmp_path / "light", n=64, seed=2, batch_size=32, keep=10, registry=reg)
    report = evaluation.report
    assert report.features == "pixels resized to 32×32"
    (shade,) = report.attributes
    assert shade.evaluators == ["toy-shade"] and not shade.independent  # only the control model judges
    prompt = load_prompt(tmp_path / "light", reg)
    images = sample_images(prompt, 64, seed=2, batch_size=32)
    light = float((images.flatten(1).mean(1) > 0.5).double().mean())
    assert shade.prompt.histogram == pytest.approx([1 - light, light]) and shade.prompt.share == pytest.approx(light)
    assert evaluation.images["prompt"].shape == (10, 3, 8, 8)
    assert torch.equal(evaluation.images["prompt"], images[:10])
    # Pixel diversity is the mean distance between 32×32 upscaled images.
    assert report.prompt.diversity > 0
