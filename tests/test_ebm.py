import math

import pytest
import torch

from promptgen.core.protocols import GeneratorInfo
from promptgen.core.spec import parse_spec
from promptgen.training.ebm import EnergyBasedModel, WeightedEnergy


class PixelsAreLatents:
    """G(z) = z laid out as a 1×1×d image (no squashing), to keep the arithmetic by hand."""

    info = GeneratorInfo(name="identity", resolution=(1, 2), channels=1)
    latent_shape = (2,)
    device = torch.device("cpu")
    dtype = torch.float32

    def decode(self, z):
        return z.view(z.shape[0], 1, 1, -1)

    def to(self, device):
        return self


class SumOfPixels:
    label = "sum"
    default_weight = 1.0
    needs_fit = False

    def fit(self, base):
        return {}

    def __call__(self, images, latents):
        return images.flatten(1).sum(1)

    def to(self, device):
        return self


class Affine:
    """z = a ε + b with log|det| = d log a."""

    latent_shape = (2,)

    def __init__(self, a, b):
        self.a, self.b = a, b

    def forward(self, eps):
        return self.a * eps + self.b, torch.full((eps.shape[0],), 2 * math.log(self.a))

    def inverse(self, z):
        return (z - self.b) / self.a


def test_reverse_kl_loss_matches_hand_computation():
    ebm = EnergyBasedModel(PixelsAreLatents(), [WeightedEnergy(parse_spec("sum@3"), SumOfPixels(), 3.0)])
    eps = torch.tensor([[1.0, 2.0]])
    loss, pot, log_det = ebm.reverse_kl(Affine(2.0, 0.5), eps)
    # z = (2.5, 4.5): ½‖z‖² = 13.25; 3 · E = 3 · 7 = 21; log|det| = 2 ln 2.
    assert math.isclose(pot.prior.item(), 13.25, rel_tol=1e-6)
    assert math.isclose(pot.energies["sum"].item(), 7.0, rel_tol=1e-6)
    assert math.isclose(log_det.item(), 2 * math.log(2), rel_tol=1e-6)
    assert math.isclose(loss.item(), 13.25 + 21.0 - 2 * math.log(2), rel_tol=1e-6)


def test_without_energies_the_potential_is_the_gaussian_prior():
    ebm = EnergyBasedModel(PixelsAreLatents(), [])
    z = torch.randn(8, 2)
    assert torch.allclose(ebm.potential(z).total, 0.5 * (z**2).sum(1))


def test_weights_scale_each_term():
    g = PixelsAreLatents()
    z = torch.randn(4, 2)
    one = EnergyBasedModel(g, [WeightedEnergy(parse_spec("sum@1"), SumOfPixels(), 1.0)]).potential(z)
    ten = EnergyBasedModel(g, [WeightedEnergy(parse_spec("sum@10"), SumOfPixels(), 10.0)]).potential(z)
    assert torch.allclose(ten.total - ten.prior, 10 * (one.total - one.prior))


def test_importance_bank_resamples_the_tilted_model():
    from promptgen.training.trainer import ImportanceBank

    # p*(z) ∝ N(z; 0, I) exp(−Σ z): a Gaussian with mean −1 in each coordinate.
    ebm = EnergyBasedModel(PixelsAreLatents(), [WeightedEnergy(parse_spec("sum"), SumOfPixels(), 1.0)])
    g = torch.Generator().manual_seed(0)
    bank = ImportanceBank(ebm, 40_000, g, torch.device("cpu"))
    draws = bank.draw(20_000, g)
    assert torch.allclose(draws.mean(0), torch.tensor([-1.0, -1.0]), atol=0.05)
    assert torch.allclose(draws.var(0), torch.tensor([1.0, 1.0]), atol=0.08)
    # Weights exp(−Σz) on N(0, I) have ESS share exp(−d) = e^-2 in expectation.
    assert bank.ess / 40_000 == pytest.approx(math.exp(-2), rel=0.15)
