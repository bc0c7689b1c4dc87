"""The ``ink`` energy: pull the mean pixel intensity of generated images towards a target.

For an image ``x`` in [0, 1] with shape (C, H, W) the amount of ink is the mean
of all its pixel values (0 = blank, 1 = every pixel at full intensity); on the
built-in MNIST digits that is the share of the canvas covered by white strokes.
The energy is::

    E(x) = ((ink(x) - target) / scale) ** 2

so it is 0 at the target and grows quadratically away from it; ``scale`` is
the deviation that costs one unit of energy.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from promptgen import plugin

#: Deviation from the target that costs one unit of energy.
DEFAULT_SCALE = 0.02

#: With weight 1 the term is exactly the negative log-likelihood (up to a
#: constant) of a Gaussian measurement of the ink with standard deviation
#: ``scale / sqrt(2)``, balanced against the generator's N(0, I) prior: for
#: targets in the generator's usual range the mean ink lands within about
#: ``scale`` of the target and the images stay varied. Raise it
#: (``ink:target=0.25@10``) to get closer to far targets at the cost of
#: variety, lower it for a gentler nudge. Measurements are in the README.
DEFAULT_WEIGHT = 1.0

#: An example spec, shown by ``promptgen list ink``.
USAGE = "ink:target=0.2"


class InkOptions(plugin.Options):
    """The options of ``ink:``. The core checks a spec against them before :func:`build_ink_energy` runs
    and writes the one-line error itself (a missing target, a number out of range, an unknown option)."""

    target: float = plugin.option(ge=0, le=1, help="mean pixel intensity to aim for: 0 = blank, 1 = all ink", example="0.2")
    scale: float = plugin.option(DEFAULT_SCALE, gt=0, help="deviation from the target that costs one unit of energy")


def mean_ink(images: Tensor) -> Tensor:
    """Mean pixel intensity per image: (B, C, H, W) in [0, 1] -> (B,). Differentiable."""
    return images.flatten(1).mean(1)


class InkEnergy:
    """``((mean_ink(x) - target) / scale)²`` per image; implements :class:`promptgen.plugin.Energy`.

    It needs no fitting, so it has no ``fit`` method; its default weight is
    declared on its :class:`~promptgen.plugin.EnergyEntry`.

    Args:
        target: the mean pixel intensity to aim for, in [0, 1].
        scale: the deviation that costs one unit of energy, > 0.
        label: text naming this energy in logs (default: its spec).
    """

    def __init__(self, target: float, scale: float = DEFAULT_SCALE, label: str | None = None) -> None:
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"target must be in [0, 1], got {target}")
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"scale must be a positive number, got {scale}")
        self.target = float(target)
        self.scale = float(scale)
        self.label = label or f"ink:target={target:g}"

    def __call__(self, images: Tensor, latents: Tensor) -> Tensor:
        return ((mean_ink(images) - self.target) / self.scale).pow(2)

    def to(self, device: torch.device | str) -> InkEnergy:
        return self  # no tensors of its own

    def __repr__(self) -> str:
        return f"InkEnergy(target={self.target:g}, scale={self.scale:g})"


def build_ink_energy(spec: plugin.Spec, options: InkOptions, registry: plugin.Registry) -> InkEnergy:
    """Build ``ink:target=T[,scale=S]`` (the ``build`` of the ``ink`` EnergyEntry).

    ``options`` were already checked by the core against :class:`InkOptions`.
    """
    return InkEnergy(options.target, options.scale, label=spec.with_weight(None).format())
