"""The built-in digits' conditional energies: a slant set by the condition, and a digit kept across conditions.

The digit version of the paper's "one person in many poses" (issue 17), which
runs here for real::

    promptgen compose --gen mnist --energy slant --energy digit-id --cond slant=-0.3:0.3 --out runs/slant
    promptgen sample runs/slant --sweep slant=-0.3:0.3:7 -n 8 -o sweep.png

* ``slant`` (:class:`SlantEnergy`): ``((shear(x) − s) / scale)²`` with ``s``
  the condition ``slant`` (the control's soft shear of the intensity-weighted
  pixels, :func:`promptgen.builtin.mnist.strokes.shear`). Judged by the
  evaluator's own slant, the shear of the *binarised* image, which faint grey
  smudges do not move.
* ``digit-id`` (:class:`DigitIdEnergy`): ``KL(q ‖ p)`` with ``q`` the control
  classifier's digit probabilities for the twin (the same ε at the reference
  condition, slant 0) and ``p`` the image's; its "not a digit" output counts
  as no digit. The twin is held fixed (no gradient through it), and KL is
  used rather than the cross-entropy, whose entropy term rewards the most
  confidently classified digit: both let the flow keep "the same digit" by
  drawing only easy digits (docs/benchmarks.md, issue 17).
  ``layer=features`` or ``layer=logits`` compare features instead
  (``1 − cos``, as ArcFace does for faces); they kept the digit less often.

The demo adds ``debias:digit,mode=mixture`` (one flow component per digit), so
the digits keep the base's proportions; the same digit across a sweep is
judged by the independent evaluator classifier::

    promptgen compose --gen mnist --energy slant --energy digit-id --energy debias:digit,mode=mixture \\
        --cond slant=-0.3:0.3 --transforms 8 --steps 1600
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from promptgen.builtin.mnist.strokes import shear
from promptgen.plugin import EnergyBase, EnergyContext, Options, PromptgenError, Registry, Spec, option

#: Condition the slant energy reads.
SLANT = "slant"


class SlantOptions(Options):
    """``slant:``: the target slant comes from the prompt's condition ``slant``, or from ``target=``."""

    target: float = option(0.0, ge=-1, le=1, help="the shear asked for when the prompt has no slant condition (dx/dy; + leans right)")
    scale: float = option(0.05, gt=0, le=1, help="the shear error that costs 1 (energy ((shear - target) / scale)^2)")


class SlantEnergy(EnergyBase):
    """``((shear(x) − s) / scale)²`` with ``s`` the condition ``slant`` (``Contextual``), or ``target`` without one."""

    condition_names = (SLANT,)

    def __init__(self, target: float, scale: float, label: str = "slant") -> None:
        super().__init__(label)
        self.target, self.scale = float(target), float(scale)

    def error(self, images: Tensor, target: Tensor | float) -> Tensor:
        return (shear(images.mean(1, keepdim=True)) - target) / self.scale

    def __call__(self, images: Tensor, latents: Tensor) -> Tensor:
        return self.error(images, self.target).pow(2)

    def context_energy(self, images: Tensor, latents: Tensor, context: EnergyContext) -> Tensor:
        if context.condition is None or SLANT not in context.condition_names:
            return self(images, latents)
        s = context.condition[:, context.condition_names.index(SLANT)].to(images)
        return self.error(images, s).pow(2)

    def lower_bound(self) -> float:
        return 0.0


class DigitIdOptions(Options):
    """``digit-id:``: which of the control classifier's outputs are compared."""

    twin: Literal["fixed", "trained"] = option(
        "fixed",
        help="fixed: the twin is a target the image must match (no gradient through it); trained: the energy also moves "
        "the twin, which lets the flow move every ε to digits that are easy to keep",
    )
    layer: Literal["features", "logits", "classes"] = option(
        "classes",
        help="compare the classifier's last hidden features (128, 1 - cos), its 11 logits (1 - cos), or its classes "
        "(KL of the twin's digit probabilities to the image's, 'not a digit' counted as no digit)",
    )


class DigitIdEnergy(EnergyBase):
    """Each image against its twin at the reference condition, by the control classifier: KL of the twin's digit
    probabilities to the image's (``classes``), or ``1 − cos`` of features or logits."""

    needs_reference = True

    def __init__(self, classifier: torch.nn.Module, layer: str, label: str = "digit-id", twin: str = "fixed") -> None:
        super().__init__(label)
        self.classifier = classifier.eval().requires_grad_(False)
        self.layer = layer
        self.fixed_twin = twin == "fixed"

    @staticmethod
    def _input(images: Tensor) -> Tensor:
        x = images.mean(1, keepdim=True)
        if x.shape[-2:] != (28, 28):
            x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False, antialias=True)
        return x

    def embed(self, images: Tensor) -> Tensor:
        x = self._input(images)
        out = self.classifier.features(x) if self.layer == "features" else self.classifier(x)
        return F.normalize(out, dim=1)

    def context_energy(self, images: Tensor, latents: Tensor, context: EnergyContext) -> Tensor:
        if context.reference is None:
            return self(images, latents)
        b = images.shape[0]
        reference = context.reference.to(images)
        both = torch.cat([images, reference.detach() if self.fixed_twin else reference])
        if self.layer == "classes":
            # KL(q ‖ p) = Σ_c q(c) (log q(c) − log p(c)): q the twin's digit probabilities (renormalised over the
            # 10 digits), p the image's over all 11 outputs, so the image must be the twin's digit, and a digit at
            # all. Not the cross-entropy: its entropy term would reward the most confidently classified digit.
            log_p = torch.log_softmax(self.classifier(self._input(both)), 1)
            log_q = torch.log_softmax(log_p[b:, :10], 1)
            return (log_q.exp() * (log_q - log_p[:b, :10])).sum(1)
        e = self.embed(both)
        return 1 - (e[:b] * e[b:]).sum(1)

    def __call__(self, images: Tensor, latents: Tensor) -> Tensor:
        raise PromptgenError(
            f"energy {self.label!r} compares each image with its twin at the reference condition, so it needs a conditional "
            "prompt: compose with --cond, e.g. --energy slant --energy digit-id --cond slant=-0.3:0.3"
        )

    def lower_bound(self) -> float:
        return 0.0


def build_slant(spec: Spec, options: SlantOptions, registry: Registry) -> SlantEnergy:
    return SlantEnergy(options.target, options.scale, label=spec.format())


def build_digit_id(spec: Spec, options: DigitIdOptions, registry: Registry, classifier: torch.nn.Module) -> DigitIdEnergy:
    return DigitIdEnergy(classifier, options.layer, label=spec.format(), twin=options.twin)
