"""The options every StyleGAN generator spec takes (``stylegan2-ffhq:psi=0.7``, ``stylegan3-r-ffhq-1024:rotate=30``).

The core checks a spec against :data:`StyleGAN2Options` or :data:`StyleGAN3Options`
(numbers, ranges, choices) before the generator is built and writes the one-line
error itself. What depends on the loaded checkpoint (whether ``class=`` names one
of its classes) is checked when it is built, in :mod:`.generator`.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from promptgen import plugin


def _common(path_help: str, precision_help: str) -> dict[str, Any]:
    """The options of both families, in the order `promptgen list NAME` shows them."""
    return {
        "path": (str | None, plugin.option(None, help=path_help, example="network-snapshot.pkl")),
        "psi": (float, plugin.option(1.0, ge=0, le=1, help="truncation ψ towards the mean w (1: none)", example="0.7")),
        "space": (
            Literal["z", "w"],
            plugin.option("z", help="the latent the flow acts on: z (as in the paper) or w (a Gaussian fit of W)"),
        ),
        # ``class`` is a Python keyword, so the models are made with pydantic.create_model rather than a class body.
        "class": (
            str | None,
            plugin.option(
                None,
                help="class of a class-conditional model, by index or name (stylegan2-cifar10: 0-9 or cat...)",
                example="cat",
            ),
        ),
        "size": (
            int | None,
            plugin.option(
                None,
                ge=8,
                le=4096,
                help="output size in pixels, e.g. 256 for energies that need no more (default: the model's)",
                example="256",
            ),
        ),
        "precision": (Literal["auto", "fp32", "fp16"], plugin.option("auto", help=precision_help)),
    }


_SG2 = _common(
    "a local checkpoint instead of the download: an NVIDIA .pkl or a rosinality .pt",
    "auto (float16 in the blocks the checkpoint marks, on CUDA only, as NVIDIA's code), fp32 or fp16",
)
StyleGAN2Options: type[plugin.Options] = pydantic.create_model(
    "StyleGAN2Options",
    __base__=plugin.Options,
    __doc__="The options of a StyleGAN2 generator spec.",
    path=_SG2["path"],
    psi=_SG2["psi"],
    noise=(
        Literal["const", "random", "none"],
        plugin.option(
            "const",
            help="per-pixel noise: const (fixed per layer), random (fresh per image, drawn by promptgen with the "
            "latent: repeatable with --seed) or none",
        ),
    ),
    **{k: v for k, v in _SG2.items() if k not in ("path", "psi")},
)

StyleGAN3Options: type[plugin.Options] = pydantic.create_model(
    "StyleGAN3Options",
    __base__=plugin.Options,
    __doc__="The options of a StyleGAN3 generator spec (no per-pixel noise; it can move its images instead).",
    **_common(
        "a local checkpoint instead of the download: an NVIDIA stylegan3 .pkl (config T or R)",
        "auto (float16 in the layers the checkpoint marks, on CUDA only, as NVIDIA's code), fp32 or fp16",
    ),
    translate_x=(
        float,
        plugin.option(
            0.0,
            ge=-1,
            le=1,
            help="move every image right by this fraction of its width (gen_images.py --translate)",
            example="0.1",
        ),
    ),
    translate_y=(
        float,
        plugin.option(0.0, ge=-1, le=1, help="move every image down by this fraction of its height", example="-0.1"),
    ),
    rotate=(
        float,
        plugin.option(
            0.0,
            ge=-360,
            le=360,
            help="rotate every image by this many degrees, anticlockwise (gen_images.py --rotate)",
            example="30",
        ),
    ),
)
