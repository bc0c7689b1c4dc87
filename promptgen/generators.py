"""A base class for generators that are one frozen ``torch.nn.Module``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from promptgen.protocols import GeneratorInfo


class ModuleGenerator:
    """Wraps a module ``z -> images in [0, 1]`` as a :class:`~promptgen.protocols.Generator`.

    The module is put in eval mode and its parameters frozen: promptgen never
    changes a generator's weights.

    Args:
        module: maps (B, *latent_shape) to (B, C, H, W) in [0, 1].
        latent_shape: shape of one latent, e.g. ``(32,)``.
        info: name, resolution, licence and source of the weights.
    """

    def __init__(self, module: nn.Module, latent_shape: tuple[int, ...], info: GeneratorInfo) -> None:
        self.module = module.eval().requires_grad_(False)
        self._latent_shape = tuple(latent_shape)
        self.info = info

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self._latent_shape

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    def decode(self, z: Tensor) -> Tensor:
        return self.module(z)

    def to(self, device: torch.device | str) -> ModuleGenerator:
        self.module.to(device)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.name!r}, latent_shape={self.latent_shape})"
