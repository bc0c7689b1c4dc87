"""Random-weight ``deca_model.tar`` files in the official format, for tests and the conformance script.

DECA saves its model as ``torch.save({'E_flame': ..., 'E_detail': ..., 'D_detail': ...})``,
each a module's ``state_dict()``. :func:`write_deca_model` writes the same
dict: ``E_flame`` with random but well-conditioned weights (activations stay
of order one through the 16 bottlenecks, so every layer shows in the output);
``E_detail`` and ``D_detail``, which this plugin never reads, with their real
key names and shapes but stand-in values (``E_detail``: one zero broadcast to
each shape, so it costs a few bytes instead of 100 MB; ``D_detail``: random).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from promptgen_plugin_deca.network import LAYOUT, FlameEncoder

#: DECA's detail code size (cfg.model.n_detail) and the detail decoder's input (detail + expression + jaw pose).
N_DETAIL = 128
D_DETAIL_INPUT = N_DETAIL + LAYOUT["exp"] + 3


def random_encoder_state(seed: int = 0, outputs: int | None = None) -> dict[str, Tensor]:
    """A state dict with E_flame's keys, random values drawn with ``seed``."""
    net = FlameEncoder() if outputs is None else FlameEncoder(outputs)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in net.named_modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                last = name.endswith(("bn3", "downsample.1"))
                m.weight.copy_((0.3 if last else 1.0) * (1 + 0.1 * torch.randn(c, generator=g)))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.num_batches_tracked.fill_(int(torch.randint(1, 10**6, (1,), generator=g)))
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_features))
                m.bias.copy_(0.1 * torch.randn(m.out_features, generator=g))
    return {k: v.clone() for k, v in net.state_dict().items()}


def _d_detail_state(g: torch.Generator) -> dict[str, Tensor]:
    """D_detail's keys and shapes (DECA's detail generator: Linear to 128×8×8, then five upsampling conv blocks)."""
    state: dict[str, Tensor] = {
        "l1.0.weight": 0.01 * torch.randn(128 * 8 * 8, D_DETAIL_INPUT, generator=g),
        "l1.0.bias": torch.zeros(128 * 8 * 8),
    }

    def bn(i: int, c: int) -> None:
        state.update(
            {
                f"conv_blocks.{i}.weight": torch.ones(c),
                f"conv_blocks.{i}.bias": torch.zeros(c),
                f"conv_blocks.{i}.running_mean": torch.zeros(c),
                f"conv_blocks.{i}.running_var": torch.ones(c),
                f"conv_blocks.{i}.num_batches_tracked": torch.tensor(0),
            }
        )

    def conv(i: int, cin: int, cout: int) -> None:
        state[f"conv_blocks.{i}.weight"] = 0.05 * torch.randn(cout, cin, 3, 3, generator=g)
        state[f"conv_blocks.{i}.bias"] = torch.zeros(cout)

    bn(0, 128)
    for i, (cin, cout) in zip((2, 6, 10, 14, 18), ((128, 128), (128, 64), (64, 64), (64, 32), (32, 16))):
        conv(i, cin, cout)
        bn(i + 1, cout)
    conv(21, 16, 1)
    return state


def _e_detail_standin() -> dict[str, Tensor]:
    """E_detail's keys and shapes (a ResNet-50 encoder regressing 128 values); one zero broadcast to each shape."""
    shapes = {k: v.shape for k, v in FlameEncoder(N_DETAIL).state_dict().items()}
    return {
        k: torch.zeros((), dtype=torch.int64 if k.endswith("num_batches_tracked") else torch.float32).expand(s)
        for k, s in shapes.items()
    }


def deca_checkpoint(seed: int = 0, encoder: dict[str, Tensor] | None = None) -> dict[str, dict[str, Tensor]]:
    """The dict DECA saves, with ``encoder`` (default: :func:`random_encoder_state` of ``seed``) as E_flame."""
    g = torch.Generator().manual_seed(seed + 1)
    return {
        "E_flame": encoder if encoder is not None else random_encoder_state(seed),
        "E_detail": _e_detail_standin(),
        "D_detail": _d_detail_state(g),
    }


def write_deca_model(
    path: str | Path, seed: int = 0, *, legacy: bool = False, encoder: dict[str, Tensor] | None = None
) -> Path:
    """Write a random-weight deca_model.tar to ``path``; ``legacy``: torch's pre-1.6 (non-zip) format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(deca_checkpoint(seed, encoder), path, _use_new_zipfile_serialization=not legacy)
    return path
