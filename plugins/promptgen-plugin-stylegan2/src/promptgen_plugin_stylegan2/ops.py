"""The few tensor operations StyleGAN2 is made of, in plain PyTorch.

Written from the definitions in Karras et al., "Analyzing and Improving the
Image Quality of StyleGAN" (CVPR 2020) and checked against NVIDIA's reference
implementation (``benchmarks/stylegan2_reference.py``): FIR up-sampling,
modulated and demodulated convolution, bias + activation + gain + clamp. No
compiled extensions: they run on any device PyTorch supports, and on CUDA the
grouped convolutions go to cuDNN.
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
    f = torch.outer(t, t)
    return f / f.sum()


def upfirdn2d(x: Tensor, f: Tensor, *, up: int = 1, down: int = 1, pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> Tensor:
    """Up-sample by inserting zeros, pad (negative: crop), convolve with ``f``, keep every ``down``-th pixel.

    Args:
        x: (B, C, H, W).
        f: (fh, fw) filter; applied as a true convolution (flipped), per channel.
        pad: (x before, x after, y before, y after), in up-sampled pixels.
        gain: the filter is scaled by it (``up**2`` keeps the mean after zero insertion).
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    x0, x1, y0, y1 = pad
    x = F.pad(x, (max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)))
    x = x[:, :, max(-y0, 0) : x.shape[2] - max(-y1, 0), max(-x0, 0) : x.shape[3] - max(-x1, 0)]
    k = (f * gain).to(x.dtype).flip((0, 1))
    k = k[None, None].repeat(c, 1, 1, 1)
    x = F.conv2d(x, k, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


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

    One grouped convolution for the whole batch. With ``up=2`` it is a strided
    transposed convolution followed by the low-pass filter ``f``, which is the
    same as up-sampling with ``f`` and then convolving.

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
    wt = weight[None] * styles.reshape(b, 1, i, 1, 1)  # (B, O, I, k, k)
    if demodulate:
        wt = wt * (wt.square().sum(dim=(2, 3, 4)) + 1e-8).rsqrt().reshape(b, o, 1, 1, 1)
    xg = x.reshape(1, b * i, h, w)
    if up == 1:
        out = F.conv2d(xg, wt.reshape(b * o, i, kh, kw).to(x.dtype), padding=padding, groups=b)
    else:
        # Transposed convolution: weights as (B·I, O, k, k), then the filter over the result.
        wtt = wt.transpose(1, 2).reshape(b * i, o, kh, kw).to(x.dtype)
        out = F.conv_transpose2d(xg, wtt, stride=up, groups=b)
        fw = f.shape[-1]
        p0 = (fw + up - 1) // 2 + padding - (kw - 1)
        p1 = (fw - up) // 2 + padding - (kw - up)
        out = upfirdn2d(out, f, pad=(p0, p1, p0, p1), gain=up**2)
    out = out.reshape(b, o, *out.shape[2:])
    if noise is not None:
        out = out + noise.to(out.dtype)
    return out


def conv2d_up(x: Tensor, weight: Tensor, f: Tensor, up: int = 2) -> Tensor:
    """A plain convolution (same weight for every sample) with up-sampling, for the residual skip path."""
    _o, _i, kh, kw = weight.shape
    if kh == 1 and kw == 1:
        # 1×1: convolve first, then up-sample (cheaper, the same result).
        x = F.conv2d(x, weight)
        return upsample2d(x, f, up)
    fw = f.shape[-1]
    out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=up)
    p0 = (fw + up - 1) // 2 + kw // 2 - (kw - 1)
    p1 = (fw - up) // 2 + kw // 2 - (kw - up)
    return upfirdn2d(out, f, pad=(p0, p1, p0, p1), gain=up**2)
