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
from collections.abc import Mapping

import torch
from torch import Tensor

from promptgen.errors import SpecError
from promptgen.protocols import BaseSample
from promptgen.registry import Registry
from promptgen.spec import Spec, expect_options

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

#: An example spec, shown in error messages.
USAGE = "ink:target=0.2"

OPTIONS = {
    "target": "mean pixel intensity to aim for, a number in [0, 1] (required)",
    "scale": f"deviation from the target that costs one unit of energy, > 0 (default {DEFAULT_SCALE})",
}


def mean_ink(images: Tensor) -> Tensor:
    """Mean pixel intensity per image: (B, C, H, W) in [0, 1] -> (B,). Differentiable."""
    return images.flatten(1).mean(1)


class InkEnergy:
    """``((mean_ink(x) - target) / scale)²`` per image; implements :class:`promptgen.protocols.Energy`.

    Args:
        target: the mean pixel intensity to aim for, in [0, 1].
        scale: the deviation that costs one unit of energy, > 0.
        label: text naming this energy in logs (default: its spec).
    """

    needs_fit = False
    default_weight = DEFAULT_WEIGHT

    def __init__(self, target: float, scale: float = DEFAULT_SCALE, label: str | None = None) -> None:
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"target must be in [0, 1], got {target}")
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"scale must be a positive number, got {scale}")
        self.target = float(target)
        self.scale = float(scale)
        self.label = label or f"ink:target={target:g}"

    def fit(self, base: BaseSample) -> Mapping[str, float]:
        return {}

    def __call__(self, images: Tensor, latents: Tensor) -> Tensor:
        return ((mean_ink(images) - self.target) / self.scale).pow(2)

    def to(self, device: torch.device | str) -> InkEnergy:
        return self  # no tensors of its own

    def __repr__(self) -> str:
        return f"InkEnergy(target={self.target:g}, scale={self.scale:g})"


def _number(spec: Spec, key: str, text: str, example: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SpecError(f"{spec.format()!r}: {key} {text!r} is not a number; write it like {example}") from None
    if not math.isfinite(value):
        raise SpecError(f"{spec.format()!r}: {key} must be a finite number; write it like {example}")
    return value


def build_ink_energy(spec: Spec, registry: Registry) -> InkEnergy:
    """Build ``ink:target=T[,scale=S]`` (the ``build`` of the ``ink`` EnergyEntry)."""
    if spec.positional:
        value = spec.positional[0]
        raise SpecError(f"{spec.format()!r}: name the option; write ink:target={value}")
    try:
        opts = expect_options(spec, OPTIONS)
    except SpecError as exc:
        raise SpecError(f"{exc} (e.g. {USAGE},scale={DEFAULT_SCALE})") from None
    if "target" not in opts:
        raise SpecError(f"{spec.format()!r}: give the amount of ink to aim for, between 0 and 1, e.g. {USAGE}")
    target = _number(spec, "target", opts["target"], USAGE)
    if not 0.0 <= target <= 1.0:
        raise SpecError(
            f"{spec.format()!r}: target {opts['target']} is outside [0, 1] (0 = blank, 1 = all ink); "
            f"write it like {USAGE}"
        )
    scale = DEFAULT_SCALE
    if "scale" in opts:
        example = f"ink:target={opts['target']},scale={DEFAULT_SCALE}"
        scale = _number(spec, "scale", opts["scale"], example)
        if scale <= 0:
            raise SpecError(f"{spec.format()!r}: scale must be greater than 0; write it like {example}")
    return InkEnergy(target, scale, label=spec.with_weight(None).format())
