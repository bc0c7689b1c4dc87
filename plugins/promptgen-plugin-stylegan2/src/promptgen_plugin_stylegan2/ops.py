"""The few tensor operations StyleGAN2 and StyleGAN3 are made of, in plain PyTorch.

Written from the definitions in Karras et al., "Analyzing and Improving the
Image Quality of StyleGAN" (CVPR 2020) and "Alias-Free Generative Adversarial
Networks" (NeurIPS 2021), and checked against NVIDIA's reference
implementations (``scripts/check_against_official.py``,
``scripts/check_stylegan3.py``): FIR up- and down-sampling, modulated and
demodulated convolution, bias + activation + gain + clamp, the filtered leaky
ReLU. No compiled extensions: they run on any device PyTorch supports, and on
CUDA the grouped convolutions go to cuDNN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: Leaky ReLU's slope for negative inputs, and the gain that keeps unit variance.
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def fir_filter(taps: Sequence[float]) -> Tensor:
    """A 2-D low-pass filter from 1-D taps: their outer product, normalised to sum to 1.

    >>> fir_filter([1, 3, 3, 1]).shape, float(fir_filter([1, 3, 3, 1]).sum())
    (torch.Size([4, 4]), 1.0)
    """
    t = torch.as_tensor(list(taps), dtype=torch.float32)
    # The outer product and the division in place: the same numbers as torch.outer(t, t) / sum, and on the meta
    # device (a network checked against a file before it is built) no decomposition machinery is loaded.
    f = t.unsqueeze(1).repeat(1, t.numel()).mul_(t)
    return f.div_(f.sum())


def upfirdn2d(
    x: Tensor,
    f: Tensor | None,
    *,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> Tensor:
    """Up-sample by inserting zeros, pad (negative: crop), convolve with ``f``, keep every ``down``-th pixel.

    Args:
        x: (B, C, H, W).
        f: (fh, fw) filter, or (k,) taps of a separable one (applied along x, then along y), or None (no filter);
            applied as a true convolution (flipped), per channel.
        pad: (x before, x after, y before, y after), in up-sampled pixels.
        gain: the filter is scaled by it (``up**2`` keeps the mean after zero insertion); a separable filter by its
            square root in each direction.
    """
    b, c, h, w = x.shape
    if up > 1 and f is not None and f.ndim == 1:
        k = (f * gain**0.5).to(x.dtype)
        x = _upsample_1d(_upsample_1d(x, k, up, pad[0], pad[1], dim=3), k, up, pad[2], pad[3], dim=2)
        return x[:, :, ::down, ::down] if down > 1 else x
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    x0, x1, y0, y1 = pad
    x = F.pad(x, (max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)))
    x = x[:, :, max(-y0, 0) : x.shape[2] - max(-y1, 0), max(-x0, 0) : x.shape[3] - max(-x1, 0)]
    if f is None:
        x = x * gain if gain != 1 else x
        return x[:, :, ::down, ::down] if down > 1 else x
    # Only the kept pixels are computed (a strided convolution): the same sums as filtering everything, then dropping.
    if f.ndim == 1:
        k = (f * gain**0.5).to(x.dtype).flip(0)
        x = F.conv2d(x, k.reshape(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c, stride=(1, down))
        return F.conv2d(x, k.reshape(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c, stride=(down, 1))
    k = (f * gain).to(x.dtype).flip((0, 1))
    return F.conv2d(x, k[None, None].repeat(c, 1, 1, 1), groups=c, stride=down)


def _upsample_1d(x: Tensor, k: Tensor, up: int, before: int, after: int, *, dim: int) -> Tensor:
    """Zero insertion, padding and the (unflipped) taps ``k`` along ``dim`` (3: x, 2: y), as one strided transposed
    convolution: the products with the inserted zeros are never computed (``up`` times fewer)."""
    c, taps = x.shape[1], k.numel()
    shape, stride = ((1, 1, 1, taps), (1, up)) if dim == 3 else ((1, 1, taps, 1), (up, 1))
    out = F.conv_transpose2d(x, k.reshape(shape).repeat(c, 1, 1, 1), stride=stride, groups=c)
    # The transposed convolution's sample j is the padded, zero-filled, filtered signal's sample j - taps + 1 + before.
    length = x.shape[dim] * up + before + after - taps + 1
    start = taps - 1 - before
    crop = (-start, length - (out.shape[dim] - start))
    return F.pad(out, (*crop, 0, 0) if dim == 3 else (0, 0, *crop))


def upsample2d(x: Tensor, f: Tensor, factor: int = 2) -> Tensor:
    """Double (``factor``) the resolution: zero insertion, then the low-pass filter, centred."""
    fw = f.shape[-1]
    p0 = (fw + factor - 1) // 2
    p1 = (fw - factor) // 2
    return upfirdn2d(x, f, up=factor, pad=(p0, p1, p0, p1), gain=factor**2)


def bias_act(x: Tensor, bias: Tensor | None, *, act: str = "linear", gain: float = 1.0, clamp: float | None = None) -> Tensor:
    """``clamp(gain · act(x + bias))``, the bias along dimension 1; ``act`` is ``linear`` or ``lrelu``."""
    if bias is not None:
        x = x + bias.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    elif act != "linear":
        raise ValueError(f"unsupported activation {act!r}")
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _conv(x: Tensor, w: Tensor, *, up: int, padding: int, f: Tensor | None, groups: int) -> Tensor:
    """Convolution, or (``up`` > 1) strided transposed convolution then the low-pass filter ``f``."""
    if up == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    o, i, kh, kw = w.shape  # o = groups · out, i = in per group
    # Transposed convolution wants (in, out per group, k, k) per group.
    wt = w.reshape(groups, o // groups, i, kh, kw).transpose(1, 2).reshape(groups * i, o // groups, kh, kw)
    out = F.conv_transpose2d(x, wt, stride=up, groups=groups)
    fw = f.shape[-1]
    p0 = (fw + up - 1) // 2 + padding - (kw - 1)
    p1 = (fw - up) // 2 + padding - (kw - up)
    return upfirdn2d(out, f, pad=(p0, p1, p0, p1), gain=up**2)


def modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    *,
    demodulate: bool = True,
    up: int = 1,
    padding: int = 0,
    f: Tensor | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """Convolution whose input channels are scaled per sample by ``styles`` (and output renormalised).

    In float32 (or for one image), one grouped convolution with per-sample
    weights; in float16 the activations are scaled before and after a shared
    convolution instead, which the official code does there for range. With
    ``up=2`` it is a strided transposed convolution followed by the low-pass
    filter ``f``, the same as up-sampling with ``f`` and then convolving.

    Args:
        x: (B, I, H, W).
        weight: (O, I, k, k), the stored weight (without the 1/sqrt(fan-in) gain, which demodulation removes;
            callers that do not demodulate scale ``styles`` instead).
        styles: (B, I).
        demodulate: divide each output channel by its weight norm (so it has unit variance).
        noise: added to the output, (B or 1, 1, H', W').
    """
    b, i, h, w = x.shape
    o, _, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        # Scale both factors to at most 1 first, so float16 cannot overflow (demodulation undoes it).
        weight = weight * (1 / math.sqrt(i * kh * kw) / weight.norm(float("inf"), dim=(1, 2, 3), keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    fused = x.dtype == torch.float32 or b == 1
    wt = weight[None] * styles.reshape(b, 1, i, 1, 1)  # (B, O, I, k, k)
    dcoefs = (wt.square().sum(dim=(2, 3, 4)) + 1e-8).rsqrt() if demodulate else None  # (B, O)
    if not fused:
        x = x * styles.to(x.dtype).reshape(b, -1, 1, 1)
        x = _conv(x, weight.to(x.dtype), up=up, padding=padding, f=f, groups=1)
        if dcoefs is not None and noise is not None:
            return torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(b, -1, 1, 1))
        if dcoefs is not None:
            return x * dcoefs.to(x.dtype).reshape(b, -1, 1, 1)
        return x + noise.to(x.dtype) if noise is not None else x
    if dcoefs is not None:
        wt = wt * dcoefs.reshape(b, o, 1, 1, 1)
    out = _conv(x.reshape(1, b * i, h, w), wt.reshape(b * o, i, kh, kw).to(x.dtype), up=up, padding=padding, f=f, groups=b)
    out = out.reshape(b, o, *out.shape[2:])
    if noise is not None:
        out = out + noise.to(out.dtype)
    return out


def conv2d_up(x: Tensor, weight: Tensor, f: Tensor, up: int = 2) -> Tensor:
    """A plain convolution (same weight for every sample) with up-sampling, for the residual skip path."""
    kh, kw = weight.shape[-2:]
    if kh == 1 and kw == 1:
        # 1×1: convolve first, then up-sample (cheaper, the same result).
        return upsample2d(F.conv2d(x, weight), f, up)
    return _conv(x, weight, up=up, padding=kw // 2, f=f, groups=1)


def filtered_lrelu(
    x: Tensor,
    up_filter: Tensor | None,
    down_filter: Tensor | None,
    bias: Tensor,
    *,
    up: int,
    down: int,
    pad: tuple[int, int, int, int],
    gain: float,
    slope: float,
    clamp: float | None,
) -> Tensor:
    """StyleGAN3's alias-free nonlinearity: bias, up-sample, leaky ReLU at the higher rate, low-pass, down-sample.

    Karras et al., "Alias-Free Generative Adversarial Networks" (NeurIPS 2021), sec. 3.2: a pointwise
    nonlinearity creates frequencies the signal's sampling rate cannot hold, so it is applied at ``up`` times
    the rate, between the up-sampling filter (zero insertion, ``pad``, ``up_filter`` with gain ``up**2``) and
    the low-pass that removes what it created before keeping every ``down``-th pixel. ``slope=1`` with
    ``gain=1`` is the linear ToRGB layer (then only ``clamp`` acts).

    Args:
        x: (B, C, H, W).
        up_filter, down_filter: (k,) separable taps, (k, k) radial filter, or None (no filtering).
        bias: (C,), added first.
        pad: (x before, x after, y before, y after), in up-sampled pixels.
        clamp: the result of the activation is clamped to [-clamp, clamp]; None: no clamping.

    Returns:
        (B, C, H', W') with ``H' = (H·up + pad_y - (len(up_filter) - 1) - (len(down_filter) - 1) + down - 1) // down``.
    """
    x = x + bias.to(x.dtype).reshape(1, -1, 1, 1)
    x = upfirdn2d(x, up_filter, up=up, pad=pad, gain=up**2)
    if slope != 1:
        x = F.leaky_relu(x, slope)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d(x, down_filter, down=down)


def modulated_conv2d_prenormalized(
    x: Tensor, weight: Tensor, styles: Tensor, *, demodulate: bool, padding: int, input_gain: Tensor | None = None
) -> Tensor:
    """StyleGAN3's modulated convolution: per-sample weights as one grouped convolution.

    With ``demodulate``, the weight (per output channel) and the styles (over the whole batch) are first
    scaled to unit root mean square, which demodulation then undoes, so that float16 cannot overflow;
    ``input_gain`` (a scalar: 1/√ of the input's tracked mean square, StyleGAN3's ``magnitude_ema``) scales
    the input channels.

    Args:
        x: (B, I, H, W).
        weight: (O, I, k, k).
        styles: (B, I).
        padding: zeros on each side (StyleGAN3 pads by k - 1: a "full" convolution; its filters crop).

    Returns:
        (B, O, H + 2·padding - k + 1, W + 2·padding - k + 1).
    """
    b, i, h, w = x.shape
    o, _, kh, kw = weight.shape
    if demodulate:
        weight = weight * weight.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    wt = weight.unsqueeze(0) * styles.reshape(b, 1, i, 1, 1)  # (B, O, I, k, k)
    if demodulate:
        wt = wt * (wt.square().sum(dim=(2, 3, 4)) + 1e-8).rsqrt().reshape(b, o, 1, 1, 1)
    if input_gain is not None:
        wt = wt * input_gain.expand(b, i).reshape(b, 1, i, 1, 1)
    out = F.conv2d(x.reshape(1, b * i, h, w), wt.reshape(b * o, i, kh, kw).to(x.dtype), padding=padding, groups=b)
    return out.reshape(b, o, *out.shape[2:])
