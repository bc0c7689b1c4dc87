"""How each panel generator is trained: on the *images* of the MNIST ``"models"`` split only.

The images come from :func:`promptgen.datasets.mnist.load_split_images`,
which never opens the labels file, and the loops are the core's
:func:`~promptgen.builtin.mnist.training.train_gan` and
:func:`~promptgen.builtin.mnist.training.train_vae`. The independent evaluator
trained on the disjoint ``"evaluator"`` split, so it never saw these images.

``class-latent`` is the exception: promptgen's first built-in generator,
trained with labels (its recipe lived in promptgen-core 0.1); its weights are
kept as they were and it has no recipe here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from promptgen.builtin.mnist.training import Critic, ProgressFactory, save_weights, setup_torch, train_gan, train_vae
from promptgen.datasets.mnist import load_split_images

from .models import ConvGenerator, ConvVAE, MLPCritic, MLPGenerator, VAEDecoder

WEIGHTS_DIR = Path(__file__).parent / "weights"


def ink_weights(images: torch.Tensor, power: float = 3.0) -> torch.Tensor:
    """(N,) sampling weights ∝ (ink per image)^power: a label-free way to bias a generator
    towards heavy digits (0, 8) and away from light ones (1, 7)."""
    return images.mean((1, 2, 3)).pow(power)


@dataclass(frozen=True)
class Recipe:
    """One panel generator: how to build its network and train it."""

    name: str
    family: str
    latent_dim: int
    steps: int
    train: Callable[[torch.Tensor, int, ProgressFactory | None], tuple[nn.Module, dict[str, Any]]]
    notes: str = ""
    options: dict[str, Any] = field(default_factory=dict)


def _mlp_gan(images: torch.Tensor, steps: int, progress: ProgressFactory | None) -> tuple[nn.Module, dict[str, Any]]:
    # The classic recipe: plain non-saturating loss, no augmentation, no penalty.
    return train_gan(MLPGenerator(64), MLPCritic(), images, latent_shape=(64,), steps=steps, loss="ns",
                     augment=False, progress=progress, label="mlp-gan")


def _wgan_gp(images: torch.Tensor, steps: int, progress: ProgressFactory | None) -> tuple[nn.Module, dict[str, Any]]:
    return train_gan(ConvGenerator(64, 128), Critic(32), images, latent_shape=(64,), steps=steps, loss="wgan-gp",
                     critic_steps=5, penalty=10.0, lr=2e-4, betas=(0.5, 0.9), augment=True, progress=progress,
                     label="wgan-gp")


def _vae(images: torch.Tensor, steps: int, progress: ProgressFactory | None) -> tuple[nn.Module, dict[str, Any]]:
    vae, summary = train_vae(ConvVAE(16), images, steps=steps, progress=progress, label="vae")
    decoder = VAEDecoder(16)
    decoder.decoder.load_state_dict(vae.decoder.state_dict())
    return decoder.eval().requires_grad_(False), summary


def _biased_gan(images: torch.Tensor, steps: int, progress: ProgressFactory | None) -> tuple[nn.Module, dict[str, Any]]:
    gen, summary = train_gan(ConvGenerator(32, 64), Critic(32), images, latent_shape=(32,), steps=steps, loss="ns-r1",
                             weights=ink_weights(images), progress=progress, label="biased-gan")
    summary["data_weights"] = "ink^3"
    return gen, summary


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("mlp-gan", "MLP GAN", 64, 20_000, _mlp_gan, "non-saturating loss, no augmentation"),
        Recipe("wgan-gp", "DCGAN generator, WGAN-GP critic", 64, 2_500, _wgan_gp, "5 critic steps per generator step"),
        Recipe("vae", "convolutional VAE", 16, 15_000, _vae, "decoder mean: blurry"),
        Recipe("biased-gan", "small DCGAN, biased data", 32, 8_000, _biased_gan,
               "real images drawn in proportion to ink³: heavy digits favoured, 1s rare"),
    ]
}


def build_network(name: str) -> nn.Module:
    """An untrained network of panel generator ``name`` (the shape its weights load into)."""
    from .models import ClassLatentGenerator

    return {
        "mlp-gan": lambda: MLPGenerator(64),
        "wgan-gp": lambda: ConvGenerator(64, 128),
        "vae": lambda: VAEDecoder(16),
        "biased-gan": lambda: ConvGenerator(32, 64),
        "class-latent": lambda: ClassLatentGenerator(32),
    }[name]()


def train(name: str, data: str | Path, out: str | Path = WEIGHTS_DIR, *, seed: int = 0, steps: int | None = None,
          progress: ProgressFactory | None = None) -> dict[str, Any]:
    """Train panel generator ``name`` on the images of the ``"models"`` split and write ``out/NAME.safetensors``."""
    recipe = RECIPES[name]
    setup_torch(seed)
    images = load_split_images(data, "models")
    steps = recipe.steps if steps is None else steps
    generator, summary = recipe.train(images, steps, progress)
    summary = {**summary, "family": recipe.family}
    path = save_weights(generator, Path(out) / f"{name}.safetensors",
                        metadata={"model": name, "train_split": "models", "labels_read": "none", "seed": seed, **summary})
    return {"name": name, "weights": str(path), "bytes": path.stat().st_size, "seed": seed, **summary}
