"""StyleNeRF's camera: its prior over yaw and pitch, and the matrices the renderer is given.

Gu et al., "StyleNeRF: A Style-based 3D-Aware Generator for High-resolution
Image Synthesis" (ICLR 2022). The camera sits on a sphere of radius ``radius``
around the origin and looks at it, the world's up axis is +z. Its position is
given by two angles (radians), as in the official ``dnnlib/camera.py`` with
``angular_camera`` set:

* ``u``, the azimuth around +z (yaw); 0 is in front of the face (camera on +x);
* ``v``, the polar angle from +z; π/2 is level with the face.

promptgen names them ``yaw = u`` and ``pitch = π/2 − v``, the camera's elevation (0: frontal and level;
positive: the camera above the face, looking down at it).
With ``gaussian_camera`` (every FFHQ model) each is drawn from a normal whose
mean is the middle of its configured range and whose standard deviation is
half the range's width (not truncated); otherwise uniformly over the range.
The official code calls the standard-normal (or uniform) draw the camera's
*mode*: ``u = mean_u + half_width_u · mode_u``.

>>> FFHQ_CAMERA.yaw_pitch(torch.tensor([[1.0, -1.0]]))
(tensor([0.3000]), tensor([0.1550]))
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

#: Largest angle range promptgen accepts from a file (radians); the camera's angles are read as floats.
MAX_ANGLE = 2 * math.pi


class CameraPrior(BaseModel):
    """A StyleNeRF model's camera prior and lens (the ``camera_kwargs`` of its synthesis network).

    Attributes:
        range_u: yaw range (radians): the normal's mean ± one standard deviation, or the uniform range.
        range_v: polar-angle range (radians), the same way.
        radius: distance of the camera from the origin (``range_radius`` must be one value).
        fov: the vertical field of view, degrees.
        gaussian: draw the angles from normals (True) or uniformly (False).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    range_u: tuple[float, float]
    range_v: tuple[float, float]
    radius: float = Field(gt=0, le=1e3, allow_inf_nan=False)
    fov: float = Field(gt=0, lt=180, allow_inf_nan=False)
    gaussian: bool = True

    def angles(self, mode: Tensor) -> Tensor:
        """(B, 2) the camera's mode (standard normal, or uniform in [0, 1)) -> (B, 2) its angles (u, v), radians."""
        mode = mode.reshape(-1, 2)
        if self.gaussian:
            mean_u, mean_v = sum(self.range_u) / 2, sum(self.range_v) / 2
            u = mean_u + (mean_u - self.range_u[0]) * mode[:, 0]
            v = mean_v + (mean_v - self.range_v[0]) * mode[:, 1]
        else:
            u = self.range_u[0] + mode[:, 0] * (self.range_u[1] - self.range_u[0])
            v = self.range_v[0] + mode[:, 1] * (self.range_v[1] - self.range_v[0])
        return torch.stack([u, v], 1)

    def mode_of(self, yaw: Tensor, pitch: Tensor) -> Tensor:
        """The mode that gives ``yaw`` and ``pitch`` (radians, (B,) each): the inverse of :meth:`angles`."""
        u, v = yaw, math.pi / 2 - pitch
        if self.gaussian:
            mean_u, mean_v = sum(self.range_u) / 2, sum(self.range_v) / 2
            return torch.stack(
                [(u - mean_u) / (mean_u - self.range_u[0]), (v - mean_v) / (mean_v - self.range_v[0])], 1
            )
        return torch.stack(
            [
                (u - self.range_u[0]) / (self.range_u[1] - self.range_u[0]),
                (v - self.range_v[0]) / (self.range_v[1] - self.range_v[0]),
            ],
            1,
        )

    def yaw_pitch(self, mode: Tensor) -> tuple[Tensor, Tensor]:
        """(B,) yaw and (B,) pitch (radians; 0 frontal and level; pitch > 0: camera above) for a (B, 2) mode."""
        uv = self.angles(mode)
        return uv[:, 0], math.pi / 2 - uv[:, 1]

    def intrinsics_inverse(self) -> Tensor:
        """(4, 4) the inverse of the pinhole ``diag(f, f, 1, 1)``, ``f = 1 / tan(fov / 2)``; pixels in [-1, 1]"""
        focal = float(np.float32(1.0 / np.tan(0.5 * self.fov * np.pi / 180.0)))  # as the official code: float32 focal
        mat = torch.tensor([[focal, 0.0, 0.0, 0.0], [0.0, focal, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
        return torch.inverse(mat)

    def world_matrix(self, mode: Tensor) -> Tensor:
        """(B, 2) mode -> (B, 4, 4) camera-to-world matrices: rotation (columns: the camera's axes) and position."""
        uv = self.angles(mode)
        u, v = uv[:, 0], uv[:, 1]
        loc = torch.stack([torch.sin(v) * torch.cos(u), torch.sin(v) * torch.sin(u), torch.cos(v)], -1) * self.radius
        up = torch.tensor([0.0, 0.0, 1.0], dtype=loc.dtype, device=loc.device)[None].expand_as(loc)
        z_axis = _unit(loc)
        x_axis = _unit(torch.cross(up, z_axis, dim=-1))
        y_axis = _unit(torch.cross(z_axis, x_axis, dim=-1))
        rt = torch.eye(4, dtype=loc.dtype, device=loc.device).repeat(loc.shape[0], 1, 1)
        rt[:, :3, :3] = torch.stack([x_axis, y_axis, z_axis], -1)
        rt[:, :3, 3] = loc
        return rt


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(p=2, dim=-1, keepdim=True).clamp(min=1e-8)


#: The FFHQ models' prior (conf/model/stylenerf_ffhq.yaml): yaw ~ N(0, 0.3), polar angle ~ N(π/2, 0.155),
#: radius 1, field of view 12°.
FFHQ_CAMERA = CameraPrior(
    range_u=(-0.3, 0.3), range_v=(1.4157963267948965, 1.7257963267948966), radius=1.0, fov=12.0, gaussian=True
)

__all__ = ["FFHQ_CAMERA", "MAX_ANGLE", "CameraPrior"]
