"""De-biasing: the dual fit, the energy's sign and scale, specs, and the closed loop."""

from __future__ import annotations

import json
import math
from typing import ClassVar

import pytest
import torch

from promptgen.composing import build_energy, compose
from promptgen.core.errors import PromptgenError, SpecError
from promptgen.core.metrics import kl_divergence
from promptgen.core.protocols import BaseSample
from promptgen.energies.debias import Block, DebiasEnergy, fit_moment_constraint
from promptgen.training.trainer import TrainConfig


def one_hot_sample(counts: list[int]) -> torch.Tensor:
    return torch.eye(len(counts)).repeat_interleave(torch.tensor(counts), dim=0)


def test_dual_fit_matches_the_closed_form_for_one_attribute():
    # Base frequencies p = (0.5, 0.3, 0.2); for one-hot φ the tilt is β_k = log(μ_k / p_k) + c.
    phi = one_hot_sample([500, 300, 200])
    mu = torch.tensor([0.2, 0.3, 0.5])
    fit = fit_moment_constraint(phi, mu)
    assert fit.converged
    assert torch.allclose(fit.moments, mu, atol=1e-5)
    expected = torch.log(mu / torch.tensor([0.5, 0.3, 0.2]))
    assert torch.allclose(fit.beta - fit.beta[0], expected - expected[0], atol=1e-4)
    # Effective sample size of weights w_k ∝ μ_k / p_k: 1 / (N Σ_i w_i²).
    w = (mu / torch.tensor([0.5, 0.3, 0.2])) / 1000
    assert fit.ess == pytest.approx(float(1 / (torch.tensor([500, 300, 200]) * w**2).sum() / 1000), rel=1e-4)


def test_dual_fit_of_two_independent_attributes_is_the_product_of_their_tilts():
    # A full factorial sample where attributes a (2 classes) and b (3 classes) are independent.
    pa, pb = [0.8, 0.2], [0.5, 0.25, 0.25]
    rows = []
    for i, p in enumerate(pa):
        for j, q in enumerate(pb):
            rows += [torch.cat([torch.eye(2)[i], torch.eye(3)[j]])] * round(p * q * 400)
    phi = torch.stack(rows)
    mu = torch.tensor([0.5, 0.5, 1 / 3, 1 / 3, 1 / 3])
    fit = fit_moment_constraint(phi, mu)
    assert torch.allclose(fit.moments, mu, atol=1e-5)
    ba, bb = fit.beta[:2], fit.beta[2:]
    assert float(ba[1] - ba[0]) == pytest.approx(math.log(0.8 / 0.2), abs=1e-4)
    assert float(bb[1] - bb[0]) == pytest.approx(math.log(0.5 / 0.25), abs=1e-4)
    assert float(bb[2] - bb[1]) == pytest.approx(0.0, abs=1e-4)


class TwoClassClassifier:
    """Class 1 where the first pixel is bright, class 0 where it is dark (nearly hard)."""

    attributes: ClassVar = {"bright": ["dark", "light"]}

    def log_probs(self, images):
        logit = (images.flatten(1)[:, 0] - 0.5) * 40
        return {"bright": torch.stack([torch.nn.functional.logsigmoid(-logit), torch.nn.functional.logsigmoid(logit)], 1)}

    def to(self, device):
        return self


def images_with(light: int, dark: int) -> torch.Tensor:
    x = torch.zeros(light + dark, 1, 2, 2)
    x[:light, 0, 0, 0] = 1.0
    return x


def test_debias_energy_lowers_the_rare_class_by_the_log_ratio():
    energy = DebiasEnergy([Block("bright", ("bright",), ("dark", "light"), (0.5, 0.5))], {"bright": TwoClassClassifier()}, "debias:bright", refit=0)
    base = images_with(light=250, dark=750)
    report = energy.fit(BaseSample(latents=torch.zeros(1000, 2), images=base))
    assert report["base KL bright"] == pytest.approx(kl_divergence(torch.tensor([0.75, 0.25]), torch.tensor([0.5, 0.5])), abs=1e-3)
    assert report["fit KL bright"] == pytest.approx(0.0, abs=1e-6)
    e = energy(images_with(1, 1), torch.zeros(2, 2))
    # E = −β·φ: the light (rare) image has the lower energy, by log(0.75 / 0.25) = log 3.
    assert float(e[0] - e[1]) == pytest.approx(-math.log(3), abs=1e-3)  # e[0] is the light one
    # The sign: a flow that samples exp(−E) tilts the base by exactly those odds.
    w = torch.exp(-energy(base, torch.zeros(1000, 2)))
    assert float(w[:250].sum() / w.sum()) == pytest.approx(0.5, abs=1e-3)
    # Rejection sampling needs a bound it never goes below.
    assert energy.lower_bound() <= float(e.min()) + 1e-6


def test_debias_weight_defaults_to_one_and_scales_the_tilt():
    a = build_energy("debias:digit")
    b = build_energy("debias:digit@2")
    assert (a.weight, b.weight) == (1.0, 2.0)
    # The weight multiplies β in the potential: the tilt of @2 is twice that of @1.
    from promptgen.artifacts.prompt import build_generator
    from promptgen.training.ebm import EnergyBasedModel

    gen = build_generator("mnist")
    for t in (a, b):
        t.energy.beta = torch.linspace(-1.0, 1.0, 10)
    z = torch.randn(4, 32)
    pa = EnergyBasedModel(gen, [a]).potential(z)
    pb = EnergyBasedModel(gen, [b]).potential(z)
    torch.testing.assert_close(pb.total - pb.prior, 2 * (pa.total - pa.prior))
    assert (pa.total - pa.prior).abs().max() > 1e-3


def test_joint_debias_has_one_class_per_combination():
    term = build_energy("debias:digit*thickness")
    (target,) = term.energy.targets()
    assert target.attribute == "digit*thickness" and len(target.labels) == 30
    assert target.labels[:4] == ("0/thin", "0/medium", "0/thick", "1/thin")
    assert sum(target.target) == pytest.approx(1.0)
    phi = term.energy.features(torch.rand(4, 1, 28, 28))
    assert phi.shape == (4, 30) and torch.allclose(phi.sum(1), torch.ones(4), atol=1e-4)


def test_explicit_targets_inline_and_from_a_file(tmp_path):
    t = build_energy("debias:thickness=0.2/0.3/0.5").energy.targets()[0]
    assert t.target == pytest.approx((0.2, 0.3, 0.5))
    path = tmp_path / "target.json"
    path.write_text(json.dumps({"thin": 0.5, "medium": 0.25, "thick": 0.25}))
    t = build_energy(f"debias:thickness={path}").energy.targets()[0]
    assert t.target == pytest.approx((0.5, 0.25, 0.25))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("debias:colour", "unknown attribute 'colour'"),
        ("debias:thickness=0.5/0.4/0.3", "sums to 1.2, not 1"),
        ("debias:thickness=0.5/0.5", "has 3 classes (thin, medium, thick), the target has 2 numbers"),
        ("debias:thickness=a/b/c", "not numbers separated by '/'"),
        ("debias:thickness=0/0.5/0.5", "cannot be reached by a tilt"),
        ("debias:digit,digit", "appears twice"),
        ("debias:thickness=missing.json", "cannot read the target file"),
        ("debias", "name the attributes"),
        ("debias:digit,refit=-1", "refit=-1 must be at least 0; refit: .*whole number >= 0"),
    ],
)
def test_bad_debias_specs_get_one_line_errors(spec, message):
    with pytest.raises(PromptgenError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        build_energy(spec)
    assert "\n" not in str(info.value)


def test_bad_debias_spec_at_the_cli_exits_2(tmp_path):
    from typer.testing import CliRunner

    from promptgen.cli import app

    result = CliRunner().invoke(app, ["compose", "--energy", "debias:thickness=0.5/0.5", "--out", str(tmp_path / "p")])
    assert result.exit_code == 2
    assert "has 3 classes" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "p").exists()


def test_closed_loop_refits_beta_on_the_flows_samples(tmp_path):
    train = TrainConfig(steps=8, batch_size=16, eval_every=4, checkpoint_every=8, fit_samples=256, eval_batch=32, warmup=0.25, settle=0.25)
    # From Python the advice is a warning: 8 steps are too few to even out thickness.
    with pytest.warns(UserWarning, match=r"debias:thickness,refit=2: at its last refit .* train longer \(--steps\)"):
        prompt = compose(
            "mnist", ["debias:thickness,refit=2"], tmp_path / "p", train=train, flow={"transforms": 1, "hidden": 8}, progress=False, preview=0
        )
    summary = prompt.manifest.training
    # Adapted after steps 2, 4 and 6 (warm-up ends at 2, settling starts after 6).
    assert [a["step"] for a in summary.adaptations] == [2.0, 4.0, 6.0]
    assert "debias:thickness,refit=2 flow KL thickness" in summary.adaptations[0]
    record = prompt.manifest.energies[0]
    assert "fit KL thickness" in summary.fits["debias:thickness,refit=2"]
    assert len(record.state["beta"]) == 3 and record.targets[0].target == pytest.approx([1 / 3] * 3)
    # The saved β is the fit plus the refits, and rebuilding the energy restores it.
    from promptgen.composing import rebuild_terms

    (term,) = rebuild_terms(prompt.manifest.energies)
    assert term.energy.beta.tolist() == pytest.approx(record.state["beta"])


def test_open_loop_never_adapts(tmp_path):
    train = TrainConfig(steps=4, batch_size=8, eval_every=4, checkpoint_every=4, fit_samples=64, eval_batch=16, warmup=0)
    prompt = compose(
        "mnist", ["debias:thickness,refit=0"], tmp_path / "p", train=train, flow={"transforms": 1, "hidden": 8}, progress=False, preview=0
    )
    assert prompt.manifest.training.adaptations == []


def test_state_with_the_wrong_size_is_refused():
    energy = build_energy("debias:thickness").energy
    with pytest.raises(SpecError, match="saved β has 2 numbers"):
        energy.load_state({"beta": [0.0, 1.0]})


def test_the_fit_decodes_base_samples_a_chunk_at_a_time():
    # 8,192 StyleGAN images at 1024² do not fit in memory: the fit must never ask for them all at once.
    from promptgen.core.spec import parse_spec
    from promptgen.training.ebm import EnergyBasedModel, WeightedEnergy
    from promptgen.training.trainer import fit_energies

    class CountingGenerator:
        latent_shape = (2,)
        batches: ClassVar[list[int]] = []

        def decode(self, z):
            self.batches.append(z.shape[0])
            return (z[:, :1, None, None] > 0).float().expand(-1, 1, 2, 2)

        def to(self, device):
            return self

    energy = DebiasEnergy([Block("bright", ("bright",), ("dark", "light"), (0.5, 0.5))], {"bright": TwoClassClassifier()}, "debias:bright", refit=0)
    energy.fit_samples = 3000
    gen = CountingGenerator()
    ebm = EnergyBasedModel(gen, [WeightedEnergy(parse_spec("debias:bright"), energy, 1.0)])
    report = fit_energies(ebm, 100, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert sum(gen.batches) == 3000 and max(gen.batches) <= 256
    assert report["debias:bright"]["fit KL bright"] == pytest.approx(0.0, abs=1e-6)


def test_advice_never_points_at_a_mode_measured_worse():
    def energy(mode="tilt"):
        return DebiasEnergy([Block("bright", ("bright",), ("dark", "light"), (0.5, 0.5))], {"bright": TwoClassClassifier()},
                            "debias:bright", mode=mode)

    tilt = energy()
    tilt.fit(BaseSample(latents=torch.zeros(1000, 2), images=images_with(light=20, dark=980)))
    assert tilt.advice() is None  # no refit yet: nothing known about the flow
    # The flow still draws 5 % light after a refit: KL 0.495 from even, the advice says so. The tilt was asked for,
    # so the mixture was never measured on this run: the advice is mode=auto, which measures both.
    tilt.adapt(BaseSample(latents=torch.zeros(1000, 2), images=images_with(light=50, dark=950)))
    note = tilt.advice()
    assert note is not None and "\n" not in note
    assert f"KL {kl_divergence([0.95, 0.05], [0.5, 0.5]):.3f}" in note and "('light': 5.0% against 50.0%)" in note
    assert note.endswith("try mode=auto, which also tries the mixture and keeps the better") and "mode=mixture" not in note
    # 35 % against 50 %: short, but not rare; more steps close that gap.
    tilt.adapt(BaseSample(latents=torch.zeros(1000, 2), images=images_with(light=350, dark=650)))
    note = tilt.advice()
    assert note is not None and "('light': " in note and note.endswith("train longer (--steps)") and "mode=" not in note
    # A flow within ADVICE_KL of the target: no advice.
    tilt.adapt(BaseSample(latents=torch.zeros(1000, 2), images=images_with(light=460, dark=540)))
    assert tilt.advice() is None
    # Asked for auto and become the tilt: compose tried the mixture and it measured worse, so it is never advised.
    auto = energy("auto")
    auto.fit(BaseSample(latents=torch.zeros(1000, 2), images=images_with(light=20, dark=980)))
    auto.settle_mode("tilt")
    auto.adapt(BaseSample(latents=torch.zeros(1000, 2), images=images_with(light=50, dark=950)))
    note = auto.advice()
    assert note is not None and note.endswith("train longer (--steps)") and "mixture" not in note
    # The mixture has no loop to fall short in.
    mixture = energy("mixture")
    mixture.fit(BaseSample(latents=torch.zeros(1000, 2), images=images_with(light=20, dark=980)))
    assert mixture.advice() is None


def test_compose_shows_the_advice_after_training(tmp_path):
    from typer.testing import CliRunner

    from promptgen.cli import app

    args = ["compose", "--steps", "8", "--batch-size", "16", "--eval-every", "4", "--checkpoint-every", "8",
            "--transforms", "1", "--hidden", "8", "-q"]
    # Thick 1s and thin 0s are 0.04-0.06 % of the generator's draws, each asked 1/30.
    far = CliRunner().invoke(app, [*args, "--energy", "debias:digit*thickness,mode=tilt,refit=2", "--out", str(tmp_path / "far")])
    assert far.exit_code == 0, far.output
    text = " ".join(far.output.split())
    assert "note: debias:digit*thickness,mode=tilt,refit=2: at its last refit the flow was KL" in text
    # Far under their share, with the tilt asked for: the advice is mode=auto, which measures the mixture too.
    assert "against 3.3%); the tilt lifts a class this rare slowly: try mode=auto" in text
    near = CliRunner().invoke(app, [*args, "--energy", "debias:digit,refit=2", "--out", str(tmp_path / "near")])
    assert near.exit_code == 0, near.output
    assert "note:" not in near.output
