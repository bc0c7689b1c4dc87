"""A StyleNeRF as a promptgen generator: the prompt controls z (512); the camera is the model's own.

The camera is noise drawn from the model's camera prior at every image, as in the PromptGen paper
(``camera=prior``): one seed number per image (``noise_shapes = {"camera_seed": (1,)}``), from which the
camera's mode (2 numbers) and the background field's latent code (``z_dim_bg`` numbers) are drawn, so
``sample --seed`` repeats both. With ``camera=latent`` the camera's mode is a part of the controlled latent
(``latent_parts = {"z": (512,), "camera": (2,)}``): a standard normal, which the prior's gaussian maps to yaw
and pitch exactly as the prior draws them (:mod:`.camera`); the background code stays seeded noise.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from promptgen import plugin

from .network import StyleNeRF

CameraSource = Literal["prior", "latent"]


class StyleNeRFSampler(nn.Module):
    """(z (B, z_dim), camera mode (B, 2), background code (B, z_dim_bg)) -> images (B, 3, H, W) in [0, 1]."""

    def __init__(self, model: StyleNeRF, psi: float = 1.0) -> None:
        super().__init__()
        self.model, self.psi = model, psi

    def forward(self, z: Tensor, mode: Tensor, z_bg: Tensor) -> Tensor:
        img = self.model(z.to(torch.float32), mode.to(torch.float32), z_bg.to(torch.float32), psi=self.psi)
        return ((img + 1) / 2).clamp(0, 1)


class StyleNeRFGenerator(plugin.ModuleGenerator):
    """z (and the camera, ``camera=latent``) -> images; the camera (``camera=prior``) and background: seeded noise."""

    def __init__(self, sampler: StyleNeRFSampler, info: plugin.GeneratorInfo, camera: CameraSource = "prior") -> None:
        cfg = sampler.model.cfg
        self.camera = camera
        self.noise_shapes = {"camera_seed": (1,)}
        self.latent_parts = {"z": (cfg.z_dim,), "camera": (2,)} if camera == "latent" else None
        super().__init__(sampler, (cfg.z_dim + (2 if camera == "latent" else 0),), info)

    def own_noise(self, z: Tensor, noise: dict[str, Tensor] | None) -> dict[str, Tensor]:
        """The camera's mode (B, 2) and the background code (B, z_dim_bg): from each image's seed, or fresh."""
        cfg = self.module.model.cfg  # type: ignore[union-attr]
        shapes = {"camera": (2,), "background": (cfg.z_dim_bg,)}
        if noise is None:  # outside promptgen's sampling: the generator draws its own
            return {k: torch.randn(z.shape[0], *s, device=z.device) for k, s in shapes.items()}
        return plugin.seeded_noise(noise["camera_seed"], shapes, device=z.device)

    def decode(  # type: ignore[override]
        self, z: Tensor | dict[str, Tensor], noise: dict[str, Tensor] | None = None
    ) -> Tensor:
        latent = z["z"] if isinstance(z, dict) else z
        drawn = self.own_noise(latent, noise)
        mode = z["camera"] if isinstance(z, dict) else drawn["camera"]
        return self.module(latent, mode, drawn["background"])


def build(model: StyleNeRF, camera: CameraSource, psi: float, info: plugin.GeneratorInfo) -> StyleNeRFGenerator:
    """The generator for a loaded network with a spec's options."""
    cfg = model.cfg
    p = cfg.camera
    where = (
        "a controlled latent part (its standard normal mapped by the prior)"
        if camera == "latent"
        else "drawn per image from the prior"
    )
    info = plugin.GeneratorInfo(
        name=info.name,
        resolution=(cfg.resolution, cfg.resolution),
        channels=3,
        licence=info.licence,
        source=info.source,
        description=f"{info.description}; camera {where}: "
        f"yaw ~ N({sum(p.range_u) / 2:.3g}, {(p.range_u[1] - p.range_u[0]) / 2:.3g}), "
        f"polar angle ~ N({sum(p.range_v) / 2:.4g}, {(p.range_v[1] - p.range_v[0]) / 2:.3g}) rad; ψ {psi:g}",
    )
    return StyleNeRFGenerator(StyleNeRFSampler(model, psi), info, camera)


__all__ = ["StyleNeRFGenerator", "StyleNeRFSampler", "build"]
