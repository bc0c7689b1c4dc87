"""Rejection and Langevin sampling of a prompt's energy-based model, checked against closed forms.

The toy problems use an "identity-like" generator, ``x = 0.5 + 0.1·z`` shown as a
(B, 1, 1, d) image, and a quadratic energy, so ``p*`` is a Gaussian known in
closed form. Tolerances are 5 standard errors of the estimate for the sample size.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from promptgen.artifacts.prompt import load_prompt, sample_images
from promptgen.cli import app
from promptgen.composing import compose, prompt_ebm
from promptgen.core.errors import PromptgenError
from promptgen.core.protocols import GeneratorInfo
from promptgen.core.spec import parse_spec
from promptgen.sampling.baselines import SamplerCost, flow_sample, langevin_sample, rejection_sample
from promptgen.testing import one_line_error
from promptgen.training.ebm import EnergyBasedModel, WeightedEnergy
from promptgen.training.trainer import TrainConfig

runner = CliRunner()
SCALE = 0.1  # image = 0.5 + SCALE * z, inside [0, 1] for |z| < 5


class IdentityGenerator:
    """``G(z) = 0.5 + 0.1·z`` as a (B, 1, 1, d) image: the latent, readable back exactly."""

    def __init__(self, dim: int) -> None:
        self.latent_shape = (dim,)
        self.info = GeneratorInfo("identity", (1, dim), 1)

    device = torch.device("cpu")
    dtype = torch.float32

    def decode(self, z):
        return 0.5 + SCALE * z.reshape(z.shape[0], 1, 1, -1)

    def to(self, device):
        return self


def latents(images) -> torch.Tensor:
    return (images.flatten(1).double() - 0.5) / SCALE


class Quadratic:
    """``E = ½·a·‖z − m‖²`` of the image's latent; no lower_bound()."""

    label = "quadratic"
    default_weight = 1.0
    needs_fit = False

    def __init__(self, m, a: float) -> None:
        self.m = torch.tensor(m, dtype=torch.float32)
        self.a = a

    def fit(self, base):
        return {}

    def __call__(self, images, z):
        x = (images.flatten(1) - 0.5) / SCALE
        return 0.5 * self.a * (x - self.m).pow(2).sum(1)

    def to(self, device):
        return self


class BoundedQuadratic(Quadratic):
    def lower_bound(self) -> float:
        return 0.0


class Positive(BoundedQuadratic):
    """Also says which images have "the attribute": the first latent coordinate is positive."""

    def acceptance(self, images):
        return (images.flatten(1)[:, 0] > 0.5).to(images.dtype)


def toy_ebm(energy, dim: int, weight: float = 1.0) -> EnergyBasedModel:
    return EnergyBasedModel(IdentityGenerator(dim), [WeightedEnergy(parse_spec("quadratic"), energy, weight)])


def tilted_gaussian(m: float, a: float, w: float) -> tuple[float, float]:
    """Mean and variance per coordinate of N(z; 0, 1)·exp(−w·½a(z − m)²)."""
    precision = 1 + w * a
    return w * a * m / precision, 1 / precision


def assert_gaussian(z: torch.Tensor, mean, var: float) -> None:
    """Sample mean and variance within 5 standard errors of the closed form."""
    n = z.shape[0]
    mean = torch.as_tensor(mean, dtype=torch.float64)
    se_mean = math.sqrt(var / n)
    se_var = var * math.sqrt(2 / (n - 1))
    assert torch.all((z.mean(0) - mean).abs() < 5 * se_mean), (z.mean(0), mean, se_mean)
    assert torch.all((z.var(0) - var).abs() < 5 * se_var), (z.var(0), var, se_var)




# -- Langevin (MALA) on a known Gaussian -------------------------------------------------------------------------------


def test_mala_with_adapted_step_matches_the_closed_form():
    m, a, w, n, steps = [1.0, -2.0], 3.0, 2.0, 4000, 200
    ebm = toy_ebm(Quadratic(m, a), dim=2, weight=w)
    images, cost = langevin_sample(ebm, n, steps=steps, step_size=0.05, seed=0, batch_size=n)
    mean0, var = tilted_gaussian(1.0, a, w)
    mean1, _ = tilted_gaussian(-2.0, a, w)
    assert images.shape == (n, 1, 1, 2)
    assert_gaussian(latents(images), [mean0, mean1], var)
    assert 0.3 < cost.mh_acceptance < 0.9
    assert cost.step_size > 0.05  # the adaptation found a larger step for this wide-enough target
    assert cost.method == "langevin" and cost.steps == steps and not cost.exact
    assert cost.accepted == n and cost.gradient_evaluations == (steps + 1) * n
    assert cost.draws == (steps + 1) * n and cost.seconds > 0 and cost.samples_per_second > 0


def test_mala_correction_keeps_a_large_fixed_step_exact():
    # Unadjusted Langevin with h = 0.25 would give variance 2h / (1 − (1 − 7h)²) ≈ 1.14 here, not 1/7:
    # only the Metropolis–Hastings correction with the asymmetric proposal densities brings it back.
    m, a, w, n = [1.0, -2.0], 3.0, 2.0, 4000
    ebm = toy_ebm(Quadratic(m, a), dim=2, weight=w)
    images, cost = langevin_sample(ebm, n, steps=200, step_size=0.25, adapt=False, seed=1, batch_size=n)
    mean0, var = tilted_gaussian(1.0, a, w)
    mean1, _ = tilted_gaussian(-2.0, a, w)
    assert_gaussian(latents(images), [mean0, mean1], var)
    assert cost.step_size == pytest.approx(0.25)
    assert 0.2 < cost.mh_acceptance < 0.6


def test_langevin_runs_chains_in_batches_and_repeats_with_a_seed():
    ebm = toy_ebm(Quadratic([0.5], 1.0), dim=1)
    a, cost = langevin_sample(ebm, 10, steps=6, seed=3, batch_size=4)
    b, _ = langevin_sample(ebm, 10, steps=6, seed=3, batch_size=4)
    c, _ = langevin_sample(ebm, 10, steps=6, seed=4, batch_size=4)
    assert a.shape == (10, 1, 1, 1) and cost.accepted == 10
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(set(a.flatten().tolist())) > 5  # chains are independent, not copies


def test_langevin_refuses_bad_settings():
    ebm = toy_ebm(Quadratic([0.0], 1.0), dim=1)
    with pytest.raises(PromptgenError, match="step-size"):
        langevin_sample(ebm, 2, steps=2, step_size=0.0)
    with pytest.raises(PromptgenError, match="steps"):
        langevin_sample(ebm, 2, steps=0)


# -- rejection ---------------------------------------------------------------------------------------------------------


def test_rejection_by_energy_is_the_exact_tilted_gaussian():
    m, a, n = 1.0, 1.0, 20000
    images, cost = rejection_sample(toy_ebm(BoundedQuadratic([m], a), dim=1), n, accept="energy", seed=0, batch_size=4096)
    mean, var = tilted_gaussian(m, a, 1.0)
    assert images.shape == (n, 1, 1, 1)
    assert_gaussian(latents(images), [mean], var)
    # P(accept) = E_N(0,1)[exp(−½(z − 1)²)] = exp(−¼)/√2.
    rate = math.exp(-0.25) / math.sqrt(2)
    assert abs(cost.acceptance_rate - rate) < 5 * math.sqrt(rate * (1 - rate) / cost.draws)
    assert cost.exact and cost.accept == "energy" and cost.method == "rejection" and cost.note == ""
    assert cost.accepted == n and cost.draws >= n and cost.energy_evaluations == cost.draws
    assert cost.draws_per_sample == pytest.approx(cost.draws / n)


def test_rejection_without_lower_bound_estimates_it_and_says_so():
    m, a, n = 1.0, 1.0, 8000
    images, cost = rejection_sample(toy_ebm(Quadratic([m], a), dim=1), n, accept="auto", seed=0, batch_size=1024)
    mean, var = tilted_gaussian(m, a, 1.0)
    assert_gaussian(latents(images), [mean], var)  # the estimated bound (pilot min − 1) is below the true one, 0
    assert cost.accept == "energy" and not cost.exact
    assert "lower_bound" in cost.note and "pilot" in cost.note
    assert cost.draws > cost.accepted  # the pilot batch counts


def test_rejection_by_attribute_keeps_only_accepted_images():
    ebm = toy_ebm(Positive([0.0, 0.0], 1.0), dim=2)
    # auto: exact samples of p* when every energy knows its bound (issue 26), the attribute's test only when asked.
    assert rejection_sample(ebm, 8, accept="auto", seed=0)[1].accept == "energy"
    images, cost = rejection_sample(ebm, 500, accept="attribute", seed=0)
    assert cost.accept == "attribute" and cost.exact and "not p*" in cost.target
    z = latents(images)
    assert (z[:, 0] > 0).all()
    # Half of the base samples have z₀ > 0; the other coordinate is untouched N(0, 1).
    assert abs(cost.acceptance_rate - 0.5) < 5 * math.sqrt(0.25 / cost.draws)
    assert abs(float(z[:, 1].mean())) < 5 * math.sqrt(1 / 500)


def test_rejection_by_attribute_needs_every_energy_to_have_acceptance():
    with pytest.raises(PromptgenError, match="acceptance") as info:
        rejection_sample(toy_ebm(BoundedQuadratic([0.0], 1.0), dim=1), 4, accept="attribute")
    assert "\n" not in str(info.value) and "--accept energy" in str(info.value)
    with pytest.raises(PromptgenError, match="--accept"):
        rejection_sample(toy_ebm(BoundedQuadratic([0.0], 1.0), dim=1), 4, accept="sometimes")


def test_rejection_gives_up_after_max_draws():
    # Acceptance exp(−½·100·(z − 3)²): about 1 in 2 000 draws.
    ebm = toy_ebm(BoundedQuadratic([3.0], 100.0), dim=1)
    with pytest.raises(PromptgenError) as info:
        rejection_sample(ebm, 5, accept="energy", max_draws=300, batch_size=128)
    text = str(info.value)
    assert "\n" not in text and "of 5 images in 300 draws" in text and "--max-draws" in text and "flow" in text


def test_rejection_is_repeatable_with_a_seed():
    ebm = toy_ebm(BoundedQuadratic([1.0], 1.0), dim=1)
    a, _ = rejection_sample(ebm, 50, seed=5, batch_size=16)
    b, _ = rejection_sample(ebm, 50, seed=5, batch_size=16)
    c, _ = rejection_sample(ebm, 50, seed=6, batch_size=16)
    assert torch.equal(a, b) and not torch.equal(a, c)


# -- on a trained prompt -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prompt_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("samplers") / "three"
    train = TrainConfig(steps=3, batch_size=8, eval_every=3, checkpoint_every=3, fit_samples=16, eval_batch=16)
    compose("mnist", ["classifier:digit=3"], out, train=train, flow={"transforms": 1, "hidden": 8}, progress=False, preview=0)
    return out


def test_attribute_rejection_on_a_prompt_returns_only_the_asked_digit(prompt_dir):
    ebm = prompt_ebm(load_prompt(prompt_dir))
    images, cost = rejection_sample(ebm, 24, accept="attribute", seed=0)
    assert cost.accept == "attribute" and cost.accepted == 24 and images.shape == (24, 1, 28, 28)
    classifier = ebm.terms[0].energy.classifier  # the control classifier of classifier:digit=3
    with torch.no_grad():
        assert (classifier.log_probs(images)["digit"].argmax(1) == 3).all()
    assert cost.acceptance_rate < 0.5  # a tenth or so of the generator's digits are 3s


def test_energy_rejection_and_langevin_on_a_prompt(prompt_dir):
    ebm = prompt_ebm(load_prompt(prompt_dir))
    images, cost = rejection_sample(ebm, 4, accept="energy", seed=0)
    assert images.shape == (4, 1, 28, 28) and cost.exact  # the classifier energy is bounded below by 0
    images, cost = langevin_sample(ebm, 3, steps=4, seed=0)
    assert images.shape == (3, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert cost.gradient_evaluations == 5 * 3


def test_flow_cost_matches_flow_sampling(prompt_dir):
    prompt = load_prompt(prompt_dir)
    images, cost = flow_sample(prompt, 6, seed=2)
    assert torch.equal(images, sample_images(prompt, 6, seed=2))
    assert cost.method == "flow" and cost.draws == 6 and cost.energy_evaluations == 0 and not cost.exact
    assert SamplerCost.model_validate_json(cost.model_dump_json()) == cost


def test_python_api_methods(prompt_dir):
    from promptgen.api import sample, sample_with_cost

    flow = sample(str(prompt_dir), n=4, seed=1)
    assert torch.equal(flow, sample(str(prompt_dir), n=4, seed=1, method="flow"))
    images = sample(str(prompt_dir), n=4, seed=1, method="rejection", accept="attribute")
    assert images.shape == (4, 1, 28, 28)
    images, cost = sample_with_cost(load_prompt(prompt_dir), 2, method="langevin", steps=3)
    assert images.shape == (2, 1, 28, 28) and cost.steps == 3
    with pytest.raises(PromptgenError, match="prompt folder"):
        sample("mnist", n=2, method="rejection")
    with pytest.raises(PromptgenError, match="unknown method"):
        sample(str(prompt_dir), n=2, method="mcmc")


# -- the CLI -----------------------------------------------------------------------------------------------------------


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_rejection_writes_images_and_cost(prompt_dir, tmp_path):
    result = run("sample", prompt_dir, "--method", "rejection", "-n", "16", "-o", tmp_path / "x.png", "--cost-json", tmp_path / "c.json")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x.png").exists()
    cost = json.loads((tmp_path / "c.json").read_text())
    assert cost["method"] == "rejection" and cost["accept"] == "energy" and cost["exact"]  # auto: exact, the energies are bounded
    assert cost["accepted"] == 16 and cost["draws"] >= 16
    assert 0 < cost["acceptance_rate"] <= 1 and cost["seconds"] > 0
    assert "acceptance rate" in result.stdout and "samples/s" in result.stdout


def test_cli_langevin(prompt_dir, tmp_path):
    result = run("sample", prompt_dir, "--method", "langevin", "--steps", "5", "-n", "8", "-o", tmp_path / "l.npz",
                 "--cost-json", tmp_path / "c.json")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "l.npz")["images"].shape == (8, 1, 28, 28)
    cost = json.loads((tmp_path / "c.json").read_text())
    assert cost["method"] == "langevin" and cost["steps"] == 5 and cost["accepted"] == 8
    assert cost["gradient_evaluations"] == 6 * 8 and cost["step_size"] > 0
    assert "MH acceptance" in result.stdout


def test_cli_flow_is_the_default_and_can_write_its_cost(prompt_dir, tmp_path):
    assert run("sample", prompt_dir, "-n", "5", "--seed", "2", "-o", tmp_path / "a.npz").exit_code == 0
    result = run("sample", prompt_dir, "-n", "5", "--seed", "2", "--method", "flow", "-o", tmp_path / "b.npz",
                 "--cost-json", tmp_path / "c.json")
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.load(tmp_path / "a.npz")["images"], np.load(tmp_path / "b.npz")["images"])
    cost = json.loads((tmp_path / "c.json").read_text())
    assert cost["method"] == "flow" and cost["draws"] == 5


def test_cli_methods_other_than_flow_need_a_prompt(tmp_path):
    one_line_error(run("sample", "--gen", "mnist", "--method", "rejection", "-o", tmp_path / "g.png"), "prompt folder", "--gen")
    one_line_error(run("sample", "--gen", "mnist", "--method", "langevin", "-o", tmp_path / "g.png"), "prompt folder")
    assert not (tmp_path / "g.png").exists()


def test_cli_max_draws_spent(prompt_dir, tmp_path):
    # 16 images can never come out of 10 draws.
    result = run("sample", prompt_dir, "--method", "rejection", "-n", "16", "--max-draws", "10", "-o", tmp_path / "g.png",
                 "--cost-json", tmp_path / "c.json")
    one_line_error(result, "accepted only", "10 draws", "--max-draws", "--method flow")
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "c.json").exists()


def test_cli_bad_method_accept_and_cost_path(prompt_dir, tmp_path):
    one_line_error(run("sample", prompt_dir, "--method", "mcmc", "-o", tmp_path / "g.png"), "unknown --method", "langevin")
    one_line_error(run("sample", prompt_dir, "--method", "rejection", "--accept", "maybe", "-o", tmp_path / "g.png"),
                   "unknown --accept")
    one_line_error(run("sample", prompt_dir, "-o", tmp_path / "g.png", "--cost-json", tmp_path / "no" / "c.json"), "does not exist")
