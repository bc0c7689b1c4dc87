"""A base class for attribute classifiers that are one frozen ``torch.nn.Module``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def adapt_images(images: Tensor, size: tuple[int, int], channels: int) -> Tensor:
    """Differentiably bring (B, C, H, W) images in [0, 1] to ``channels`` and ``size``.

    RGB -> grey uses ITU-R 601 luma weights; grey -> RGB repeats the channel;
    resizing is bilinear with antialiasing when shrinking.
    """
    c = images.shape[1]
    if c != channels:
        if c == 3 and channels == 1:
            w = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images * w).sum(1, keepdim=True)
        elif c == 1:
            images = images.expand(-1, channels, -1, -1)
        else:
            raise ValueError(f"cannot convert {c}-channel images to {channels} channels")
    if tuple(images.shape[-2:]) != tuple(size):
        shrink = images.shape[-1] > size[-1]
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return images


class ModuleClassifier:
    """Wraps a module ``images -> logits`` as an :class:`~promptgen.protocols.AttributeClassifier`.

    Args:
        module: maps (B, channels, *input_size) in [0, 1] to (B, L) logits.
        heads: attribute -> (class labels, slice of the logits they occupy).
        input_size: (H, W) the module expects; other sizes are resized.
        channels: channels the module expects; grey/RGB are converted.
    """

    def __init__(
        self,
        module: nn.Module,
        heads: Mapping[str, tuple[Sequence[str], slice]],
        input_size: tuple[int, int],
        channels: int,
    ) -> None:
        self.module = module.eval().requires_grad_(False)
        self.heads = dict(heads)
        self.attributes = {name: list(labels) for name, (labels, _) in self.heads.items()}
        self.input_size = tuple(input_size)
        self.channels = channels

    def log_probs(self, images: Tensor) -> dict[str, Tensor]:
        logits = self.module(adapt_images(images, self.input_size, self.channels))
        return {name: torch.log_softmax(logits[:, part], dim=1) for name, (_, part) in self.heads.items()}

    @property
    def features(self) -> Callable[[Tensor], Tensor]:
        """``features(images) -> (B, D)``: the module's own ``features``, after the same resizing.

        Only present when the module has a ``features`` method (``hasattr``
        is False otherwise), as the optional classifier method that
        `promptgen eval` uses for diversity and Fréchet distances.
        """
        fn = getattr(self.module, "features", None)
        if not callable(fn):
            raise AttributeError(f"{type(self.module).__name__} has no features() method")  # noqa: TRY004 - hasattr() must say False

        def features(images: Tensor) -> Tensor:
            return fn(adapt_images(images, self.input_size, self.channels)).flatten(1)

        return features

    def to(self, device: torch.device | str) -> ModuleClassifier:
        self.module.to(device)
        return self
