"""The options every BigGAN generator spec takes (``biggan-deep-128:class=golden retriever,truncation=0.5``).

The core checks a spec against :class:`BigGANOptions` (numbers, ranges) before
the generator is built and writes the one-line error itself. Whether
``class=`` names one of the model's classes is checked when it is built.
"""

from __future__ import annotations

from promptgen import plugin

#: The truncation of the PromptGen paper's BigGAN runs (the authors' code: z clamped to ±2, scaled by 0.4).
DEFAULT_TRUNCATION = 0.4


class BigGANOptions(plugin.Options):
    """The options of a BigGAN generator spec."""

    path: str | None = plugin.option(
        None,
        help="a local model instead of the download: a folder with config.json and pytorch_model.bin, or the .bin with config.json beside it",
        example="biggan-deep-128/",
    )
    truncation: float = plugin.option(
        DEFAULT_TRUNCATION,
        gt=0,
        le=1,
        help="truncation: z is the latent clamped to ±2 times this, and the batch-norm statistics are the ones stored for it (paper: 0.4)",
        example="0.5",
    )
    label: str | None = plugin.option(
        None,
        alias="class",
        help="fix one ImageNet class, by index (0-999) or name; the latent is then z only (default: the class embedding is part of the latent)",
        example="golden retriever",
    )
    size: int | None = plugin.option(
        None, ge=8, le=4096, help="output size in pixels, e.g. 224 for energies that need no more (default: the model's)", example="224"
    )
