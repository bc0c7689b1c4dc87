"""The ink energy's values, ordering, gradients and weight."""

from __future__ import annotations

import pytest
import torch
from promptgen_plugin_ink import DEFAULT_SCALE, DEFAULT_WEIGHT, InkEnergy, mean_ink

from promptgen.plugin import Energy, capabilities, parse_spec
from promptgen.testing import build_energy, build_registry


def ink(spec: str) -> InkEnergy:
    """Build the energy exactly as `promptgen compose --energy SPEC` does."""
    return build_energy(spec, build_registry()).energy


def flat(value: float, shape=(1, 28, 28), batch: int = 1) -> torch.Tensor:
    return torch.full((batch, *shape), value)


def test_fits_the_energy_protocol():
    e = ink("ink:target=0.2")
    assert isinstance(e, Energy)
    assert not capabilities(e).fittable and not hasattr(e, "fit")  # nothing to fit
    assert e.to("cpu") is e
    assert e.label == "ink:target=0.2"


def test_value_matches_the_formula():
    e = ink("ink:target=0.2")
    images = flat(0.5, batch=3)
    out = e(images, torch.zeros(3, 32))
    assert out.shape == (3,)
    assert torch.allclose(out, torch.full((3,), ((0.5 - 0.2) / DEFAULT_SCALE) ** 2))  # 225
    # an explicit scale
    e = ink("ink:target=0.2,scale=0.1")
    assert torch.allclose(e(images, torch.zeros(3, 32)), torch.full((3,), 9.0))


def test_ink_is_the_mean_over_channels_and_pixels():
    images = torch.zeros(2, 3, 4, 4)
    images[0, 0] = 1.0  # one of three channels fully on
    images[1, :, :2] = 0.5  # top half of every channel at half intensity
    assert torch.allclose(mean_ink(images), torch.tensor([1 / 3, 0.25]))
    e = InkEnergy(target=0.25, scale=0.5)
    assert torch.allclose(e(images, torch.zeros(2, 8)), torch.tensor([((1 / 3 - 0.25) / 0.5) ** 2, 0.0]))


def test_closer_to_the_target_is_lower():
    e = ink("ink:target=0.25")
    levels = torch.tensor([0.25, 0.2, 0.35, 0.1, 0.6, 1.0])  # ordered by distance from 0.25
    images = torch.stack([flat(v.item())[0] for v in levels])
    energies = e(images, torch.zeros(len(levels), 32))
    assert energies[0] == 0
    assert torch.all(energies[1:] > energies[:-1])


def test_gradient_reaches_the_images():
    e = InkEnergy(target=0.2, scale=0.05)
    images = flat(0.5, shape=(1, 4, 4), batch=2).requires_grad_()
    e(images, torch.zeros(2, 32)).sum().backward()
    # d/dx ((mean(x) - t) / s)^2 = 2 (mean(x) - t) / s^2 / (C*H*W), the same for every pixel
    expected = 2 * (0.5 - 0.2) / 0.05**2 / 16
    assert torch.allclose(images.grad, torch.full_like(images, expected))


def test_gradient_reaches_the_latents_through_a_generator():
    torch.manual_seed(0)
    decoder = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Sigmoid(), torch.nn.Unflatten(1, (1, 4, 4)))
    z = torch.randn(5, 8, requires_grad=True)
    ink("ink:target=0.9")(decoder(z), z).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_weight_defaults_and_overrides():
    assert build_energy("ink:target=0.2").weight == DEFAULT_WEIGHT == 1.0
    term = build_energy("ink:target=0.2@25")
    assert term.weight == 25.0
    assert term.spec == parse_spec("ink:target=0.2@25")
    assert term.label == "ink:target=0.2"


@pytest.mark.parametrize("target", ["0", "1", "0.0", "1e-1", " 0.3 "])
def test_edge_and_spelled_targets_are_accepted(target):
    e = ink(f"ink:target={target}")
    assert e.target == float(target)
