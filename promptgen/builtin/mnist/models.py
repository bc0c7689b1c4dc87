"""Built-in digit models: a small generator, a control classifier and an
independent evaluator, as plain ``torch.nn`` modules.

All images are float tensors of shape (B, 1, 28, 28) with values in [0, 1]
(0 = black background, 1 = white stroke), the MNIST convention.

* :class:`DigitGenerator` maps a latent ``z ~ N(0, I)`` of shape (B, 32) to
  images. Trained as a GAN on the ``"models"`` split. Its latent is
  class-structured (see :func:`latent_class`, :func:`sample_latent`).
* :class:`DigitClassifier` is the *control* classifier (trained on the
  ``"models"`` split); it is smooth and cheap so it can serve as an energy
  whose gradients flow back into the generator's latent.
* :class:`DigitEvaluator` is the *independent* evaluator (trained on the
  disjoint ``"evaluator"`` split) with a different, residual architecture; it
  also exposes 64-d penultimate features for Fréchet distances.

Pretrained weights live in :data:`WEIGHTS_DIR` and are loaded with
:func:`load_pretrained`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

LATENT_DIM = 32
NUM_CLASSES = 10
FEATURE_DIM = 64
WEIGHTS_DIR = Path(__file__).parent / "weights"

ModelName = Literal["generator", "classifier", "evaluator"]


def latent_class(z: torch.Tensor) -> torch.Tensor:
    """Digit class (B,) int64 that :class:`DigitGenerator` draws for latents ``z`` (B, 32).

    The class is the index of the largest of the first 10 latent coordinates,
    so under z ~ N(0, I) every digit has probability exactly 1/10.
    """
    return z[:, :NUM_CLASSES].argmax(1)


def sample_latent(
    n: int,
    digits: torch.Tensor | int | None = None,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Draw ``n`` latents z ~ N(0, I) of shape (n, 32).

    If ``digits`` (an int or an (n,) int tensor) is given, the latents are
    drawn from N(0, I) *conditioned* on ``latent_class(z) == digits``: the
    largest of the first 10 coordinates is swapped into the requested slot,
    which by symmetry is an exact conditional sample.
    """
    z = torch.randn(n, LATENT_DIM, generator=generator).to(device)
    if digits is None:
        return z
    digits = torch.as_tensor(digits, dtype=torch.long, device=z.device).expand(n)
    head = z[:, :NUM_CLASSES]
    rows = torch.arange(n, device=z.device)
    top = head.argmax(1)
    v_top, v_want = head[rows, top].clone(), head[rows, digits].clone()
    head[rows, digits] = v_top
    head[rows, top] = v_want
    return z


class DigitGenerator(nn.Module):
    """DCGAN-style generator: latent (B, 32) -> image (B, 1, 28, 28) in [0, 1].

    ``z`` is meant to be drawn from N(0, I) (any finite values are accepted).
    The latent is class-structured: the digit drawn is ``latent_class(z)``,
    the index of the largest of ``z[:, :10]`` (so each digit has probability
    1/10), and the remaining variation (style, thickness, slant) comes from all
    32 coordinates. A soft one-hot ``softmax(z[:, :10] / 0.1)`` is appended to
    ``z``, so the map stays continuous and differentiable in ``z``.

    Layers: Linear(42 -> 128x7x7) -> 4x4 stride-2 ConvTranspose (64x14x14) ->
    3x3 conv (64x14x14) -> 3x3 conv to 4 channels + pixel shuffle (1x28x28) ->
    sigmoid. Normalisation is per-sample (GroupNorm), so each output depends
    only on its own latent, never on the rest of the batch.
    """

    class_temperature = 0.1

    def __init__(self, latent_dim: int = LATENT_DIM, width: int = 128) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.width = width
        w = width
        self.fc = nn.Linear(latent_dim + NUM_CLASSES, w * 7 * 7)
        self.norm0 = nn.GroupNorm(8, w)
        self.up1 = nn.ConvTranspose2d(w, w // 2, 4, stride=2, padding=1)
        self.norm1 = nn.GroupNorm(8, w // 2)
        self.conv2 = nn.Conv2d(w // 2, w // 2, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, w // 2)
        self.out = nn.Conv2d(w // 2, 4, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, latent_dim) float -> images (B, 1, 28, 28) float in [0, 1]."""
        soft_class = F.softmax(z[:, :NUM_CLASSES] / self.class_temperature, dim=1)
        h = self.fc(torch.cat([z, soft_class], dim=1)).view(z.shape[0], self.width, 7, 7)
        h = F.relu(self.norm0(h))
        h = F.relu(self.norm1(self.up1(h)))
        h = F.relu(self.norm2(self.conv2(h)))
        return torch.sigmoid(F.pixel_shuffle(self.out(h), 2))


class DigitClassifier(nn.Module):
    """Control classifier: images (B, 1, 28, 28) in [0, 1] -> logits (B, 10).

    A small CNN (5x5 stride-2 conv, then two 3x3 convs with 2x2 average
    pooling, then two linear layers) with smooth activations (SiLU) and no
    max-pooling, so its gradient with respect to the input is dense and
    well-behaved: it is used as a differentiable energy during generation.
    A forward+backward (input gradient only) on 64 images takes a few ms on CPU.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, stride=2, padding=2)  # 32x14x14
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1)  # 32x14x14 -> pool 7x7
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)  # 64x7x7 -> pool 3x3
        self.fc1 = nn.Linear(64 * 3 * 3, 128)
        self.fc2 = nn.Linear(128, NUM_CLASSES)
        self.dropout = nn.Dropout(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 1, 28, 28) in [0, 1] -> logits (B, 10). Differentiable in x."""
        h = F.silu(self.conv1(x))
        h = F.avg_pool2d(F.silu(self.conv2(h)), 2)
        h = F.avg_pool2d(F.silu(self.conv3(h)), 2)
        h = F.silu(self.fc1(h.flatten(1)))
        return self.fc2(self.dropout(h))


class _ResBlock(nn.Module):
    """Pre-activation residual block (BatchNorm, ReLU, 3x3 convs)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.skip = (
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(x))
        out = self.conv1(h)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + self.skip(h if not isinstance(self.skip, nn.Identity) else x)


class DigitEvaluator(nn.Module):
    """Independent evaluator: a small pre-activation ResNet with BatchNorm.

    ``forward``: images (B, 1, 28, 28) in [0, 1] -> logits (B, 10).
    ``features``: images -> (B, 64) penultimate features (the output of a
    linear layer, no ReLU, so they are dense), used for Fréchet distances.
    The logits are a linear function of these features. Use in eval mode
    (BatchNorm then uses its stored statistics, independent of the batch).
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 32, 3, padding=1, bias=False)  # 32x28x28
        self.block1 = _ResBlock(32, 64, 2)  # 64x14x14
        self.block2 = _ResBlock(64, 128, 2)  # 128x7x7
        self.block3 = _ResBlock(128, 128, 1)  # 128x7x7
        self.bn_out = nn.BatchNorm2d(128)
        self.feat = nn.Linear(128, FEATURE_DIM)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 1, 28, 28) in [0, 1] -> features (B, 64) float."""
        h = self.stem(x - 0.5)
        h = self.block3(self.block2(self.block1(h)))
        h = F.relu(self.bn_out(h)).mean(dim=(2, 3))
        return self.feat(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 1, 28, 28) in [0, 1] -> logits (B, 10)."""
        return self.head(self.dropout(self.features(x)))


_ARCHS: dict[str, type[nn.Module]] = {
    "generator": DigitGenerator,
    "classifier": DigitClassifier,
    "evaluator": DigitEvaluator,
}


def build(name: ModelName) -> nn.Module:
    """A freshly initialised (untrained) model of the given kind."""
    if name not in _ARCHS:
        raise ValueError(f"unknown built-in model {name!r}; expected one of {sorted(_ARCHS)}")
    return _ARCHS[name]()


def load_pretrained(name: ModelName, device: str | torch.device = "cpu") -> nn.Module:
    """Build model ``name`` and load ``WEIGHTS_DIR/{name}.safetensors``.

    The returned module is on ``device``, in eval mode, with
    ``requires_grad_(False)`` on all parameters (gradients can still flow
    through it to its inputs).
    """
    from safetensors.torch import load_file

    model = build(name)
    path = WEIGHTS_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"built-in weights not found: {path}")
    state = load_file(str(path), device="cpu")
    # BatchNorm step counters are not stored (they do not affect eval outputs)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"weights {path} do not match {type(model).__name__}: "
            f"missing {missing}, unexpected {list(result.unexpected_keys)}"
        )
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    return model
