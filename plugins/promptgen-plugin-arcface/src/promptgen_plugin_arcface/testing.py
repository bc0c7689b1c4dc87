"""A random-weight IR-SE50 in the format of ``model_ir_se50.pth``, for tests and the conformance script.

:func:`random_state_dict` gives every official key a random but well-conditioned
value: convolutions keep their default initialisation, batch norms get random
affine parameters and running statistics measured on random smooth images (so
activations neither vanish nor explode through the 24 units and embeddings of
different images differ), PReLU slopes are random around 0.25.
:func:`write_weights` saves it as TreB1eN's code does, ``torch.save(state_dict)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from promptgen_plugin_arcface.network import INPUT_SIZE, IRSE50


def smooth_images(n: int, size: int = INPUT_SIZE, seed: int = 0) -> Tensor:
    """(n, 3, size, size) random images in [0, 1] with structure at several scales (not white noise)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 3, size, size)
    for s in (4, 8, 16, 32):
        x += F.interpolate(torch.randn(n, 3, s, s, generator=g), size=(size, size), mode="bilinear", align_corners=False) / s**0.5
    return torch.sigmoid(2 * x)


@torch.no_grad()
def random_state_dict(seed: int = 0) -> dict[str, Tensor]:
    """The official keys of IR-SE50 with random, well-conditioned values drawn with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = IRSE50()
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in net.modules():
        if isinstance(m, nn.PReLU):
            m.weight.copy_(0.25 + 0.1 * torch.randn(m.weight.shape, generator=g))
    for m in norms:
        m.weight.copy_(0.8 + 0.4 * torch.rand(m.weight.shape, generator=g))
        m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: the statistics of the batch below
    net.train()
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    net(smooth_images(16, seed=seed + 1) * 2 - 1)
    state = net.state_dict()
    for k in state:
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(1000 + seed)  # a counter, as a trained file has
    return {k: v.clone() for k, v in state.items()}


def write_weights(path: str | Path, seed: int = 0) -> Path:
    """``torch.save(random_state_dict(seed), path)``: a format-faithful ``model_ir_se50.pth``."""
    path = Path(path)
    torch.save(random_state_dict(seed), path)
    return path
