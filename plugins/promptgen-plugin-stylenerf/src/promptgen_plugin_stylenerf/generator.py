"""A StyleNeRF as a promptgen generator: the prompt controls z (512); the camera is the model's own.

The camera is noise drawn from the model's camera prior at every image, as in the PromptGen paper
(``camera=prior``): one seed number per image (``noise_shapes = {"camera_seed": (1,)}``), from which the
camera's mode (2 numbers) and the background field's latent code (``z_dim_bg`` numbers) are drawn, so
``sample --seed`` repeats both. With ``camera=latent`` the camera's mode is a part of the controlled latent
(``latent_parts = {"z": (512,), "camera": (2,)}``): a standard normal, which the prior's gaussian maps to yaw
and pitch exactly as the prior draws them (:mod:`.camera`); the background code stays seeded noise. With
``camera=condition`` the generator reads yaw and pitch from a conditional prompt's conditions
(``condition_inputs``, :class:`promptgen.plugin.ReadsConditions`): ``--cond yaw=-0.5:0.5`` sets the camera
exactly, and a condition the prompt does not set (pitch) comes from the prior, drawn from the seed.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from promptgen import plugin

from .camera import CameraPrior
from .network import StyleNeRF

CameraSource = Literal["prior", "latent", "condition"]
#: How far ``camera=condition`` lets a condition go from the prior's mean: 3 standard deviations of a gaussian
#: prior (yaw ±0.9, pitch ±0.465 rad on FFHQ), the whole range of a uniform one. Beyond it the model saw almost
#: no faces in training.
CONDITION_SIGMAS = 3.0


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
        if camera == "condition":
            self.condition_inputs = condition_ranges(cfg.camera)
        super().__init__(sampler, (cfg.z_dim + (2 if camera == "latent" else 0),), info)

    def own_noise(self, z: Tensor, noise: dict[str, Tensor] | None) -> dict[str, Tensor]:
        """The camera's mode (B, 2) and the background code (B, z_dim_bg): from each image's seed, or fresh."""
        cfg = self.module.model.cfg  # type: ignore[union-attr]
        shapes = {"camera": (2,), "background": (cfg.z_dim_bg,)}
        if noise is None:  # outside promptgen's sampling: the generator draws its own
            return {k: torch.randn(z.shape[0], *s, device=z.device) for k, s in shapes.items()}
        return plugin.seeded_noise(noise["camera_seed"], shapes, device=z.device)

    def decode(  # type: ignore[override]
        self, z: Tensor | dict[str, Tensor], noise: dict[str, Tensor] | None = None, condition: dict[str, Tensor] | None = None
    ) -> Tensor:
        latent = z["z"] if isinstance(z, dict) else z
        drawn = self.own_noise(latent, noise)
        mode = z["camera"] if isinstance(z, dict) else drawn["camera"]
        if condition and self.camera == "condition":
            prior = self.module.model.cfg.camera  # type: ignore[union-attr]
            yaw, pitch = prior.yaw_pitch(mode.float())
            yaw = condition["yaw"].to(yaw) if "yaw" in condition else yaw
            pitch = condition["pitch"].to(pitch) if "pitch" in condition else pitch
            mode = prior.mode_of(yaw.reshape(-1), pitch.reshape(-1))
        return self.module(latent, mode, drawn["background"])


def condition_ranges(prior: CameraPrior) -> dict[str, tuple[float, float]]:
    """The yaw and pitch ``camera=condition`` takes (radians): :data:`CONDITION_SIGMAS` standard deviations about
    the prior's mean, or the prior's whole range when it is uniform."""
    if prior.gaussian:
        mean_u, mean_v = sum(prior.range_u) / 2, sum(prior.range_v) / 2
        half_u, half_v = CONDITION_SIGMAS * (mean_u - prior.range_u[0]), CONDITION_SIGMAS * (mean_v - prior.range_v[0])
        yaw, polar = (mean_u - half_u, mean_u + half_u), (mean_v - half_v, mean_v + half_v)
    else:
        yaw, polar = prior.range_u, prior.range_v
    pitch = (math.pi / 2 - polar[1], math.pi / 2 - polar[0])
    return {"yaw": (round(yaw[0], 6), round(yaw[1], 6)), "pitch": (round(pitch[0], 6), round(pitch[1], 6))}


def build(model: StyleNeRF, camera: CameraSource, psi: float, info: plugin.GeneratorInfo) -> StyleNeRFGenerator:
    """The generator for a loaded network with a spec's options."""
    cfg = model.cfg
    p = cfg.camera
    where = {
        "latent": "a controlled latent part (its standard normal mapped by the prior)",
        "condition": "set by the prompt's yaw and pitch conditions (those it does not set: drawn from the prior)",
        "prior": "drawn per image from the prior",
    }[camera]
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


__all__ = ["CONDITION_SIGMAS", "StyleNeRFGenerator", "StyleNeRFSampler", "build", "condition_ranges"]
