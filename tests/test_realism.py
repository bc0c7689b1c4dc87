"""Issue 13: knowing what is not a digit.

- the control classifier's "not a digit" class and the evaluator's realism check
  each reject noise and accept real digits they never saw;
- energies built on the control ask for a digit at all (realism=);
- `promptgen eval` and `promptgen report` show the junk rate and warn when a
  prompt trained against an easily fooled classifier leaves the generator's
  usual output.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from promptgen.builtin.mnist.augment import blob_images, noise_images
from promptgen.cli import app
from promptgen.composing import build_energy, compose
from promptgen.core.classifiers import ModuleClassifier, classify
from promptgen.core.generators import ModuleGenerator
from promptgen.core.hooks import hookimpl
from promptgen.core.protocols import GeneratorInfo
from promptgen.core.registry import build_registry, get_registry
from promptgen.energies.classifier import DEFAULT_REALISM
from promptgen.evaluation.evaluate import JUNK_MARGIN, evaluate_prompt, realism_warnings
from promptgen.plugin import ClassifierEntry, GeneratorEntry
from promptgen.training.trainer import TrainConfig

runner = CliRunner()
HELDOUT = Path(__file__).parent / "data" / "mnist-heldout.npz"


@pytest.fixture(scope="module")
def heldout() -> torch.Tensor:
    with np.load(HELDOUT) as npz:
        return torch.from_numpy(npz["images"]).float() / 255


def noise(n: int) -> torch.Tensor:
    """Pixel noise of four kinds: uniform, Gaussian around grey, sparse salt, and coarse blocks."""
    g = torch.Generator().manual_seed(11)
    blocks = torch.nn.functional.interpolate(torch.rand(n // 4, 1, 7, 7, generator=g), size=(28, 28), mode="nearest")
    torch.manual_seed(12)
    return torch.cat([torch.rand(n // 4, 1, 28, 28, generator=g), noise_images(n // 2), blocks])


def test_the_realism_check_accepts_real_digits_and_rejects_noise(heldout):
    check = get_registry().build_classifier("mnist-digit-evaluator").realism
    with torch.no_grad():
        real = check(heldout) >= 0
        fake = check(noise(2000)) >= 0
    assert real.double().mean() >= 0.99, float(real.double().mean())
    assert fake.double().mean() <= 0.01, float(fake.double().mean())


def test_the_control_knows_what_is_not_a_digit(heldout):
    control = get_registry().build_classifier("mnist-digit")
    with torch.no_grad():
        _, real = classify(control, heldout)
        _, fake = classify(control, noise(2000))
    assert (real.exp() >= 0.5).double().mean() >= 0.99
    assert (fake.exp() < 0.5).double().mean() >= 0.99
    # The digits' log-probabilities are those of a digit given that it is one: each row sums to 1.
    logp, _ = classify(control, heldout[:50])
    assert torch.allclose(logp["digit"].exp().sum(1), torch.ones(50), atol=1e-5)


def test_energies_ask_for_a_digit_at_all_unless_told_not_to(heldout):
    images = torch.cat([heldout[:8], blob_images(8)])
    z = torch.zeros(16, 32)
    with torch.no_grad():
        on = build_energy("classifier:digit=3").energy(images, z)
        off = build_energy("classifier:digit=3,realism=0").energy(images, z)
        _, inside = classify(get_registry().build_classifier("mnist-digit"), images)
        assert torch.allclose(on - off, -DEFAULT_REALISM * inside, atol=1e-4)
        assert float(-inside[8:].mean()) > 1.0  # blobs cost more than a nat each
        debias = build_energy("debias:digit").energy
        plain = build_energy("debias:digit,realism=0").energy
        assert torch.allclose(debias(images, z) - plain(images, z), -DEFAULT_REALISM * inside, atol=1e-4)
    # Rejection by the attribute keeps only images the control takes for digits.
    kept = build_energy("classifier:digit=3").energy.acceptance(images)
    outside = inside.exp() < 0.5
    assert outside[8:].any() and not kept[outside].any()


@pytest.mark.parametrize("value", ["-1", "x", "nan"])
def test_a_bad_realism_weight_is_one_line(value):
    result = runner.invoke(app, ["compose", "--energy", f"classifier:digit=3,realism={value}", "--out", "nowhere"])
    assert result.exit_code == 2 and "realism=" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("energy", ["classifier:thickness=thick,realism=2", "debias:thickness,realism=1"])
def test_realism_on_a_classifier_that_cannot_say_what_is_not_a_digit_is_one_line(energy, tmp_path):
    result = runner.invoke(app, ["compose", "--energy", energy, "--out", str(tmp_path / "never")])
    assert result.exit_code == 2 and "mnist-stroke cannot say" in result.output and "remove realism=" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "never").exists()
    # Without realism= the same energy builds (the default weight applies where a classifier can use it).
    assert build_energy(energy.rsplit(",", 1)[0]).energy.realism == DEFAULT_REALISM


# --- a classifier that is easy to fool ------------------------------------------------------------

PATTERN = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(5))


class Blend(nn.Module):
    """The built-in generator's digit, blended with a fixed noise pattern by ``a = clamp((z_0 - 1) / 2, 0, 1)``:
    absent or faint for most of N(0, I), all there is when ``z_0`` is large."""

    def __init__(self) -> None:
        super().__init__()
        from promptgen.builtin.mnist.models import load_pretrained

        self.digits = load_pretrained("generator")
        self.register_buffer("pattern", PATTERN.clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        a = ((z[:, :1] - 1) / 2).clamp(0, 1)[:, :, None, None]
        return (1 - a) * self.digits(z[:, 1:]) + a * self.pattern


class Gullible(nn.Module):
    """Calls an image a 3 when it is more than half the noise pattern (by correlation): trivially fooled."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = PATTERN.to(x) - PATTERN.to(x).mean()
        share = ((x - x.mean((2, 3), keepdim=True)) * centred).flatten(1).mean(1) / centred.pow(2).mean()
        score = 40 * (share - 0.5)
        logits = torch.zeros(x.shape[0], 10, device=x.device)
        return logits.index_put((torch.arange(x.shape[0]), torch.full((x.shape[0],), 3)), score)


class FoolPlugin:
    @hookimpl
    def promptgen_generators(self):
        info = GeneratorInfo("blend", (28, 28), 1)
        build = lambda spec, options, registry: ModuleGenerator(Blend(), (33,), info)
        return [GeneratorEntry("blend", build, judges=("mnist-digit-evaluator",))]

    @hookimpl
    def promptgen_attribute_classifiers(self):
        digits = [str(d) for d in range(10)]
        build = lambda options, registry: ModuleClassifier(Gullible(), {"digit": (digits, slice(0, 10))}, (28, 28), 1)
        return [ClassifierEntry("gullible", {"digit": digits}, build, role="control")]


@pytest.fixture(scope="module")
def fooled(tmp_path_factory):
    reg = build_registry(extra_plugins=[("fool", FoolPlugin())])
    out = tmp_path_factory.mktemp("fool") / "fooled"
    # guard off: this prompt is meant to be fooled, so that eval and report have junk to find.
    train = TrainConfig(steps=100, batch_size=32, warmup=0.1, eval_every=100, checkpoint_every=100, guard="off", check_samples=300)
    compose("blend", ["classifier:digit=3,model=gullible"], out, train=train, flow={"transforms": 2, "hidden": 32},
            registry=reg, progress=False, preview=0)
    return reg, out


def test_eval_warns_when_a_fooled_prompt_makes_junk(fooled):
    reg, out = fooled
    report = evaluate_prompt(out, n=400, seed=1, registry=reg).report
    assert report.realism == "realism check of classifier mnist-digit-evaluator"
    assert report.base.junk_rate < 0.15
    assert report.prompt.junk_rate > report.base.junk_rate + 0.3
    assert len(report.warnings) >= 1 and "fail the realism check" in report.warnings[0]
    assert realism_warnings(report) == report.warnings
    # The same prompt judged without the junk: no warning.
    clean = report.model_copy(update={"prompt": report.prompt.model_copy(update={"junk_rate": report.base.junk_rate})})
    assert realism_warnings(clean) == []


def test_eval_and_report_show_the_warning_at_the_cli(fooled, tmp_path, monkeypatch):
    reg, out = fooled
    monkeypatch.setattr("promptgen.core.registry._REGISTRY", reg)
    result = runner.invoke(app, ["eval", str(out), "-n", "300", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "junk rate" in result.output and "warning:" in result.output and "realism check" in result.output
    # The verdict, on the terminal: the asked share is of the samples that pass the check, and it is not met.
    assert "✗ not met: the prompt makes more junk than the generator" in result.output
    page = tmp_path / "fooled.html"
    result = runner.invoke(app, ["report", str(out), "-o", str(page), "-n", "300", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "✗ not met: the prompt makes more junk than the generator" in result.output  # report says it on the terminal too
    text = page.read_text()
    assert 'id="warnings"' in text and "fail the realism check" in text
    assert 'id="realism"' in text
    # ... and at the top of the page, before any histogram.
    assert "<h2>Verdict: not met</h2>" in text and text.index('id="verdict"') < text.index('id="samples"') < text.index('id="attributes"')


def test_a_good_prompt_shows_its_junk_rate_without_warning(tmp_path):
    out = tmp_path / "three"
    compose("mnist", ["classifier:digit=3"], out, train=TrainConfig(steps=20, batch_size=32), progress=False, preview=0)
    report = evaluate_prompt(out, n=300, seed=0).report
    assert report.base.junk_rate is not None and report.prompt.junk_rate is not None
    assert report.prompt.junk_rate <= report.base.junk_rate + JUNK_MARGIN
    assert not any("realism check" in w for w in report.warnings)
    assert math.isfinite(report.exact_ess) and 1 <= report.exact_ess <= 300


def test_training_the_realism_check_without_its_evaluator_stops_before_training(tmp_path):
    from promptgen.builtin.mnist.training import train_realism

    # Checked before the data is read or a step is taken: the folders need not hold anything.
    with pytest.raises(ValueError, match=r"evaluator\.safetensors does not exist; train the evaluator into that folder first"):
        train_realism(tmp_path / "no-data", out=tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- issue 24: junk counted as junk, the watch, the guard, the closing check ------------------------------------------


def test_eval_counts_junk_as_junk(fooled):
    reg, out = fooled
    report = evaluate_prompt(out, n=400, seed=1, registry=reg).report
    (digit,) = report.attributes
    prompt, base = digit.prompt, digit.base
    # The histogram, the share and the KL are of the samples that pass the realism check; the junk is beside them.
    assert prompt.junk == pytest.approx(report.prompt.junk_rate) and base.junk == pytest.approx(report.base.junk_rate)
    assert prompt.counted == round(400 * (1 - prompt.junk))
    assert sum(prompt.histogram) == pytest.approx(1.0) and sum(prompt.histogram_all) == pytest.approx(1.0)
    # Half the samples are blobs: counted, they would change the histogram; they are not counted.
    assert prompt.junk > 0.3 and sum(abs(a - b) for a, b in zip(prompt.histogram, prompt.histogram_all)) > 0.05
    assert digit.met is False and report.met is False
    assert any(line.startswith("not met: the prompt makes more junk") for line in report.verdict)
    assert any("junk" in line and "generator" in line for line in report.verdict)


def test_compose_says_not_met_when_its_prompt_made_junk(fooled):
    reg, out = fooled
    from promptgen.artifacts.prompt import load_prompt

    manifest = load_prompt(out, reg).manifest
    check = manifest.check
    assert check is not None and check.n == 300 and not check.healthy and not check.met
    assert check.junk > check.base_junk + 0.3
    # The watch read the flow at each evaluation, the generator first: junk rose, and the guard was off.
    readings = manifest.training.watch
    assert [r.step for r in readings] == [0, 100] and readings[0].healthy and not readings[-1].healthy
    assert manifest.training.kept_step is None


def test_the_guard_keeps_the_last_flow_that_made_no_junk(tmp_path, monkeypatch):
    reg = build_registry(extra_plugins=[("fool", FoolPlugin())])
    monkeypatch.setattr("promptgen.core.registry._REGISTRY", reg)
    args = ["compose", "--gen", "blend", "--energy", "classifier:digit=3,model=gullible", "--steps", "100", "--batch-size", "32",
            "--warmup", "0.5", "--eval-every", "10", "--eval-batch", "200", "--check-samples", "300", "--transforms", "2",
            "--hidden", "32", "-q"]
    kept = runner.invoke(app, [*args, "--out", str(tmp_path / "kept")])
    assert kept.exit_code == 0, kept.output
    from promptgen.artifacts.prompt import load_prompt

    manifest = load_prompt(tmp_path / "kept", reg).manifest
    readings = manifest.training.watch
    assert not readings[-1].healthy  # the last evaluation made junk...
    best = min((r for r in readings[1:] if r.healthy), key=lambda r: r.score)
    assert manifest.training.kept_step == best.step < 100  # ... so the best flow that made none was kept
    assert f"kept the flow of step {best.step}" in " ".join(kept.output.split())
    # The closing check, on fresh noise, judges the kept flow; whatever it finds is what compose prints.
    check = manifest.check
    assert check is not None and ("✗ not met: the prompt makes more junk" in kept.output) == (not check.healthy)
    off = runner.invoke(app, [*args, "--guard", "off", "--out", str(tmp_path / "off")])
    assert off.exit_code == 0, off.output
    assert "✗ not met: the prompt makes more junk than the generator" in off.output
    assert load_prompt(tmp_path / "off", reg).manifest.check.junk > check.junk + 0.2  # the guard kept far less junk


class Wide(nn.Module):
    """Colour images at 32×32: not what the digit realism check was trained on."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(z[:, :3, None, None].expand(-1, 3, 32, 32))


class WidePlugin:
    @hookimpl
    def promptgen_generators(self):
        info = GeneratorInfo("wide", (32, 32), 3)
        build = lambda spec, options, registry: ModuleGenerator(Wide(), (4,), info)
        return [GeneratorEntry("wide", build, judges=("mnist-digit-evaluator",))]


def test_a_realism_check_for_other_images_is_one_line(tmp_path, monkeypatch):
    reg = build_registry(extra_plugins=[("wide", WidePlugin())])
    monkeypatch.setattr("promptgen.core.registry._REGISTRY", reg)
    base = ["compose", "--gen", "wide", "--energy", "classifier:digit=3", "--steps", "2", "--batch-size", "8", "-q"]
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "never")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "the realism check of classifier 'mnist-digit-evaluator' cannot judge generator 'wide'" in text
    assert "trained on 28×28 grey images and 'wide' draws 32×32 RGB images" in text and "--realism off" in text
    assert len(result.output.strip().splitlines()) <= 2 and not (tmp_path / "never").exists()
    # Asked by name, a classifier without a check, a control classifier, an unknown name: each one line.
    for asked, said in (("mnist-stroke-evaluator", "has no realism check"), ("mnist-digit", "is a control classifier"),
                        ("mnist-digit-evaluater", "mnist-digit-evaluator")):
        result = runner.invoke(app, [*base, "--realism", asked, "--out", str(tmp_path / "never")])
        assert result.exit_code == 2 and said in " ".join(result.output.split()), result.output
    # --realism off: no check, and compose says the check could not judge junk.
    result = runner.invoke(app, [*base, "--realism", "off", "--check-samples", "16", "--out", str(tmp_path / "off")])
    assert result.exit_code == 0, result.output
    assert "junk not measured" in result.output


def test_the_watch_reads_digits_and_junk_in_one_pass_and_the_same_generator_images_once(heldout, monkeypatch):
    """The watch's one-pass reading (the evaluator's logits shared with the realism check) says exactly what the
    two-pass reading says, and a baseline of images already judged is not judged again."""
    from promptgen.artifacts.prompt import build_generator, sample_images
    from promptgen.composing.watch import SampleWatch

    registry = get_registry()
    gen = build_generator("mnist")
    watch = SampleWatch([build_energy("debias:digit", registry)], gen, "mnist", registry, torch.device("cpu"))
    assert watch.check is not None and watch.check.joint is not None and watch.check.source in watch.classifiers
    images = torch.cat([heldout[:300], noise(200), blob_images(100)])  # digits and junk, some of each
    one_pass = watch._judge(images)
    calls = []
    joint = watch.check.joint
    monkeypatch.setattr(watch.check, "joint", None)  # the two-pass way: the check, then the classifier
    two_pass = watch._judge(images)
    assert torch.equal(one_pass[1], two_pass[1]) and 0 < int(one_pass[1].sum()) < len(images)
    assert [t.model_dump() for t in one_pass[0]] == [t.model_dump() for t in two_pass[0]]
    monkeypatch.setattr(watch.check, "joint", lambda x: calls.append(len(x)) or joint(x))
    base = sample_images(gen, 64, seed=3)
    first = watch.baseline(base)
    assert calls == [64]
    again = watch.baseline(base.clone())
    assert calls == [64] and again == first  # remembered by the images' bytes
    watch.baseline(sample_images(gen, 64, seed=4))
    assert calls == [64, 64]  # other images are judged
