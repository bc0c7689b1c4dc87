"""The StyleGAN3 generator (Karras et al., "Alias-Free Generative Adversarial Networks", NeurIPS 2021).

Plain ``torch.nn`` modules whose parameter and buffer names are those of
NVIDIA's ``training/networks_stylegan3.py`` (``synthesis.input.freqs``,
``synthesis.L3_52_512.down_filter``, ``mapping.w_avg``...), so an official
network's state loads as is. The mapping network is StyleGAN2's
(:class:`~.network.Mapping`, two layers in the published models).

The synthesis network treats the image as a continuous signal: a
:class:`FourierInput` samples learned Fourier features on a grid (``transform``,
a buffer, moves that grid: translation and rotation of the output, as
NVIDIA's ``gen_images.py --translate --rotate``), then ``num_layers``
:class:`AliasFreeLayer` s each apply a modulated convolution and the filtered
leaky ReLU (:func:`~.ops.filtered_lrelu`), whose cutoff frequencies, sampling
rates and sizes follow a geometric progression from 2 cycles per image up to
the output's Nyquist rate (:func:`synthesis_plan`, the paper's sec. 3.2 and
appendix F); the last layer maps to RGB. Config T uses 3×3 convolutions and
separable Kaiser filters; config R 1×1 convolutions, radially symmetric
down-sampling filters and twice the feature maps.

Every filter, the mean latent and each layer's tracked input magnitude
(``magnitude_ema``) are loaded from the checkpoint; the filters are designed
here (:func:`lowpass_filter`) only for a network built from a configuration.

>>> G = StyleGAN3(StyleGAN3Config.preset("T", z_dim=8, w_dim=8, resolution=16, channel_base=64, channel_max=8,
...                                      num_layers=4)).eval()
>>> G(torch.randn(2, 8)).shape, G.num_ws, G.synthesis.layer_names[-1]
(torch.Size([2, 3, 16, 16]), 6, 'L4_16_3')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from promptgen_plugin_stylegan2.network import (
    MAX_MAPPING_LAYERS,
    MAX_RESOLUTION,
    MAX_WIDTH,
    Dense,
    MappedGenerator,
    Mapping,
    MappingConfig,
    NoiseMode,
)
from promptgen_plugin_stylegan2.ops import LRELU_GAIN, LRELU_SLOPE, filtered_lrelu, modulated_conv2d_prenormalized

#: Bounds on what a file may ask for, far above the published models (which use the defaults of
#: :class:`StyleGAN3Config`: 14 layers, a margin of 10 pixels, 6-tap filters, leaky ReLU at twice the rate).
MAX_SYNTHESIS_LAYERS = 64
MAX_MARGIN = 1024
MAX_FILTER_SIZE = 64
MAX_LRELU_UPSAMPLING = 16
MAX_KERNEL = 15

Kind = Literal["T", "R"]


@dataclass(frozen=True)
class InputPlan:
    """The Fourier-feature input: ``channels`` features on a ``size``² grid sampled at ``sampling_rate``."""

    channels: int
    size: int
    sampling_rate: float
    bandwidth: float


@dataclass(frozen=True)
class LayerPlan:
    """One synthesis layer's geometry; the field names are NVIDIA's stored attribute names.

    Sizes are in pixels, sampling rates in pixels per unit (the image is one unit wide before the margin),
    cutoffs and half-widths in cycles per unit. ``padding`` is (x before, x after, y before, y after), in
    pixels at ``tmp_sampling_rate``.
    """

    name: str
    is_torgb: bool
    is_critically_sampled: bool
    use_fp16: bool
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    tmp_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    up_factor: int
    up_taps: int
    down_factor: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]


class StyleGAN3Config(MappingConfig):
    """Everything needed to rebuild a StyleGAN3 generator before its weights are loaded.

    The names and defaults are those of NVIDIA's ``SynthesisNetwork`` and ``SynthesisLayer`` constructors.
    Use :meth:`preset` for the published configurations T and R.
    """

    mapping_layers: int = Field(default=2, ge=1, le=MAX_MAPPING_LAYERS, strict=True)
    resolution: int = Field(default=1024, ge=4, le=MAX_RESOLUTION, strict=True, description="a power of two")
    channel_base: int = Field(default=32768, ge=1, le=MAX_WIDTH * MAX_RESOLUTION, strict=True)
    channel_max: int = Field(default=512, ge=1, le=MAX_WIDTH, strict=True)
    num_layers: int = Field(
        default=14, ge=1, le=MAX_SYNTHESIS_LAYERS, strict=True, description="excluding input and ToRGB"
    )
    num_critical: int = Field(
        default=2, ge=0, le=MAX_SYNTHESIS_LAYERS, strict=True, description="critically sampled layers at the end"
    )
    first_cutoff: float = Field(
        default=2.0, gt=0, allow_inf_nan=False, description="f_c of the first layer, cycles per image"
    )
    first_stopband: float = Field(default=2**2.1, gt=0, allow_inf_nan=False)
    last_stopband_rel: float = Field(
        default=2**0.3, gt=0, allow_inf_nan=False, description="the last stopband, relative to its cutoff"
    )
    margin_size: int = Field(
        default=10, ge=0, le=MAX_MARGIN, strict=True, description="extra pixels on each side of the feature maps"
    )
    output_scale: float = Field(default=0.25, allow_inf_nan=False)
    num_fp16_res: int = Field(
        default=4, ge=0, le=64, strict=True, description="layers sampled above resolution / 2^N may run in float16"
    )
    conv_kernel: int = Field(default=3, ge=1, le=MAX_KERNEL, strict=True)
    filter_size: int = Field(
        default=6, ge=1, le=MAX_FILTER_SIZE, strict=True, description="filter taps per lower-rate pixel"
    )
    lrelu_upsampling: int = Field(default=2, ge=1, le=MAX_LRELU_UPSAMPLING, strict=True)
    use_radial_filters: bool = Field(default=False, strict=True)
    conv_clamp: float | None = Field(default=256.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> StyleGAN3Config:
        r = self.resolution
        if r & (r - 1):
            raise ValueError(f"resolution must be a power of two, got {r}")
        if self.num_critical >= self.num_layers:
            raise ValueError(f"num_critical ({self.num_critical}) must be less than num_layers ({self.num_layers})")
        synthesis_plan(self)  # raises ValueError for a geometry no network has
        return self

    @classmethod
    def preset(cls, kind: Kind, *, channel_base: int = 32768, channel_max: int = 512, **config: Any) -> StyleGAN3Config:
        """Config T or R as NVIDIA's ``train.py --cfg=stylegan3-t/-r`` builds it from ``--cbase`` and ``--cmax``
        (R: 1×1 convolutions, radial filters, twice the feature maps)."""
        if kind == "R":
            return cls(
                conv_kernel=1,
                use_radial_filters=True,
                channel_base=2 * channel_base,
                channel_max=2 * channel_max,
                **config,
            )
        return cls(channel_base=channel_base, channel_max=channel_max, **config)

    @property
    def kind(self) -> Kind | None:
        """ "T" or "R" for the published configurations, None for another combination of kernel and filters."""
        if self.conv_kernel == 3 and not self.use_radial_filters:
            return "T"
        if self.conv_kernel == 1 and self.use_radial_filters:
            return "R"
        return None

    @property
    def num_ws(self) -> int:
        """One w for the input, one per layer, one for ToRGB."""
        return self.num_layers + 2


def synthesis_plan(cfg: StyleGAN3Config) -> tuple[InputPlan, tuple[LayerPlan, ...]]:
    """The input's and every layer's geometry, in float64 as NVIDIA computes it.

    Cutoffs f_c and minimum stopbands f_t grow geometrically from the first layer's to the output's
    (reached ``num_critical`` layers before the end); each layer's sampling rate is the smallest power of two
    at least twice its stopband (at most the resolution), its transition band half-width what is left between
    the cutoff and max(f_t, rate / 2), and its feature maps ``channel_base / 2 / f_c`` (at most
    ``channel_max``). The up- and down-sampling factors take the signal to ``lrelu_upsampling`` times the
    higher of the two rates around the nonlinearity, and the padding centres the samples (appendix C.3).

    Raises:
        ValueError: the configuration describes no network (a rate below one pixel, factors that are not
            whole numbers, a layer without pixels or channels).
    """
    n, res = cfg.num_layers, cfg.resolution
    with np.errstate(all="ignore"):
        last_cutoff = res / 2
        last_stopband = last_cutoff * cfg.last_stopband_rel
        exponents = np.minimum(np.arange(n + 1) / (n - cfg.num_critical), 1)
        cutoffs = cfg.first_cutoff * (last_cutoff / cfg.first_cutoff) ** exponents
        stopbands = cfg.first_stopband * (last_stopband / cfg.first_stopband) ** exponents
        rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))
        half_widths = np.maximum(stopbands, rates / 2) - cutoffs
        sizes = rates + cfg.margin_size * 2
        sizes[-2:] = res
        channels = np.rint(np.minimum((cfg.channel_base / 2) / cutoffs, cfg.channel_max))
    channels[-1] = cfg.img_channels
    numbers = np.concatenate([cutoffs, stopbands, rates, half_widths, sizes, channels])
    if not np.isfinite(numbers).all():
        raise ValueError("the cutoffs and stopbands it describes are not finite numbers")
    if rates.min() < 1 or channels.min() < 1 or half_widths.min() <= 0:
        raise ValueError(
            "it describes a layer sampled below one pixel per unit, without channels, or without a transition band"
        )
    inp = InputPlan(int(channels[0]), int(sizes[0]), float(rates[0]), float(cutoffs[0]))
    layers = []
    for i in range(n + 1):
        prev = max(i - 1, 0)
        torgb = i == n
        in_rate, out_rate = int(rates[prev]), int(rates[i])
        tmp_rate = max(in_rate, out_rate) * (1 if torgb else cfg.lrelu_upsampling)
        kernel = 1 if torgb else cfg.conv_kernel
        up, down = tmp_rate // in_rate, tmp_rate // out_rate
        if up * in_rate != tmp_rate or down * out_rate != tmp_rate:
            raise ValueError(
                f"layer {i}: sampling rates {in_rate} -> {tmp_rate} -> {out_rate} are not whole-number factors apart"
            )
        up_taps = cfg.filter_size * up if up > 1 and not torgb else 1
        down_taps = cfg.filter_size * down if down > 1 and not torgb else 1
        in_size, out_size = int(sizes[prev]), int(sizes[i])
        pad_total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
        pad_lo = (pad_total + up) // 2  # the symmetric interpretation of sample positions
        pad_hi = pad_total - pad_lo
        upsampled = (in_size + kernel - 1) * up + pad_total
        if upsampled < up_taps or upsampled - up_taps + 1 < down_taps:
            raise ValueError(f"layer {i}: its {in_size}-pixel input is smaller than its filters")
        layers.append(
            LayerPlan(
                name=f"L{i}_{out_size}_{int(channels[i])}",
                is_torgb=torgb,
                is_critically_sampled=i >= n - cfg.num_critical,
                use_fp16=bool(rates[i] * 2**cfg.num_fp16_res > res),
                in_channels=int(channels[prev]),
                out_channels=int(channels[i]),
                in_size=in_size,
                out_size=out_size,
                in_sampling_rate=in_rate,
                out_sampling_rate=out_rate,
                tmp_sampling_rate=tmp_rate,
                in_cutoff=float(cutoffs[prev]),
                out_cutoff=float(cutoffs[i]),
                in_half_width=float(half_widths[prev]),
                out_half_width=float(half_widths[i]),
                conv_kernel=kernel,
                up_factor=up,
                up_taps=up_taps,
                down_factor=down,
                down_taps=down_taps,
                down_radial=cfg.use_radial_filters and i < n - cfg.num_critical,
                padding=(pad_lo, pad_hi, pad_lo, pad_hi),
            )
        )
    return inp, tuple(layers)


def _kaiser_beta(numtaps: int, width: float) -> float:
    """Kaiser's window parameter for ``numtaps`` taps and a transition band ``width`` (a fraction of Nyquist)."""
    atten = 2.285 * (numtaps - 1) * np.pi * width + 7.95  # the attenuation such a filter reaches, in dB
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> Tensor | None:
    """A Kaiser-windowed low-pass filter, float32, summing to 1; None for one tap (no filter).

    Separable (``radial=False``): the ``numtaps`` taps of a windowed sinc with ``cutoff`` (the same as
    ``scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)``). Radial: a (numtaps, numtaps) windowed
    jinc, the 2-D filter whose response is a disc of radius ``cutoff``.
    """
    if numtaps == 1:
        return None
    nyquist = fs / 2
    window = np.kaiser(numtaps, _kaiser_beta(numtaps, width / nyquist))
    centred = np.arange(numtaps) - (numtaps - 1) / 2
    if not radial:
        c = cutoff / nyquist
        taps = c * np.sinc(c * centred) * window
        return torch.as_tensor(taps / taps.sum(), dtype=torch.float32)
    x = centred / fs
    r = np.hypot(*np.meshgrid(x, x))
    j1 = torch.special.bessel_j1(torch.from_numpy(2 * np.pi * cutoff * r)).numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(r > 0, j1 / (np.pi * np.where(r > 0, r, 1)), cutoff)  # the limit at the centre is the cutoff
    f = f * np.outer(window, window)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


def input_transform(translate: tuple[float, float] = (0.0, 0.0), rotate: float = 0.0) -> Tensor:
    """The (3, 3) ``synthesis.input.transform`` that translates the image by ``translate`` (fractions of its
    width and height) and rotates it by ``rotate`` degrees, as NVIDIA's ``gen_images.py`` sets it (the network
    takes the inverse of the image's motion, which it applies to its sampling grid)."""
    a = math.radians(rotate)
    m = np.array([[math.cos(a), math.sin(a), translate[0]], [-math.sin(a), math.cos(a), translate[1]], [0.0, 0.0, 1.0]])
    return torch.from_numpy(np.linalg.inv(m)).to(torch.float32)


class FourierInput(nn.Module):
    """w -> (B, channels, size, size): Fourier features on a grid, rotated and shifted by w, then mixed."""

    def __init__(self, w_dim: int, plan: InputPlan) -> None:
        super().__init__()
        self.channels, self.size = plan.channels, plan.size
        self.sampling_rate, self.bandwidth = plan.sampling_rate, plan.bandwidth
        # Frequencies drawn uniformly from the disc of radius ``bandwidth``; random phases.
        freqs = torch.randn(plan.channels, 2)
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * plan.bandwidth
        self.weight = nn.Parameter(torch.randn(plan.channels, plan.channels))
        self.affine = Dense(w_dim, 4)  # (cos, sin) of the rotation and (x, y) of the translation; starts at none
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3))  # the user's inverse transform of the image
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand(plan.channels) - 0.5)

    def forward(self, w: Tensor) -> Tensor:
        b = w.shape[0]
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)  # a unit (cos, sin): a pure rotation
        zero, one = torch.zeros_like(t[:, 0]), torch.ones_like(t[:, 0])
        # Inverse rotation, then inverse translation of the image, then the user's transform.
        rotation = torch.stack([t[:, 0], -t[:, 1], zero, t[:, 1], t[:, 0], zero, zero, zero, one], 1).reshape(b, 3, 3)
        translation = torch.stack([one, zero, -t[:, 2], zero, one, -t[:, 3], zero, zero, one], 1).reshape(b, 3, 3)
        m = rotation @ translation @ self.transform.unsqueeze(0)
        freqs = self.freqs.unsqueeze(0)
        phases = self.phases.unsqueeze(0) + (freqs @ m[:, :2, 2:]).squeeze(2)
        freqs = freqs @ m[:, :2, :2]  # (B, C, 2)
        # A user transform can push frequencies past what the first layer samples: fade them out.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        scale = 0.5 * self.size / self.sampling_rate
        theta = torch.tensor([[scale, 0.0, 0.0], [0.0, scale, 0.0]], device=w.device)
        grid = F.affine_grid(theta.unsqueeze(0), [1, 1, self.size, self.size], align_corners=False)  # (1, H, W, 2)
        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # (B, H, W, C)
        x = torch.sin((x + phases.unsqueeze(1).unsqueeze(2)) * (2 * math.pi))
        x = x * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


class AliasFreeLayer(nn.Module):
    """Modulated convolution, then the filtered leaky ReLU (or, for ToRGB, a modulated 1×1 convolution and clamp)."""

    def __init__(self, plan: LayerPlan, w_dim: int, conv_clamp: float | None, *, design_filters: bool = True) -> None:
        super().__init__()
        self.plan = plan
        self.is_torgb, self.use_fp16, self.conv_kernel = plan.is_torgb, plan.use_fp16, plan.conv_kernel
        self.conv_clamp = conv_clamp
        self.affine = Dense(w_dim, plan.in_channels, bias_init=1.0)
        k = plan.conv_kernel
        self.weight = nn.Parameter(torch.randn(plan.out_channels, plan.in_channels, k, k))
        self.bias = nn.Parameter(torch.zeros(plan.out_channels))
        self.register_buffer("magnitude_ema", torch.ones(()))
        self.style_gain = 1 / math.sqrt(plan.in_channels * k * k) if plan.is_torgb else 1.0
        if design_filters:
            up = lowpass_filter(plan.up_taps, plan.in_cutoff, plan.in_half_width * 2, plan.tmp_sampling_rate)
            down = lowpass_filter(
                plan.down_taps, plan.out_cutoff, plan.out_half_width * 2, plan.tmp_sampling_rate, plan.down_radial
            )
        else:  # loaded from a checkpoint next: only the shapes matter
            up = torch.empty(plan.up_taps) if plan.up_taps > 1 else None
            down_shape = (plan.down_taps, plan.down_taps) if plan.down_radial else (plan.down_taps,)
            down = torch.empty(down_shape) if plan.down_taps > 1 else None
        self.register_buffer("up_filter", up)
        self.register_buffer("down_filter", down)

    def forward(self, x: Tensor, w: Tensor, half: bool = False) -> Tensor:
        """x: (B, in_channels, in_size, in_size) -> (B, out_channels, out_size, out_size); ``half``: float16 if marked
        (``use_fp16``)."""
        dtype = torch.float16 if half and self.use_fp16 else torch.float32
        styles = self.affine(w)
        if self.style_gain != 1:
            styles = styles * self.style_gain
        x = modulated_conv2d_prenormalized(
            x.to(dtype),
            self.weight,
            styles,
            demodulate=not self.is_torgb,
            padding=self.conv_kernel - 1,
            input_gain=self.magnitude_ema.rsqrt(),
        )
        p = self.plan
        return filtered_lrelu(
            x,
            self.up_filter,
            self.down_filter,
            self.bias,
            up=p.up_factor,
            down=p.down_factor,
            pad=p.padding,
            gain=1.0 if self.is_torgb else LRELU_GAIN,
            slope=1.0 if self.is_torgb else LRELU_SLOPE,
            clamp=self.conv_clamp,
        )


class AliasFreeSynthesis(nn.Module):
    """ws (B, num_ws, w_dim) -> image (B, img_channels, resolution, resolution), roughly in [-1, 1]."""

    def __init__(self, cfg: StyleGAN3Config, *, design_filters: bool = True) -> None:
        super().__init__()
        inp, layers = synthesis_plan(cfg)
        self.input = FourierInput(cfg.w_dim, inp)
        self.layer_names = [p.name for p in layers]
        for p in layers:
            setattr(self, p.name, AliasFreeLayer(p, cfg.w_dim, cfg.conv_clamp, design_filters=design_filters))
        self.num_ws = cfg.num_ws
        self.output_scale = cfg.output_scale
        #: StyleGAN3 has no per-pixel noise inputs (StyleGAN2's :attr:`~.network.Synthesis.noise_shapes`).
        self.noise_shapes: list[int] = []

    def forward(
        self, ws: Tensor, noise_mode: NoiseMode = "const", noise: list[Tensor | None] | None = None, half: bool = False
    ) -> Tensor:
        """``noise_mode`` and ``noise`` are accepted for StyleGAN2's signature and unused (StyleGAN3 has no noise).

        ``half``: run the layers the network marks for float16 in float16, as NVIDIA's code does on GPUs.
        """
        w = ws.to(torch.float32).unbind(dim=1)
        x = self.input(w[0])
        for name, wi in zip(self.layer_names, w[1:]):
            x = getattr(self, name)(x, wi, half)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)


class StyleGAN3(MappedGenerator):
    """The generator: ``G(z, c) -> image`` (B, img_channels, resolution, resolution), roughly in [-1, 1].

    Args:
        cfg: the architecture (see :class:`StyleGAN3Config`).
        design_filters: design the up- and down-sampling filters (False: left empty, for a checkpoint to fill).
    """

    def __init__(self, cfg: StyleGAN3Config, *, design_filters: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.synthesis = AliasFreeSynthesis(cfg, design_filters=design_filters)
        self.num_ws = cfg.num_ws
        self.mapping = Mapping(cfg, self.num_ws)

    @torch.no_grad()
    def set_transform(self, translate: tuple[float, float] = (0.0, 0.0), rotate: float = 0.0) -> None:
        """Translate (fractions of the image) and rotate (degrees) every image this network makes."""
        self.synthesis.input.transform.copy_(input_transform(translate, rotate))
