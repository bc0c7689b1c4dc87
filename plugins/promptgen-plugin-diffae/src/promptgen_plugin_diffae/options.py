"""The options of a DiffAE generator spec (``diffae:path=last.ckpt,steps=5,sample_steps=100,x_t_seed=7``).

The core checks a spec against these models before the generator is built and writes the one-line error
itself. What depends on the loaded model (a step count above its training steps, or one that DiffAE's
``ddimN`` spacing cannot give) is checked when it is built, in :mod:`.generator`.
"""

from __future__ import annotations

from promptgen import plugin

#: The PromptGen authors' settings for DiffAE: 5 latent and 5 image DDIM steps training, 100 sampling.
TRAIN_STEPS = 5
SAMPLE_STEPS = 100


class DiffAEOptions(plugin.Options):
    """How a DiffAE is read and sampled."""

    path: str | None = plugin.option(
        None, help="a DiffAE checkpoint: the latent model's last.ckpt (<name>_autoenc_latent/last.ckpt: everything sampling needs), "
        "or an autoencoder's last.ckpt with latent_path= and stats=",
        example="ffhq256_autoenc_latent/last.ckpt",
    )
    latent_path: str | None = plugin.option(
        None, help="the latent DDIM's last.ckpt, when path= is the autoencoder saved alone", example="ffhq256_autoenc_latent/last.ckpt"
    )
    stats: str | None = plugin.option(
        None, help="latent.pkl: the semantic codes' mean and std, when no checkpoint given holds them", example="ffhq256_autoenc/latent.pkl"
    )
    steps: int = plugin.option(TRAIN_STEPS, ge=2, le=1000, help="image DDIM steps while a prompt trains (gradients flow through each)", example="5")
    latent_steps: int = plugin.option(TRAIN_STEPS, ge=2, le=1000, help="latent DDIM steps while a prompt trains", example="5")
    sample_steps: int = plugin.option(
        SAMPLE_STEPS, ge=2, le=1000, help="image DDIM steps when sampling, evaluating and judging (no gradients)", example="100"
    )
    sample_latent_steps: int = plugin.option(SAMPLE_STEPS, ge=2, le=1000, help="latent DDIM steps when sampling, evaluating and judging", example="100")
    x_t_seed: int | None = plugin.option(
        None, ge=0, help="fix the image DDIM's x_T for every image of the prompt (drawn from this seed); default: a fresh x_T per image",
        example="7",
    )
    checkpointing: bool = plugin.option(
        True, help="recompute each image DDIM step's activations in the backward pass instead of keeping them (less memory, more time)"
    )
