"""Differentiable augmentations for the CLIP energy, in the spirit of DiffAugment (Zhao et al., 2020).

Each image is repeated ``n`` times and each copy gets its own random colour
change, translation, rescaling and cutout. Gradients flow to the pixels
through all of them (bilinear resampling, arithmetic, a multiplicative mask),
so a flow trained against CLIP on the augmented copies cannot please CLIP
with a pixel pattern that only works at one exact position and scale.

>>> x = torch.rand(2, 3, 16, 16, requires_grad=True)
>>> y = augment(x, 4, POLICIES, generator=torch.Generator().manual_seed(0))
>>> y.shape, y.requires_grad
(torch.Size([8, 3, 16, 16]), True)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: The policies, in the order they are applied; the paper used all four.
POLICIES = ("color", "translation", "resize", "cutout")
#: Largest shift, as a share of the image size.
TRANSLATION = 0.125
#: Range of the rescaling factor (about the centre; the frame stays the same).
RESIZE = (0.8, 1.2)
#: Side of the cut-out square, as a share of the image size.
CUTOUT = 0.5


def parse_policy(text: str) -> tuple[str, ...]:
    """``"color,translation"`` -> the policies; ``"none"`` or ``""`` -> none. Unknown names raise ValueError."""
    if text.strip().lower() in ("", "none"):
        return ()
    parts = tuple(p.strip().lower() for p in text.replace("+", ",").split(",") if p.strip())
    bad = [p for p in parts if p not in POLICIES]
    if bad:
        raise ValueError(f"unknown augmentation {bad[0]!r}; choose from {', '.join(POLICIES)} or none")
    return tuple(p for p in POLICIES if p in parts)


def _rand(n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator, device="cpu").to(like.device, like.dtype)


def augment(images: Tensor, n: int, policy: Sequence[str], generator: torch.Generator | None = None) -> Tensor:
    """``n`` augmented copies of each image: (B, C, H, W) -> (B·n, C, H, W), copies of one image adjacent."""
    x = images.repeat_interleave(n, dim=0)
    m = x.shape[0]
    if "color" in policy:
        x = x + (_rand(m, x, generator) - 0.5).view(-1, 1, 1, 1)  # brightness
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (2 * _rand(m, x, generator)).view(-1, 1, 1, 1) + mean  # saturation
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (_rand(m, x, generator) + 0.5).view(-1, 1, 1, 1) + mean  # contrast
    if "translation" in policy or "resize" in policy:
        scale = torch.ones(m, dtype=x.dtype, device=x.device)
        shift = torch.zeros(m, 2, dtype=x.dtype, device=x.device)
        if "resize" in policy:
            lo, hi = RESIZE
            scale = lo + (hi - lo) * _rand(m, x, generator)
        if "translation" in policy:
            # grid_sample's coordinates span [-1, 1]: a shift of t of the image is 2t.
            shift = (torch.stack([_rand(m, x, generator), _rand(m, x, generator)], 1) - 0.5) * 4 * TRANSLATION
        theta = torch.zeros(m, 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0] = 1 / scale
        theta[:, 1, 1] = 1 / scale
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if "cutout" in policy:
        h, w = x.shape[-2:]
        ch, cw = max(1, int(h * CUTOUT + 0.5)), max(1, int(w * CUTOUT + 0.5))
        # A square of about half the side, centred anywhere in the image (clipped at its borders), set to 0.
        cy = (_rand(m, x, generator) * h).long().clamp(max=h - 1)
        cx = (_rand(m, x, generator) * w).long().clamp(max=w - 1)
        ys = torch.arange(h, device=x.device).view(1, h, 1)
        xs = torch.arange(w, device=x.device).view(1, 1, w)
        inside = ((ys - cy.view(-1, 1, 1)).abs() * 2 < ch) & ((xs - cx.view(-1, 1, 1)).abs() * 2 < cw)
        x = x * (~inside).to(x.dtype).unsqueeze(1)
    return x
