"""The options of a diffusers generator spec (``diffusers:path=DIR,steps=5,sample_steps=50,latent=blocks``).

The core checks a spec against these models before the generator is built and writes the one-line error
itself. What depends on the loaded pipeline (a step count above the model's training steps, a block size that
does not divide the image) is checked when it is built, in :mod:`.generator`.
"""

from __future__ import annotations

from typing import Literal

from promptgen import plugin

#: DDIM steps while a prompt trains (gradients flow through every step) and while it samples.
#: 5 is the PromptGen authors' training count for DiffAE; 50 is diffusers' DDIMPipeline default.
TRAIN_STEPS = 5
SAMPLE_STEPS = 50
#: ``latent=auto`` controls the whole x_T up to this many numbers, else the means of square blocks
#: (the smallest power-of-two block that brings the controlled part under it).
AUTO_FULL_LIMIT = 4096


class PipelineOptions(plugin.Options):
    """How a loaded pipeline is sampled: the options every diffusers generator takes."""

    steps: int = plugin.option(
        TRAIN_STEPS, ge=1, le=1000,
        help="DDIM steps while a prompt trains (gradients flow through each); the paper trained DiffAE with 5",
        example="5",
    )
    sample_steps: int = plugin.option(
        SAMPLE_STEPS, ge=1, le=1000,
        help="DDIM steps when sampling, evaluating and judging (no gradients); the paper sampled with 100",
        example="100",
    )
    latent: Literal["auto", "full", "blocks"] = plugin.option(
        "auto",
        help="what the prompt controls: the whole x_T (full), or the means of block×block squares of it, rescaled to unit "
        "variance, the rest being noise (blocks); auto: full up to 4096 numbers, else blocks",
    )
    block: int = plugin.option(
        0, ge=0, le=256,
        help="the block size for latent=blocks (it must divide the image's height and width); 0: the smallest power of 2 "
        "that leaves at most 4096 controlled numbers",
        example="8",
    )
    checkpointing: bool = plugin.option(
        True, help="recompute each DDIM step's activations in the backward pass instead of keeping them (less memory, more time)"
    )


class DiffusersOptions(PipelineOptions):
    """The options of ``diffusers``: where the pipeline is, and how it is sampled."""

    path: str | None = plugin.option(
        None, help="a local folder saved by a diffusers pipeline's save_pretrained (model_index.json, unet/, scheduler/)",
        example="ddpm-cifar10-32",
    )
    repo: str | None = plugin.option(
        None, help="a Hugging Face Hub model id of such a pipeline, downloaded into the hub's cache", example="google/ddpm-cifar10-32"
    )
    revision: str | None = plugin.option(None, help="the hub revision (a branch, tag or commit) for repo=", example="main")
