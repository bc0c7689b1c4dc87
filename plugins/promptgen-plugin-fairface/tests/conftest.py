from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet34

from promptgen.core.registry import reset_registry


@pytest.fixture(autouse=True)
def _fresh_registry():
    # promptgen builds its registry once per process; start every test from a clean one.
    reset_registry()
    yield
    reset_registry()


@pytest.fixture(autouse=True)
def _no_real_cache(tmp_path, monkeypatch):
    # Never read or fill the user's real cache (nor download 85 MB) from a test.
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path / "promptgen-home"))


def random_fairface_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A ResNet-34 with 18 outputs and random weights (batch-norm statistics too), as a state dict."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = resnet34(weights=None, num_classes=18)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.1, 0.1)
        # Logits of order 1, like a trained classifier's: random activations grow through the
        # blocks, and saturated softmaxes would have no gradient to test.
        net.fc.weight.data.mul_(0.01)
    return net.state_dict()


@pytest.fixture(scope="session")
def make_state_dict():
    """``make_state_dict(seed=0)``: a random FairFace state dict (tests import no helper modules)."""
    return random_fairface_state_dict


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory) -> Path:
    """A file made exactly like the released one: ``torch.save(model.state_dict(), path)``, random weights."""
    path = tmp_path_factory.mktemp("fairface") / "res34_fair_align_multi_7_20190809.pt"
    torch.save(random_fairface_state_dict(), path)
    return path
