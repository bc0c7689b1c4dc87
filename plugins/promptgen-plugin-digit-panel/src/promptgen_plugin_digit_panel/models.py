"""The panel's generator networks: 28×28 grey digits in [0, 1] from N(0, I) latents.

Each is a plain ``torch.nn`` module ``z (B, d) -> images (B, 1, 28, 28)``; the
training recipes are in :mod:`promptgen_plugin_digit_panel.training`.

- :class:`MLPGenerator`: a fully connected GAN generator, latent 64 (the
  classic first GAN on MNIST; noisy strokes).
- :class:`ConvGenerator`: a DCGAN generator with BatchNorm, latent 64 (trained
  as a WGAN-GP), or latent 32 and narrower (the deliberately biased GAN).
- :class:`ConvVAE`: a convolutional VAE, latent 16; the generator is its
  decoder's mean (blurry digits).
- :class:`ClassLatentGenerator`: promptgen's first built-in generator, whose
  digit is the largest of ``z[:10]`` (trained with labels; kept to show how
  much easier such a latent makes control).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from promptgen.builtin.mnist.models import DigitGenerator


class MLPGenerator(nn.Module):
    """Linear 64 → 256 → 512 → 784, LeakyReLU(0.2) between, sigmoid at the end."""

    def __init__(self, latent_dim: int = 64) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 256),
            nn.LeakyReLU(0.2),
            nn.Linear(256, 512),
            nn.LeakyReLU(0.2),
            nn.Linear(512, 784),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(z)).view(-1, 1, 28, 28)


class MLPCritic(nn.Module):
    """The MLP GAN's discriminator (training only): 784 → 512 → 256 → 1, dropout 0.3."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 512),
            nn.LeakyReLU(0.2),
            nn.Dropout(0.3),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2),
            nn.Dropout(0.3),
            nn.Linear(256, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1).squeeze(1)


class ConvGenerator(nn.Module):
    """DCGAN generator: Linear(d → w·7·7), BatchNorm, ReLU, two stride-2 transposed convs, sigmoid.

    BatchNorm runs on its stored statistics in eval mode, so each image depends
    on its own latent only.
    """

    def __init__(self, latent_dim: int = 64, width: int = 128) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.width = width
        self.fc = nn.Linear(latent_dim, width * 7 * 7)
        self.bn0 = nn.BatchNorm1d(width * 7 * 7)
        self.up1 = nn.ConvTranspose2d(width, width // 2, 4, 2, 1)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.up2 = nn.ConvTranspose2d(width // 2, 1, 4, 2, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn0(self.fc(z))).view(-1, self.width, 7, 7)
        h = F.relu(self.bn1(self.up1(h)))
        return torch.sigmoid(self.up2(h))


class ConvVAE(nn.Module):
    """Convolutional VAE, latent 16, Bernoulli decoder.

    ``encode(x) -> (mean, log_var)``; ``decode_logits(z)``; ``forward(z)`` is the
    decoder's mean ``sigmoid(logits)``, the generator promptgen uses. Only the
    decoder's weights ship.
    """

    def __init__(self, latent_dim: int = 16) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 256),
            nn.ReLU(),
            nn.Linear(256, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 256),
            nn.ReLU(),
            nn.Linear(256, 64 * 7 * 7),
            nn.ReLU(),
            nn.Unflatten(1, (64, 7, 7)),
            nn.ConvTranspose2d(64, 32, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, 2, 1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        return mean, log_var.clamp(-12, 8)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))


class VAEDecoder(nn.Module):
    """What ships of :class:`ConvVAE`: its decoder, ``z -> sigmoid(logits)``."""

    def __init__(self, latent_dim: int = 16) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.decoder = ConvVAE(latent_dim).decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))


class ClassLatentGenerator(DigitGenerator):
    """promptgen's first built-in generator: latent (B, 32), digit = argmax ``z[:, :10]``.

    A soft one-hot ``softmax(z[:, :10] / 0.1)`` is appended to ``z``, so under
    N(0, I) every digit has probability exactly 1/10 and a class lives in ten
    coordinates: the easiest latent a control can ask for. Trained as a
    class-conditional GAN (with labels), unlike the rest of the panel. The same
    layers as the built-in :class:`~promptgen.builtin.mnist.models.DigitGenerator`
    otherwise.
    """

    class_temperature = 0.1

    def __init__(self, latent_dim: int = 32, width: int = 128) -> None:
        super().__init__(latent_dim, width, inputs=latent_dim + 10)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        soft_class = F.softmax(z[:, :10] / self.class_temperature, dim=1)
        return self.upsample(self.fc(torch.cat([z, soft_class], dim=1)))
