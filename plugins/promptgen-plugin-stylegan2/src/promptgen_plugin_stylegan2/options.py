"""The options every StyleGAN2 generator spec takes (``stylegan2-ffhq:psi=0.7,size=256``).

The core checks a spec against :data:`StyleGAN2Options` (numbers, ranges,
choices) before the generator is built and writes the one-line error itself.
What depends on the loaded checkpoint (whether ``class=`` names one of its
classes) is checked when it is built, in :mod:`.generator`.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from promptgen import plugin

# ``class`` is a Python keyword, so the model is made with pydantic.create_model rather than a class body;
# the fields keep the order `promptgen list NAME` shows them in.
StyleGAN2Options: type[plugin.Options] = pydantic.create_model(
    "StyleGAN2Options",
    __base__=plugin.Options,
    __doc__="The options of a StyleGAN2 generator spec.",
    path=(
        str | None,
        plugin.option(None, help="a local checkpoint instead of the download: an NVIDIA .pkl or a rosinality .pt", example="network-snapshot.pkl"),
    ),
    psi=(float, plugin.option(1.0, ge=0, le=1, help="truncation ψ towards the mean w (1: none)", example="0.7")),
    noise=(
        Literal["const", "random", "none"],
        plugin.option("const", help="per-pixel noise: const (fixed per layer), random (fresh per image, drawn by promptgen with the latent: repeatable with --seed) or none"),
    ),
    space=(Literal["z", "w"], plugin.option("z", help="the latent the flow acts on: z (as in the paper) or w (a Gaussian fit of W)")),
    **{
        "class": (
            str | None,
            plugin.option(None, help="class of a class-conditional model, by index or name (stylegan2-cifar10: 0-9 or cat...)", example="cat"),
        )
    },
    size=(
        int | None,
        plugin.option(None, ge=8, le=4096, help="output size in pixels, e.g. 256 for energies that need no more (default: the model's)", example="256"),
    ),
    precision=(
        Literal["auto", "fp32", "fp16"],
        plugin.option("auto", help="auto (float16 in the blocks the checkpoint marks, on CUDA only, as NVIDIA's code), fp32 or fp16"),
    ),
)
