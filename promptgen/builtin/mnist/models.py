"""Built-in digit models: a small generator, a control classifier and an
independent evaluator, as plain ``torch.nn`` modules.

All images are float tensors of shape (B, 1, 28, 28) with values in [0, 1]
(0 = black background, 1 = white stroke), the MNIST convention.

* :class:`DigitGenerator` maps a latent ``z ~ N(0, I)`` of shape (B, 32) to
  images. Trained as an unconditional GAN on the images of the ``"models"``
  split (no labels; nothing in its latent is tied to a digit).
* :class:`DigitClassifier` is the *control* classifier (trained on the
  ``"models"`` split, with augmentation and an eleventh "not a digit" class);
  it is smooth and cheap so it can serve as an energy whose gradients flow
  back into the generator's latent.
* :class:`DigitEvaluator` is the *independent* evaluator (trained on the
  disjoint ``"evaluator"`` split) with a different, residual architecture; it
  also exposes 64-d penultimate features for Fréchet distances.
* :class:`DigitRealism` and :class:`RealismCheck`: the realism check that
  judges whether an image is a digit at all (a network trained on real digits
  against junk, together with the evaluator's confidence).

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
#: The control classifier's eleventh output: "this is not a digit".
NOT_A_DIGIT = NUM_CLASSES
FEATURE_DIM = 64
WEIGHTS_DIR = Path(__file__).parent / "weights"

ModelName = Literal["generator", "classifier", "evaluator", "realism"]


class DigitGenerator(nn.Module):
    """Unconditional DCGAN-style generator: latent (B, 32) -> image (B, 1, 28, 28) in [0, 1].

    ``z`` is meant to be drawn from N(0, I) (any finite values are accepted).
    Trained as an unconditional GAN on images alone: nothing in the latent is
    tied to a class, and the digits come out in whatever proportions the GAN
    learnt (see docs/benchmarks.md for the measured histogram).

    Layers: Linear(32 -> 128x7x7) -> 4x4 stride-2 ConvTranspose (64x14x14) ->
    3x3 conv (64x14x14) -> 3x3 conv to 4 channels + pixel shuffle (1x28x28) ->
    sigmoid. Normalisation is per-sample (GroupNorm), so each output depends
    only on its own latent, never on the rest of the batch.
    """

    def __init__(self, latent_dim: int = LATENT_DIM, width: int = 128, inputs: int | None = None) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.width = width
        w = width
        self.fc = nn.Linear(inputs or latent_dim, w * 7 * 7)
        self.norm0 = nn.GroupNorm(8, w)
        self.up1 = nn.ConvTranspose2d(w, w // 2, 4, stride=2, padding=1)
        self.norm1 = nn.GroupNorm(8, w // 2)
        self.conv2 = nn.Conv2d(w // 2, w // 2, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, w // 2)
        self.out = nn.Conv2d(w // 2, 4, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, latent_dim) float -> images (B, 1, 28, 28) float in [0, 1]."""
        return self.upsample(self.fc(z))

    def upsample(self, h: torch.Tensor) -> torch.Tensor:
        """The layers after the first: (B, width·49) -> images (B, 1, 28, 28) in [0, 1]."""
        h = F.relu(self.norm0(h.view(h.shape[0], self.width, 7, 7)))
        h = F.relu(self.norm1(self.up1(h)))
        h = F.relu(self.norm2(self.conv2(h)))
        return torch.sigmoid(F.pixel_shuffle(self.out(h), 2))


class DigitClassifier(nn.Module):
    """Control classifier: images (B, 1, 28, 28) in [0, 1] -> logits (B, 11).

    Logits 0-9 are the digits, logit 10 (:data:`NOT_A_DIGIT`) says the image
    is not a digit at all: it was trained on noise, blobs, scribbles and cut-up
    or piled-up digits (:func:`promptgen.builtin.mnist.augment.junk_images`),
    so an energy built on it pushes a flow away from images that only look
    like a digit to a classifier.

    A small CNN (5x5 stride-2 conv, then two 3x3 convs with 2x2 average
    pooling, then two linear layers) with smooth activations (SiLU) and no
    max-pooling, so its gradient with respect to the input is dense and
    well-behaved: it is used as a differentiable energy during generation.
    A forward+backward (input gradient only) on 64 images takes a few ms on CPU.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, stride=2, padding=2)  # 32x14x14
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)  # 64x14x14 -> pool 7x7
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)  # 64x7x7 -> pool 3x3
        self.fc1 = nn.Linear(64 * 3 * 3, 128)
        self.fc2 = nn.Linear(128, NUM_CLASSES + 1)
        self.dropout = nn.Dropout(0.3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 1, 28, 28) in [0, 1] -> the last hidden layer (B, 128), before the logits."""
        h = F.silu(self.conv1(x))
        h = F.avg_pool2d(F.silu(self.conv2(h)), 2)
        h = F.avg_pool2d(F.silu(self.conv3(h)), 2)
        return F.silu(self.fc1(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 1, 28, 28) in [0, 1] -> logits (B, 11). Differentiable in x."""
        return self.fc2(self.dropout(self.features(x)))


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


class DigitRealism(nn.Module):
    """The realism network: images (B, 1, 28, 28) in [0, 1] -> (B,) logit that the image is a real digit.

    A plain CNN (3x3 convs with max-pooling, then global average and max
    pooling) trained on the evaluator's split of real digits against "not a
    digit" images; it shares neither images, nor architecture, nor weights with
    the control classifier. ``threshold`` (a buffer, set when it is trained)
    is the logit above which an image counts as a digit: 99.5 % of real digits
    it never saw lie above it. ``evaluator_confidence`` (also a buffer) is the
    independent evaluator's top probability that 99.5 % of those digits reach:
    the realism check (:class:`RealismCheck`) also asks that the evaluator can
    read the image.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.head = nn.Linear(256, 1)
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("evaluator_confidence", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 1, 28, 28) in [0, 1] -> (B,) logits of "a real digit"."""
        h = F.max_pool2d(F.relu(self.conv1(x - 0.5)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.relu(self.conv3(h))
        return self.head(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)).squeeze(1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) logit minus the threshold: >= 0 for images counted as real digits."""
        return self.forward(x) - self.threshold

    def accepts(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) bool: counted as a real digit."""
        return self.score(x) >= 0


class RealismCheck(nn.Module):
    """What the junk rate counts: images (B, 1, 28, 28) -> (B,) score, >= 0 for an image taken for a real digit.

    Two independent judges must both accept: the realism network (a real digit,
    not noise, blobs or cut-up strokes) and the evaluator (it can read the
    image: its top probability reaches ``evaluator_confidence``). The score is
    the smaller of the two margins, each in logits: ``realism logit − threshold``
    and ``logit(top probability) − logit(evaluator_confidence)``. Both
    thresholds accept 99.5 % of the real digits of the "models" split, which
    trained neither model; together they accept 99 % or more of real digits.
    """

    def __init__(self, realism: DigitRealism, evaluator: DigitEvaluator) -> None:
        super().__init__()
        self.realism = realism
        self.evaluator = evaluator

    #: :meth:`forward` takes the evaluator's logits when the caller has them (one pass of the evaluator, not two).
    takes_logits = True

    def forward(self, x: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """``logits``: the evaluator's logits of ``x``, if already computed."""
        top = F.log_softmax(self.evaluator(x) if logits is None else logits, 1).amax(1)
        readable = top - torch.log1p(-top.exp().clamp(max=1 - 1e-7)) - torch.logit(self.realism.evaluator_confidence)
        return torch.minimum(self.realism.score(x), readable)


_ARCHS: dict[str, type[nn.Module]] = {
    "generator": DigitGenerator,
    "classifier": DigitClassifier,
    "evaluator": DigitEvaluator,
    "realism": DigitRealism,
}


def build(name: ModelName) -> nn.Module:
    """A freshly initialised (untrained) model of the given kind."""
    if name not in _ARCHS:
        raise ValueError(f"unknown built-in model {name!r}; expected one of {sorted(_ARCHS)}")
    return _ARCHS[name]()


def load_pretrained_module(model: nn.Module, path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Load the safetensors file ``path`` into ``model``, strictly; frozen, in eval mode, on ``device``.

    Gradients can still flow through the returned module to its inputs.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
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


def load_pretrained(name: ModelName, device: str | torch.device = "cpu", weights_dir: str | Path = WEIGHTS_DIR) -> nn.Module:
    """Build model ``name`` and load ``weights_dir/{name}.safetensors`` (see :func:`load_pretrained_module`)."""
    return load_pretrained_module(build(name), Path(weights_dir) / f"{name}.safetensors", device)
