"""The three networks of csinva/gan-vae-pretrained-pytorch that promptgen reads, written from their published
descriptions (the repository's README and the file's keys and shapes), in plain PyTorch.

- :func:`mlp_gan`: the MLP GAN's generator, an ``nn.Sequential`` whose state dict has keys ``0.*``, ``2.*``,
  ``4.*``: ``Linear(64, 256)``, ReLU, ``Linear(256, 256)``, ReLU, ``Linear(256, 784)``, Tanh.
- :class:`VAEDecoder`: the MLP VAE's decoder, ``fc3`` (``Linear(20, 400)``), ReLU, ``fc4``
  (``Linear(400, 784)``), sigmoid. The file also holds the encoder (``fc1``, ``fc21``, ``fc22``), which promptgen
  checks and ignores.
- :class:`LeNet5`: the repository's MNIST classifier (99.1 % on the MNIST test set), trained on the 60,000
  MNIST training images resized to 32×32: three 5×5 convolutions (6, 16, 120 channels) with ReLU and 2×2 max
  pooling after the first two, then ``Linear(120, 84)``, ReLU, ``Linear(84, 10)``.

``scripts/conformance.py`` runs the repository's own code beside these on the same random weights.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Latent sizes of the two generators.
GAN_LATENT = 64
VAE_LATENT = 20


def mlp_gan() -> nn.Sequential:
    """The MLP GAN's generator: (B, 64) -> (B, 784) in [-1, 1]."""
    return nn.Sequential(
        nn.Linear(GAN_LATENT, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 784), nn.Tanh()
    )


class VAEEncoder(nn.Module):
    """The encoder's layers, only so that a whole VAE file's keys can be checked (promptgen never runs them)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, VAE_LATENT)
        self.fc22 = nn.Linear(400, VAE_LATENT)


class VAEDecoder(nn.Module):
    """The MLP VAE's decoder: (B, 20) -> (B, 784) in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.fc3 = nn.Linear(VAE_LATENT, 400)
        self.fc4 = nn.Linear(400, 784)

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))


class LeNet5(nn.Module):
    """The repository's MNIST classifier: (B, 1, 32, 32) in [0, 1] -> (B, 10) log-probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.convnet = nn.Sequential(OrderedDict([
            ("c1", nn.Conv2d(1, 6, 5)), ("relu1", nn.ReLU()), ("s2", nn.MaxPool2d(2, 2)),
            ("c3", nn.Conv2d(6, 16, 5)), ("relu3", nn.ReLU()), ("s4", nn.MaxPool2d(2, 2)),
            ("c5", nn.Conv2d(16, 120, 5)), ("relu5", nn.ReLU()),
        ]))
        self.fc = nn.Sequential(OrderedDict([("f6", nn.Linear(120, 84)), ("relu6", nn.ReLU()), ("f7", nn.Linear(84, 10))]))

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(self.fc(self.convnet(x).flatten(1)), dim=-1)


class FromTanh(nn.Module):
    """A module with outputs in [-1, 1] as images in [0, 1] of shape (B, 1, 28, 28): ``(x + 1) / 2``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, z: Tensor) -> Tensor:
        return ((self.net(z) + 1) / 2).clamp(0, 1).view(-1, 1, 28, 28)


class AsImages(nn.Module):
    """A module with outputs in [0, 1] of size 784 as images (B, 1, 28, 28)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, 1, 28, 28)


__all__ = ["GAN_LATENT", "VAE_LATENT", "AsImages", "FromTanh", "LeNet5", "VAEDecoder", "VAEEncoder", "mlp_gan"]
