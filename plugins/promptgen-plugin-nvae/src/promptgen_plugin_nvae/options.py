"""The options every NVAE generator spec takes (``nvae-ffhq-256:t=0.7,groups=2``).

The core checks a spec against :class:`NVAEOptions` (numbers, ranges, choices)
before the generator is built and writes the one-line error itself. What
depends on the loaded checkpoint (``groups`` against the model's number of
latent groups) is checked when it is built, in :mod:`.generator`.
"""

from __future__ import annotations

from typing import Literal

from promptgen import plugin

#: The temperature of the authors' PromptGen code for NVAE (unified-generative-zoo, FFHQ 256):
#: the top group scaled by 0.8 and every lower group drawn from its conditional prior at 0.8.
DEFAULT_TEMPERATURE = 0.8


class NVAEOptions(plugin.Options):
    """The options of an NVAE generator spec."""

    path: str | None = plugin.option(None, help="a local NVAE checkpoint.pt (as NVlabs/NVAE train.py saves it) instead of the zoo's file", example="checkpoint.pt")
    t: float = plugin.option(
        DEFAULT_TEMPERATURE, gt=0, le=1.5,
        help="temperature of every latent group (0 < t <= 1.5); default 0.8 as the PromptGen authors' NVAE code (NVAE's own README samples at 0.6-0.7)",
        example="0.7",
    )
    groups: int = plugin.option(1, ge=1, help="latent groups the prompt controls, from the top (1: the top group, as the authors); the others are noise drawn at t", example="2")
    output: Literal["mean", "sample"] = plugin.option(
        "mean", help="mean of the decoder's output distribution, or a sample of it (its randomness drawn by promptgen with the latent: repeatable with --seed)"
    )
    noise: Literal["seeded", "full"] = plugin.option(
        "seeded",
        help="how promptgen draws the lower groups' noise: seeded (one number per image seeds them; small checkpoints) "
        "or full (every number part of the flat latent, as large as the groups)",
    )
    readjust_bn: int = plugin.option(
        0, ge=0, le=100_000,
        help="re-estimate batch-norm statistics first with this many sampling passes of 16 images at t, as NVAE's --readjust_bn (500 there); 0: the stored ones",
        example="500",
    )
