"""The options of a ``deca-pose`` spec (``deca-pose:path=deca_model.tar,canonical_pitch=0.3``).

Angles are in radians about FLAME's axes, as DECA estimates them: ``pitch``
about x (nodding), ``yaw`` about y (turning left and right), ``roll`` about z
(tilting). The target rotation is R(α)·R(canonical), both built from Euler
angles in the intrinsic x-y-z order (R = Rx·Ry·Rz), as the PromptGen authors' code.
"""

from __future__ import annotations

import math

from promptgen import plugin

#: The PromptGen paper's canonical pose: Euler angles (0.3, 0, 0) rad, i.e. 0.3 rad about x.
CANONICAL = (0.3, 0.0, 0.0)
#: The paper's weight of the pose energy.
DEFAULT_WEIGHT = 200.0
#: The paper's condition range, each of α_x (pitch) and α_y (yaw) uniform in [−π/9, π/9].
PAPER_RANGE = math.pi / 9


def _angle(default: float, what: str, example: str) -> object:
    return plugin.option(default, ge=-math.pi, le=math.pi, help=what, example=example)


class DecaPoseOptions(plugin.Options):
    """The options of the ``deca-pose`` energy."""

    path: str | None = plugin.option(
        None,
        help="a local deca_model.tar (DECA's released model) instead of the one in the cache",
        example="data/deca_model.tar",
    )
    canonical_pitch: float = _angle(
        CANONICAL[0], "canonical pose: Euler angle about x (pitch), radians (paper: 0.3)", "0.25"
    )
    canonical_yaw: float = _angle(CANONICAL[1], "canonical pose: Euler angle about y (yaw), radians (paper: 0)", "0")
    canonical_roll: float = _angle(CANONICAL[2], "canonical pose: Euler angle about z (roll), radians (paper: 0)", "0")
    pitch: float = _angle(
        0.0, "α about x when no condition gives pitch, radians: the target is R(α)·R(canonical)", "0.2"
    )
    yaw: float = _angle(0.0, "α about y when no condition gives yaw, radians", "-0.3")
    roll: float = _angle(0.0, "α about z when no condition gives roll, radians", "0")
    crop: float = plugin.option(
        1.0,
        gt=0,
        le=1,
        help="side of the central square fed to DECA, as a fraction of the image's shorter side (paper: 1, the whole image resized to 224)",
        example="0.8",
    )
