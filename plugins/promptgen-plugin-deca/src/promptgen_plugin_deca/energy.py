"""The ``deca-pose`` energy: squared SO(3) angle between DECA's head rotation and a target.

For images x and a wanted rotation α (Euler angles, radians):

    E(x; α) = ∠( R_DECA(x), R(α) · R(canonical) )²

where R_DECA(x) is the global head rotation DECA's coarse encoder estimates
(the first three pose parameters, axis-angle) on x cropped to a central square
and resized to 224×224, and ∠ is the geodesic angle on SO(3), in [0, π]
(radians). Euler angles are intrinsic x-y-z (R = Rx·Ry·Rz). This is the pose
energy of the PromptGen paper (canonical (0.3, 0, 0), α = (α_x, α_y, 0) with
each uniform in [−π/9, π/9], weight 200).
"""

from __future__ import annotations

import roma
import torch
from torch import Tensor
from torch.nn import functional as F

from promptgen import plugin
from promptgen_plugin_deca.network import INPUT_SIZE, FlameEncoder

#: Condition names this energy reads, and the Euler axis each sets (x, y, z).
AXES: dict[str, int] = {"pitch": 0, "yaw": 1, "roll": 2}
#: Keeps asin's argument below 1, so the gradient stays finite at an angle of π (the energy then tops out at ≈ π²).
CLAMPING = 1.0 - 1e-6


def euler_to_rotmat(angles: Tensor) -> Tensor:
    """(..., 3) Euler angles about x, y, z (intrinsic, R = Rx·Ry·Rz) -> (..., 3, 3)."""
    return roma.euler_to_rotmat("XYZ", angles)


def geodesic_angle(r1: Tensor, r2: Tensor) -> Tensor:
    """(..., 3, 3), (..., 3, 3) -> (...) the angle of r1ᵀ·r2 in radians, in [0, π]."""
    return roma.rotmat_geodesic_distance(r1, r2, clamping=CLAMPING)


def to_deca_input(images: Tensor, crop: float = 1.0) -> Tensor:
    """(B, C, H, W) in [0, 1], any size, 1 or 3 channels -> (B, 3, 224, 224), differentiably.

    The central square of side ``crop`` × the shorter side, resized with bicubic
    interpolation (antialiased when shrinking); grey images are repeated to RGB.
    DECA reads RGB in [0, 1] without normalisation.
    """
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    h, w = images.shape[-2:]
    side = max(1, round(crop * min(h, w)))
    top, left = (h - side) // 2, (w - side) // 2
    images = images[..., top : top + side, left : left + side]
    if side != INPUT_SIZE:
        images = F.interpolate(
            images, size=(INPUT_SIZE, INPUT_SIZE), mode="bicubic", align_corners=False, antialias=side > INPUT_SIZE
        )
    return images


class DecaPose(plugin.EnergyBase):
    """The pose energy (see the module); ``Contextual``: ``context.condition`` gives α per sample.

    Args:
        encoder: DECA's coarse encoder (images -> 236 parameters).
        canonical: (3,) Euler angles of the canonical pose.
        alpha: (3,) the α used for what no condition gives (pitch, yaw, roll).
        crop: see :func:`to_deca_input`.
    """

    #: The conditions it reads (``compose --cond`` refuses a name no energy reads).
    condition_names = tuple(AXES)

    def __init__(self, encoder: FlameEncoder, canonical: Tensor, alpha: Tensor, crop: float, label: str) -> None:
        super().__init__(label)
        self.encoder = encoder
        self.canonical = euler_to_rotmat(canonical.to(torch.float32))
        self.alpha = alpha.to(torch.float32)
        self.crop = crop

    def estimate(self, images: Tensor) -> Tensor:
        """(B, 3, 3) DECA's head rotation for each image."""
        x = to_deca_input(images.to(self.canonical.dtype), self.crop)
        return roma.rotvec_to_rotmat(self.encoder.global_rotation(x))

    def target(self, alpha: Tensor) -> Tensor:
        """(B, 3) α -> (B, 3, 3) R(α)·R(canonical)."""
        return euler_to_rotmat(alpha) @ self.canonical

    def alpha_of(self, context: plugin.EnergyContext, batch: int, device: torch.device) -> Tensor:
        """(B, 3) α from the context's condition (names pitch, yaw, roll); the options' α for names it lacks."""
        alpha = self.alpha.to(device).expand(batch, 3).clone()
        condition = context.condition
        if condition is None:
            return alpha
        names = tuple(context.condition_names)
        if condition.dim() != 2 or condition.shape[0] != batch or condition.shape[1] != len(names):
            raise plugin.PromptgenError(
                f"energy {self.label!r}: the condition has shape {tuple(condition.shape)}, expected ({batch}, {len(names)}) for {names}"
            )
        ours = [(i, AXES[n]) for i, n in enumerate(names) if n in AXES]
        if not ours:
            raise plugin.PromptgenError(
                f"energy {self.label!r}: the condition names none of pitch, yaw, roll (it has {', '.join(names) or 'no names'}); "
                "give e.g. --cond yaw=-0.35:0.35 --cond pitch=-0.35:0.35"
            )
        for column, axis in ours:
            alpha[:, axis] = condition[:, column].to(alpha)
        return alpha

    def angle(self, images: Tensor, alpha: Tensor) -> Tensor:
        """(B,) the geodesic angle between DECA's estimate and the target for ``alpha`` (B, 3)."""
        return geodesic_angle(self.estimate(images), self.target(alpha.to(self.canonical)))

    def context_energy(self, images: Tensor, latents: Tensor, context: plugin.EnergyContext) -> Tensor:
        alpha = self.alpha_of(context, images.shape[0], images.device)
        return self.angle(images, alpha).pow(2)

    def __call__(self, images: Tensor, latents: Tensor) -> Tensor:
        alpha = self.alpha.to(images.device).expand(images.shape[0], 3)
        return self.angle(images, alpha).pow(2)

    def lower_bound(self) -> float:  # Bounded
        return 0.0
