import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from promptgen.training.flow import CouplingFlow, FlowConfig, coupling_masks


def randomised(flow: CouplingFlow, scale: float = 0.3) -> CouplingFlow:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return flow


KINDS = ["spline-coupling", "affine-coupling"]


@pytest.mark.parametrize("kind", KINDS)
def test_starts_at_identity(kind):
    flow = CouplingFlow(FlowConfig(features=6, transforms=4, hidden=16, kind=kind))
    eps = torch.randn(10, 6) * 2
    z, log_det = flow(eps)
    assert torch.allclose(z, eps, atol=1e-5)
    assert torch.allclose(log_det, torch.zeros(10), atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("features", [2, 3, 5])
def test_log_det_matches_autograd_jacobian(features, kind):
    flow = randomised(CouplingFlow(FlowConfig(features=features, transforms=4, hidden=8, kind=kind))).double()
    eps = torch.randn(4, features, dtype=torch.float64)
    _, log_det = flow(eps)
    for i in range(eps.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda e: flow(e[None])[0][0], eps[i])
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign > 0
        assert torch.allclose(log_det[i], logabs, atol=1e-8), (log_det[i], logabs)
    # The transform is not volume preserving once trained: the test has teeth.
    assert log_det.abs().max() > 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_inverse_recovers_noise(kind):
    flow = randomised(CouplingFlow(FlowConfig(features=7, transforms=6, hidden=16, kind=kind))).double()
    eps = torch.randn(32, 7, dtype=torch.float64) * 2
    z, _ = flow(eps)
    assert not torch.allclose(z, eps)
    assert torch.allclose(flow.inverse(z), eps, atol=1e-8)


def test_multidimensional_latent_shape():
    flow = randomised(CouplingFlow(FlowConfig(features=12, latent_shape=(3, 4), transforms=2, hidden=8)))
    eps = torch.randn(5, 3, 4)
    z, log_det = flow(eps)
    assert z.shape == (5, 3, 4) and log_det.shape == (5,)
    assert torch.allclose(flow.inverse(z), eps, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(features=st.integers(2, 40), transforms=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_masks_update_every_feature(features, transforms, seed):
    masks = coupling_masks(features, transforms, seed)
    assert len(masks) == transforms
    for m in masks:
        assert 0 < int(m.sum()) < features  # both halves non-empty
    if transforms >= 2:
        # Each feature is transformed (mask False) by at least one of the first two layers.
        assert bool((~masks[0] | ~masks[1]).all())


@pytest.mark.parametrize("kind", KINDS)
def test_log_prob_is_the_density_of_the_flows_samples(kind):
    flow = randomised(CouplingFlow(FlowConfig(features=3, transforms=4, hidden=8, kind=kind)), scale=0.1).double()
    eps = torch.randn(16, 3, dtype=torch.float64)
    z, log_det = flow(eps)
    # Change of variables: log q(z) = log N(ε) − log|det ∂f/∂ε|.
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(eps).sum(1) - log_det
    assert torch.allclose(flow.log_prob(z), expected, atol=1e-8)
    assert (flow.log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)).abs().max() > 1e-3


def test_a_conditional_flow_takes_its_condition_as_context():
    from promptgen.training.config import FlowConfig
    from promptgen.training.flow import CouplingFlow

    torch.manual_seed(0)
    flow = CouplingFlow(FlowConfig(features=4, transforms=2, hidden=8, conditions=2))
    for layer in flow.transform.transforms:  # away from the identity start, so the condition matters
        torch.nn.init.normal_(layer.hyper[-1].weight, std=0.3)
    eps = torch.randn(5, 4)
    a, b = torch.zeros(5, 2), torch.ones(5, 2)
    za, la = flow(eps, condition=a)
    zb, _ = flow(eps, condition=b)
    assert not torch.allclose(za, zb)
    assert torch.allclose(flow.inverse(za, condition=a), eps, atol=1e-4)
    assert torch.allclose(flow.log_prob(za, condition=a), -0.5 * eps.pow(2).sum(1) - 2 * math.log(2 * math.pi) - la, atol=1e-4)
    with pytest.raises(ValueError, match=r"give a condition of shape \(5, 2\)"):
        flow(eps)
    with pytest.raises(ValueError, match="takes no condition"):
        CouplingFlow(FlowConfig(features=4, transforms=1, hidden=8))(eps, condition=a)
    both = CouplingFlow(FlowConfig(features=4, transforms=2, hidden=8, conditions=2, classes=3))
    z, _ = both(eps, torch.tensor([0, 1, 2, 0, 1]), condition=a)
    assert z.shape == eps.shape
