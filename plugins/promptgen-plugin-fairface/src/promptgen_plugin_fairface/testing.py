"""Random-weight FairFace weights files in the released format, for tests.

The released ``res34_fair_align_multi_7_20190809.pt`` is ``torch.save(model.state_dict(), path)`` of a
torchvision ResNet-34 with ``fc = Linear(512, 18)``. :func:`write_weights` writes the same, with random
weights (batch-norm statistics too) whose logits are of order one, like a trained classifier's.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from promptgen_plugin_fairface.model import fairface_resnet34


def random_fairface_state_dict(seed: int = 0) -> dict[str, Tensor]:
    """A ResNet-34 with 18 outputs and random weights (batch-norm statistics too), as a state dict."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = fairface_resnet34()
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


def write_weights(path: str | Path, seed: int = 0, *, legacy: bool = False) -> Path:
    """``torch.save(random_fairface_state_dict(seed), path)``; ``legacy``: torch's pre-1.6 (non-zip) format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_fairface_state_dict(seed), path, _use_new_zipfile_serialization=not legacy)
    return path
