"""Image augmentations and "not a digit" images for training the digit classifiers.

Every function takes and returns (B, 1, H, W) float images in [0, 1] (white
strokes on black) and draws from torch's global generator, so a seeded run is
repeatable. They are batched (one ``grid_sample`` or convolution per call), so
augmenting costs less than the classifier's own step on a CPU.

:func:`augment_digits` turns real digits into digits a generator might draw:
moved, elastically bent, blurred (as a VAE draws), thicker or thinner, noisy,
fainter. :func:`junk_images` makes images that are *not* digits (noise, blobs,
scribbles, digits cut up, piled up or smeared out); the control classifier
learns them as an eleventh class, so an energy built on it can tell a flow
that "this is not a digit" (see docs/robustness-of-controls.md).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F


def _uniform(b: int, low: float, high: float, device: torch.device) -> Tensor:
    return torch.empty(b, device=device).uniform_(low, high)


def random_affine(
    x: Tensor,
    max_rot_deg: float = 15.0,
    scale: tuple[float, float] = (0.85, 1.15),
    max_shift_px: float = 3.0,
    max_shear: float = 0.25,
) -> Tensor:
    """Per-sample random rotation, scale, shear and translation (bilinear, zero fill)."""
    b, dev = x.shape[0], x.device
    ang = _uniform(b, -1, 1, dev) * math.radians(max_rot_deg)
    sc = _uniform(b, *scale, dev)
    sh = _uniform(b, -max_shear, max_shear, dev)
    t = _uniform(2 * b, -1, 1, dev).view(b, 2) * (max_shift_px * 2 / x.shape[-1])
    cos, sin = torch.cos(ang), torch.sin(ang)
    # The inverse map (output -> input coordinates): rotation @ shear, divided by the scale.
    theta = torch.stack(
        [
            torch.stack([(cos + sin * sh) / sc, (-sin + cos * sh) / sc, t[:, 0]], 1),
            torch.stack([sin / sc, cos / sc, t[:, 1]], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def elastic(x: Tensor, alpha_px: float | Tensor = 2.0, coarse: int = 4) -> Tensor:
    """Elastic distortion: a smooth random displacement of up to about ``alpha_px`` pixels.

    The displacement field is drawn on a ``coarse`` × ``coarse`` grid and
    upsampled bicubically (a cheap stand-in for Simard et al.'s Gaussian-smoothed
    field). ``alpha_px`` may be a (B,) tensor, one strength per image.
    """
    b, _, h, w = x.shape
    alpha = torch.as_tensor(alpha_px, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
    field = torch.randn(b, 2, coarse, coarse, device=x.device) * alpha * (2 / w)
    field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    eye = torch.eye(2, 3, device=x.device, dtype=x.dtype).expand(b, 2, 3)
    grid = F.affine_grid(eye, list(x.shape), align_corners=False) + field
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Blur each image with its own Gaussian of standard deviation ``sigma[i]`` pixels (0: unchanged)."""
    b = x.shape[0]
    radius = max(1, math.ceil(3 * float(sigma.max()))) if b else 1
    r = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x).clamp_min(1e-3)[:, None]
    k = torch.exp(-0.5 * (r[None, :] / s) ** 2)
    k = k / k.sum(1, keepdim=True)  # (B, K); sigma -> 0 gives a delta
    # Separable, one group per image.
    y = F.conv2d(x.transpose(0, 1), k[:, None, None, :], padding=(0, radius), groups=b)
    y = F.conv2d(y, k[:, None, :, None], padding=(radius, 0), groups=b)
    return y.transpose(0, 1)


def stroke_width(x: Tensor, change: Tensor) -> Tensor:
    """Thicken (``change[i] = 1``), thin (``-1``) or keep (``0``) each image's strokes by a 3×3 grey morphology."""
    thick = F.max_pool2d(x, 3, stride=1, padding=1)
    thin = -F.max_pool2d(-x, 3, stride=1, padding=1)
    c = change.to(x).view(-1, 1, 1, 1)
    return torch.where(c > 0, thick, torch.where(c < 0, thin, x))


def geometric(x: Tensor, strength: float = 1.0) -> Tensor:
    """Digits moved and bent, still the same digits: a random affine map for each, an elastic bend
    for about half, thicker strokes for a fifth and thinner for another fifth."""
    if strength <= 0:
        return x
    b, dev = x.shape[0], x.device
    x = random_affine(x, 15 * strength, (1 - 0.15 * strength, 1 + 0.15 * strength), 3 * strength, 0.25 * strength)
    bend = (torch.rand(b, device=dev) < 0.5).to(x) * _uniform(b, 0.5, 2.5, dev) * strength
    x = elastic(x, bend)
    width = torch.multinomial(torch.tensor([0.2, 0.6, 0.2], device=dev), b, replacement=True) - 1
    return stroke_width(x, width)


def photometric(x: Tensor, strength: float = 1.0) -> Tensor:
    """How a generator's pixels may differ from a scan: a blur of up to 1.2 px for a third of the
    images (as a VAE draws), fainter ink for a fifth, a gamma change and pixel noise for all.

    The "not a digit" images go through it too, so no classifier can tell a
    digit from junk by the noise or the blur alone."""
    if strength <= 0:
        return x
    b, dev = x.shape[0], x.device
    sigma = (torch.rand(b, device=dev) < 0.33).to(x) * _uniform(b, 0.0, 1.2 * strength, dev)
    x = gaussian_blur(x, sigma)
    gain = torch.where(torch.rand(b, device=dev) < 0.2, _uniform(b, 0.55, 1.0, dev), torch.ones(b, device=dev))
    gamma = torch.exp(_uniform(b, -0.4, 0.4, dev) * strength)
    x = x.clamp(0, 1).pow(gamma.view(-1, 1, 1, 1)) * gain.view(-1, 1, 1, 1)
    noise = _uniform(b, 0.0, 0.08 * strength, dev).view(-1, 1, 1, 1) * torch.randn_like(x)
    return (x + noise).clamp(0, 1)


def augment_digits(x: Tensor, strength: float = 1.0) -> Tensor:
    """Real digits made to look like what generators draw: still the same digit, still a digit.

    :func:`photometric` after :func:`geometric`; ``strength`` scales every range (0: none).
    """
    return photometric(geometric(x, strength), strength)


# -- not digits -------------------------------------------------------------------------------


def _normalise(x: Tensor) -> Tensor:
    lo = x.amin((1, 2, 3), keepdim=True)
    hi = x.amax((1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-6)


def noise_images(b: int, size: int = 28, device: torch.device | str = "cpu") -> Tensor:
    """Pixel noise: uniform, Gaussian around grey, or sparse salt on black."""
    kind = torch.randint(0, 3, (b,), device=device).view(-1, 1, 1, 1)
    uniform = torch.rand(b, 1, size, size, device=device)
    grey = (0.5 + 0.25 * torch.randn(b, 1, size, size, device=device)).clamp(0, 1)
    salt = (torch.rand(b, 1, size, size, device=device) < _uniform(b, 0.02, 0.3, torch.device(device)).view(-1, 1, 1, 1)).float()
    return torch.where(kind == 0, uniform, torch.where(kind == 1, grey, salt))


def blob_images(b: int, size: int = 28, device: torch.device | str = "cpu") -> Tensor:
    """Smooth blobs: low-frequency noise, thresholded softly at a random level."""
    coarse = torch.randint(3, 8, (1,)).item()
    field = F.interpolate(torch.randn(b, 1, coarse, coarse, device=device), size=(size, size), mode="bicubic", align_corners=False)
    level = _uniform(b, 0.0, 1.5, torch.device(device)).view(-1, 1, 1, 1)
    sharp = _uniform(b, 2.0, 12.0, torch.device(device)).view(-1, 1, 1, 1)
    return torch.sigmoid(sharp * (field - level))


def scribble_images(b: int, size: int = 28, device: torch.device | str = "cpu") -> Tensor:
    """Random-walk scribbles drawn with a soft pen: strokes, but no digit."""
    steps = 40
    dev = torch.device(device)
    turn = torch.cumsum(torch.randn(b, steps, device=dev) * 0.6, 1)
    speed = _uniform(b, 0.6, 1.6, dev)[:, None]
    start = (torch.rand(b, 1, 2, device=dev) - 0.5) * size * 0.5 + size / 2
    path = start + torch.cumsum(torch.stack([torch.cos(turn), torch.sin(turn)], 2) * speed[..., None], 1)  # (b, steps, 2)
    ys = torch.arange(size, device=dev, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(ys, ys, indexing="ij"), -1).view(1, 1, size * size, 2)
    d2 = ((grid - path[:, :, None, :].flip(-1)) ** 2).sum(-1).amin(1)  # (b, H*W)
    pen = _uniform(b, 0.7, 1.6, dev)[:, None]
    return torch.exp(-d2 / (2 * pen**2)).view(b, 1, size, size).clamp(0, 1)


def corrupt_digits(x: Tensor) -> Tensor:
    """Real digits made into non-digits: patches shuffled, two digits piled up, smeared far out of shape,
    swollen into a blot, blurred into a haze, or cut to a fragment."""
    b, _, h, w = x.shape
    dev = x.device
    kind = torch.randint(0, 6, (b,), device=dev).view(-1, 1, 1, 1)
    # Patches of 7 px in a random order (one order per batch).
    p = 7
    tiles = x.unfold(2, p, p).unfold(3, p, p).reshape(b, 1, -1, p, p)
    order = torch.randperm(tiles.shape[2], device=dev)
    shuffled = tiles[:, :, order].reshape(b, 1, h // p, w // p, p, p).permute(0, 1, 2, 4, 3, 5).reshape(b, 1, h, w)
    other = x.roll(1, 0)
    piled = torch.maximum(x, random_affine(other, 40, (0.8, 1.2), 6, 0.3))
    smeared = elastic(x, _uniform(b, 6.0, 10.0, dev))
    blot = F.max_pool2d(F.max_pool2d(x, 7, stride=1, padding=3), 7, stride=1, padding=3)
    haze = gaussian_blur(x, _uniform(b, 2.5, 4.0, dev))
    haze = _normalise(haze) * _uniform(b, 0.3, 1.0, dev).view(-1, 1, 1, 1)
    zoom = random_affine(x, 30, (3.0, 5.0), 6, 0.2)
    out = torch.where(kind == 0, shuffled, torch.where(kind == 1, piled, torch.where(kind == 2, smeared, x)))
    out = torch.where(kind == 3, blot, torch.where(kind == 4, haze, torch.where(kind == 5, zoom, out)))
    return out.clamp(0, 1)


def faint_images(digits: Tensor) -> Tensor:
    """Next to nothing: an empty or almost empty canvas, a digit at a tenth of its ink, or a
    digit's negative (ink everywhere but the strokes)."""
    b, dev = digits.shape[0], digits.device
    kind = torch.randint(0, 3, (b,), device=dev).view(-1, 1, 1, 1)
    empty = torch.rand_like(digits) * _uniform(b, 0.0, 0.15, dev).view(-1, 1, 1, 1)
    faint = digits * _uniform(b, 0.03, 0.2, dev).view(-1, 1, 1, 1)
    return torch.where(kind == 0, empty, torch.where(kind == 1, faint, 1 - digits))


def junk_images(digits: Tensor) -> Tensor:
    """As many images as ``digits`` (B, 1, H, W) that are not digits, in a random order: about a
    fifth each of noise, blobs, scribbles, corrupted versions of ``digits`` and near-empty or
    negative images."""
    b, _, h, _ = digits.shape
    dev = digits.device
    made = [noise_images(b, h, dev), blob_images(b, h, dev), scribble_images(b, h, dev), corrupt_digits(digits), faint_images(digits)]
    parts = torch.randint(0, len(made), (b,), device=dev).view(-1, 1, 1, 1)
    out = made[0]
    for k in range(1, len(made)):
        out = torch.where(parts == k, made[k], out)
    return out


__all__ = [
    "augment_digits",
    "blob_images",
    "corrupt_digits",
    "elastic",
    "faint_images",
    "gaussian_blur",
    "geometric",
    "junk_images",
    "noise_images",
    "photometric",
    "random_affine",
    "scribble_images",
    "stroke_width",
]
