"""The invertible network ``z = f(ε)``: coupling layers from zuko, spline or affine.

Couplings with random masks, as in the Glow-style network of the paper:
rational-quadratic spline couplings (Durkan et al., 2019) or RealNVP-style
affine ones (Dinh et al., 2016, arXiv:1605.08803); compose picks affine for a
prompt with one target and splines for a mixture (``--flow auto``,
docs/flow.md). Every coupling's last layer starts at zero, so ``f`` starts as
the identity and training starts from the generator's own distribution. The
last ``passthrough`` coordinates of a latent (a generator's own noise,
:mod:`promptgen.core.latents`) are passed through unchanged. docs/flow.md records why zuko was kept
over a hand-written network (benchmarks/flow_implementations.py).

>>> flow = CouplingFlow(FlowConfig(features=4, transforms=2, hidden=8))
>>> eps = torch.randn(3, 4)
>>> z, log_det = flow(eps)
>>> bool(torch.allclose(z, eps)), log_det.shape
(True, torch.Size([3]))
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from zuko.flows.coupling import GeneralCouplingTransform
from zuko.lazy import LazyComposedTransform
from zuko.transforms import MonotonicRQSTransform

from promptgen.training.config import FlowConfig


def coupling_masks(features: int, transforms: int, seed: int) -> list[Tensor]:
    """Random half/half masks, each paired with its complement so every feature is updated."""
    g = torch.Generator().manual_seed(seed)
    masks = []
    for i in range(transforms):
        if i % 2 == 0:
            perm = torch.randperm(features, generator=g)
            mask = torch.zeros(features, dtype=torch.bool)
            mask[perm[: features // 2]] = True
        else:
            mask = ~masks[-1]
        masks.append(mask)
    return masks


class CouplingFlow(nn.Module):
    """An invertible map on latents with its log-determinant (a :class:`~promptgen.core.protocols.Sampler`).

    Args:
        config: see :class:`FlowConfig`.

    ``forward(eps)`` takes (B, *latent_shape) and returns ``(z, log_det)`` with
    ``z`` of the same shape and ``log_det`` of shape (B,).

    With ``config.classes = K > 0`` the flow is class-conditional (one map per
    mixture component, sharing weights): ``forward``, ``inverse`` and
    ``log_prob`` then also take ``classes``, (B,) integers in ``[0, K)``.
    """

    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        self.config = config
        d = config.features
        masks = coupling_masks(d, config.transforms, config.mask_seed)
        if config.kind == "spline-coupling":
            # Rational-quadratic splines (Durkan et al., 2019, arXiv:1906.04032) on [-5, 5], linear outside.
            k = config.bins
            extra = {"univariate": MonotonicRQSTransform, "shapes": ((k,), (k,), (k - 1,))}
        else:
            extra = {}
        self.transform = LazyComposedTransform(
            *(
                GeneralCouplingTransform(
                    features=d, context=config.classes + config.conditions, mask=m, hidden_features=(config.hidden, config.hidden), **extra
                )
                for m in masks
            )
        )
        for layer in self.transform.transforms:
            last = layer.hyper[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.config.shape()

    def _map(self, classes: Tensor | None, like: Tensor, condition: Tensor | None = None):
        k, c = self.config.classes, self.config.conditions
        parts = []
        if not k and classes is not None:
            raise ValueError("this flow has no classes (config.classes = 0); call it without them")
        if k:
            if classes is None or classes.shape != like.shape[:1]:
                raise ValueError(f"this flow is a mixture of {k} components: give classes of shape ({like.shape[0]},)")
            parts.append(nn.functional.one_hot(classes.long(), k).to(like.dtype))
        if not c and condition is not None:
            raise ValueError("this flow takes no condition (config.conditions = 0); call it without one")
        if c:
            if condition is None or tuple(condition.shape) != (like.shape[0], c):
                raise ValueError(f"this flow is conditional: give a condition of shape ({like.shape[0]}, {c})")
            parts.append(condition.to(like.dtype))
        if not parts:
            return self.transform()
        return self.transform(torch.cat(parts, 1) if len(parts) > 1 else parts[0])

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        flat = x.flatten(1)
        d = self.config.features
        return flat[:, :d], flat[:, d:]

    def forward(self, eps: Tensor, classes: Tensor | None = None, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        head, rest = self._split(eps)
        z, ladj = self._map(classes, head, condition).call_and_ladj(head)
        if rest.shape[1]:
            z = torch.cat([z, rest], 1)
        return z.view_as(eps), ladj

    def inverse(self, z: Tensor, classes: Tensor | None = None, condition: Tensor | None = None) -> Tensor:
        head, rest = self._split(z)
        eps = self._map(classes, head, condition).inv(head)
        if rest.shape[1]:
            eps = torch.cat([eps, rest], 1)
        return eps.view_as(z)

    def log_prob(self, z: Tensor, classes: Tensor | None = None, condition: Tensor | None = None) -> Tensor:
        """``log q(z)`` of the flow's samples' density, (B, *latent_shape) -> (B,); differentiable."""
        head, rest = self._split(z)
        eps, ladj = self._map(classes, head, condition).inv.call_and_ladj(head)
        flat = torch.cat([eps, rest], 1)
        return -0.5 * flat.pow(2).sum(1) - 0.5 * flat.shape[1] * math.log(2 * math.pi) + ladj
