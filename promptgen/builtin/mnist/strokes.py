"""Stroke attributes of digit images: thickness and slant, measured from the pixels.

Two measurements of each attribute, for two roles:

* :class:`StrokeClassifier` (control): differentiable. Thickness is the mean
  ink per pixel (the image's mean intensity); slant is the shear of the
  intensity-weighted pixel cloud, ``dx/dy`` of the stroke (positive: the top
  leans right). Each is turned into three class probabilities by an ordinal
  logistic model around the bin edges, so energies get gradients.
* :class:`StrokeEvaluator` (evaluator): hard. The same quantities measured on
  the *binarised* image (pixels above 0.5): the share of inked pixels, and
  the shear of the inked pixels. A flow that games the soft measure (faint
  grey smudges add ink mass but no inked pixels) does not fool it.

The bins are in physical units, not quantiles, so the generator and real
digits are genuinely uneven over them (measured on the 4,000-image evaluator
split of MNIST: thickness 24/52/24 %, slant 17/43/40 %; the two measurements
put a real digit in the same bin 96 % (thickness) and 97 % (slant) of the time):

* thickness: thin below 0.10 ink per pixel, thick from 0.16;
* slant: left below a shear of −0.15 (about 8.5° to the left), right above
  +0.15.

>>> import torch
>>> img = torch.zeros(1, 1, 28, 28); img[..., 4:24, 12:15] = 1.0   # an upright bar, 3 pixels wide
>>> clf = StrokeClassifier()
>>> {k: clf.attributes[k][int(v.argmax())] for k, v in clf.log_probs(img).items()}
{'thickness': 'thin', 'slant': 'upright'}
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from promptgen.core.classifiers import adapt_images

THICKNESS = ("thin", "medium", "thick")
SLANT = ("left", "upright", "right")
INK_EDGES = (0.10, 0.16)
SLANT_EDGES = (-0.15, 0.15)
# Softness of the control's bins, in each measure's units: about a tenth of a
# bin's width, so probabilities are near 0 or 1 away from an edge and gradients
# reach samples near one.
INK_SOFTNESS = 0.006
SLANT_SOFTNESS = 0.03
SIZE = (28, 28)


def ink(images: Tensor) -> Tensor:
    """Mean intensity per pixel, (B, 1, H, W) in [0, 1] -> (B,)."""
    return images.mean(dim=(1, 2, 3))


def shear(images: Tensor) -> Tensor:
    """Slant as ``dx/dy`` of the intensity-weighted pixel cloud, (B, 1, H, W) -> (B,).

    Positive when the top of the digit leans right. Blank images give 0.
    """
    _, _, h, w = images.shape
    ys = torch.arange(h, dtype=images.dtype, device=images.device).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=images.dtype, device=images.device).view(1, 1, 1, w)
    mass = images.sum(dim=(1, 2, 3)).clamp_min(1e-6)
    my = (images * ys).sum(dim=(1, 2, 3)) / mass
    mx = (images * xs).sum(dim=(1, 2, 3)) / mass
    dy = ys - my.view(-1, 1, 1, 1)
    dx = xs - mx.view(-1, 1, 1, 1)
    cyy = (images * dy * dy).sum(dim=(1, 2, 3)) / mass
    cxy = (images * dy * dx).sum(dim=(1, 2, 3)) / mass
    # Image rows grow downwards, so a top leaning right has negative cov(x, y).
    return -cxy / cyy.clamp_min(1e-6)


def ordinal_log_probs(value: Tensor, edges: tuple[float, float], softness: float) -> Tensor:
    """Log-probabilities of three ordered bins, (B,) -> (B, 3).

    ``P(bin ≤ k) = sigmoid((edge_k − value) / softness)``, the cumulative-logit
    model; the middle bin gets what the outer two leave.
    """
    low = (edges[0] - value) / softness
    high = (edges[1] - value) / softness
    log_below = F.logsigmoid(low)
    log_above = F.logsigmoid(-high)
    # P(middle) = sigmoid(high) - sigmoid(low), in log space without cancellation.
    log_mid = F.logsigmoid(high) + torch.log1p(-torch.exp((F.logsigmoid(low) - F.logsigmoid(high)).clamp(max=-1e-7)))
    return torch.stack([log_below, log_mid, log_above], dim=1)


def hard_log_probs(value: Tensor, edges: tuple[float, float], floor: float = -30.0) -> Tensor:
    """Log of the one-hot bin of each value, (B,) -> (B, 3); other bins get ``floor``."""
    index = torch.bucketize(value.contiguous(), value.new_tensor(edges))
    out = value.new_full((value.shape[0], 3), floor)
    out.scatter_(1, index.view(-1, 1), 0.0)
    return out


class StrokeClassifier:
    """Differentiable thickness and slant classes (control role); see the module docstring."""

    attributes: ClassVar[dict[str, list[str]]] = {"thickness": list(THICKNESS), "slant": list(SLANT)}

    def log_probs(self, images: Tensor) -> dict[str, Tensor]:
        x = adapt_images(images, SIZE, 1)
        return {
            "thickness": ordinal_log_probs(ink(x), INK_EDGES, INK_SOFTNESS),
            "slant": ordinal_log_probs(shear(x), SLANT_EDGES, SLANT_SOFTNESS),
        }

    def to(self, device: torch.device | str) -> StrokeClassifier:
        return self


class StrokeEvaluator:
    """Thickness and slant of the binarised image (evaluator role); see the module docstring."""

    attributes: ClassVar[dict[str, list[str]]] = {"thickness": list(THICKNESS), "slant": list(SLANT)}

    def log_probs(self, images: Tensor) -> dict[str, Tensor]:
        inked = (adapt_images(images, SIZE, 1) > 0.5).to(images.dtype)
        return {
            "thickness": hard_log_probs(ink(inked), INK_EDGES),
            "slant": hard_log_probs(shear(inked), SLANT_EDGES),
        }

    def to(self, device: torch.device | str) -> StrokeEvaluator:
        return self
