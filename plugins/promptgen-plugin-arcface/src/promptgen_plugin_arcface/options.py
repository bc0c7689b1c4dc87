"""The options of an ``arcface-id`` spec, checked by the core before the energy is built."""

from __future__ import annotations

from typing import Literal

from promptgen import plugin

#: The paper's weight for the identity energy (the authors' inverse_graphics_pose_ffhq.cfg: IDEnergyPair weight = 10).
DEFAULT_WEIGHT = 10.0


class ArcFaceOptions(plugin.Options):
    """The options of ``arcface-id``."""

    path: str | None = plugin.option(
        None,
        help="the IR-SE50 weights, model_ir_se50.pth (default: $PROMPTGEN_HOME/arcface/model_ir_se50.pth; downloaded by hand)",
        example="model_ir_se50.pth",
    )
    crop: Literal["ffhq", "none"] = plugin.option(
        "ffhq",
        help="ffhq: resize to 256, keep rows 35-222 and columns 32-219 (the face of an FFHQ-aligned image), resize to 112 "
        "(the paper's); none: resize the whole image to 112 (faces already cropped as ArcFace's training data)",
        example="none",
    )
