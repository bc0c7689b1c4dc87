"""The options of a ``clip:`` spec, checked by the core before the energy is built.

Its other arguments are the texts (``clip:smiling,laughing``, ``'clip:"smiling"-"blurry"'``)
and ``neg=TEXT`` (repeatable), which reach the energy's ``build`` in the spec.
"""

from __future__ import annotations

from typing import Literal

from promptgen import plugin
from promptgen_plugin_clip.augment import POLICIES

#: The paper averaged 50 augmented copies of each image.
DEFAULT_AUGS = 50
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "openai"


class ClipOptions(plugin.Options):
    """The options of ``clip:``."""

    model: str = plugin.option(
        DEFAULT_MODEL,
        help="the CLIP model: an open_clip name, NAME/TAG for a pretrained tag, or several weighted, NAME*0.6+NAME*0.4",
        example="ViT-B-32*0.6+RN50*0.4",
    )
    pretrained: str = plugin.option(
        DEFAULT_PRETRAINED, help="open_clip's pretrained tag for the models without /TAG (none: random weights)", example="laion2b_s32b_b82k"
    )
    path: str | None = plugin.option(None, help="a local checkpoint for the model (one model only)", example="my_clip.pt")
    template: str = plugin.option("{}", help='each text put into the template at {}; "|" separates several', example='"a photo of {} person"')
    augs: int = plugin.option(DEFAULT_AUGS, ge=1, help="augmented copies of each image (the paper: 50)")
    aug: str = plugin.option(
        "+".join(POLICIES), help=f"which augmentations, joined by +: {', '.join(POLICIES)}, or none", example="color+translation"
    )
    dtype: Literal["float32", "bfloat16", "float16"] = plugin.option("float32", help="the image tower's dtype")
