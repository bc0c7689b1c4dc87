"""The options of a StyleNeRF generator spec (``stylenerf-ffhq-256:camera=latent,psi=0.7``).

The core checks a spec against :class:`StyleNeRFOptions` before the generator is built and writes the one-line
error itself.
"""

from __future__ import annotations

from typing import Literal

from promptgen import plugin


class StyleNeRFOptions(plugin.Options):
    """How a StyleNeRF is read and where its camera comes from."""

    path: str | None = plugin.option(
        None,
        help="a local StyleNeRF network pickle instead of the download (facebookresearch/StyleNeRF's ffhq_256.pkl ...)",
        example="ffhq_256.pkl",
    )
    psi: float = plugin.option(1.0, ge=0, le=1, help="truncation ψ towards the mean w (1: none)", example="0.7")
    camera: Literal["prior", "latent", "condition"] = plugin.option(
        "prior",
        help="prior: the camera is noise drawn from the model's own prior at every image (as in the paper); "
        "latent: yaw and pitch are a part of the latent the prompt controls, mapped to the prior's range; "
        "condition: a conditional prompt sets them (--cond yaw=-0.5:0.5 --cond pitch=-0.2:0.2, radians)",
    )
