"""The StyleGAN2 generator (Karras et al., CVPR 2020) as plain ``torch.nn`` modules.

Parameter and buffer names follow NVIDIA's stylegan2-ada-pytorch / stylegan3
releases (``mapping.fc0.weight``, ``synthesis.b64.conv0.affine.bias``...), so
their state loads without renaming; the rosinality port's names are mapped onto
these in :mod:`.checkpoints`. Every constant that checkpoints store (gains,
filters, clamps, the mean latent) is loaded from the file, not re-derived.

The architecture: a mapping network (2nd-moment normalisation of z, then
``mapping_layers`` equalised-learning-rate dense layers with leaky ReLU) gives
w; a learned 4×4 constant is refined by one block per resolution up to the
output, each with two modulated/demodulated 3×3 convolutions (the first
up-sampling by 2 with the [1, 3, 3, 1] filter) with per-pixel noise, and an
RGB output that is summed over resolutions (``skip``), taken only at the end
(``orig``), or with residual blocks (``resnet``).

>>> cfg = StyleGAN2Config(z_dim=8, w_dim=8, resolution=16, channels={4: 8, 8: 8, 16: 4})
>>> G = StyleGAN2(cfg).eval()
>>> G(torch.randn(2, 8)).shape, G.num_ws
(torch.Size([2, 3, 16, 16]), 6)
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from promptgen.plugin import MAX_ELEMENTS
from promptgen_plugin_stylegan2.ops import LRELU_GAIN, bias_act, conv2d_up, fir_filter, modulated_conv2d, upsample2d

NoiseMode = Literal["const", "random", "none"]

#: The most dense layers a mapping network may have (published StyleGAN2 models: 8; stylegan3 and ADA's CIFAR-10: 2).
#: A file asking for more is refused before anything is built (1,000 layers take a second to build even on the meta device).
MAX_MAPPING_LAYERS = 64
#: The highest output resolution (published StyleGAN2 models: 1024); one block per power of two, so at most 13 blocks.
MAX_RESOLUTION = 16384
#: The widest a layer may be: no file can fill a dense layer wider than the weights promptgen builds at most.
MAX_WIDTH = MAX_ELEMENTS



class MappingConfig(BaseModel):
    """The mapping network's part of a generator's architecture (StyleGAN2 and StyleGAN3 share it)."""

    model_config = ConfigDict(extra="forbid")

    z_dim: int = Field(default=512, ge=1, le=MAX_WIDTH, strict=True)
    c_dim: int = Field(default=0, ge=0, le=MAX_WIDTH, strict=True)
    w_dim: int = Field(default=512, ge=1, le=MAX_WIDTH, strict=True)
    img_channels: int = Field(default=3, ge=1, le=MAX_WIDTH, strict=True)
    mapping_layers: int = Field(default=8, ge=1, le=MAX_MAPPING_LAYERS, strict=True)
    mapping_features: int | None = Field(default=None, ge=1, le=MAX_WIDTH, strict=True, description="width of the hidden mapping layers (None: w_dim)")
    embed_features: int | None = Field(default=None, ge=1, le=MAX_WIDTH, strict=True, description="label embedding width (None: w_dim)")
    mapping_lr: float = Field(default=0.01, gt=0, allow_inf_nan=False, description="learning-rate multiplier of the mapping layers")


class StyleGAN2Config(MappingConfig):
    """Everything needed to rebuild the network before its weights are loaded.

    ``channels`` maps each block's resolution (4, 8, ... ``resolution``) to its
    feature maps; by default ``min(channel_base // res, channel_max)`` as in
    the official configs (config F: base 32768, max 512).
    """

    resolution: int = Field(default=1024, ge=4, le=MAX_RESOLUTION, strict=True, description="a power of two")
    channel_base: int = Field(default=32768, ge=1, le=MAX_WIDTH * MAX_RESOLUTION, strict=True)
    channel_max: int = Field(default=512, ge=1, le=MAX_WIDTH, strict=True)
    channels: dict[int, int] | None = None
    architecture: Literal["skip", "orig", "resnet"] = "skip"
    conv_clamp: float | None = None
    fp16_resolutions: int = Field(default=0, ge=0, le=MAX_RESOLUTION, strict=True, description="the N highest resolutions may run in float16 (the official num_fp16_res)")
    use_noise: bool = True
    fir: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)

    @model_validator(mode="after")
    def _check(self) -> StyleGAN2Config:
        r = self.resolution
        if r < 4 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {r}")
        if self.channels is None:
            self.channels = {res: min(self.channel_base // res, self.channel_max) for res in self.block_resolutions}
        missing = [res for res in self.block_resolutions if res not in self.channels]
        if missing:
            raise ValueError(f"channels has no entry for resolutions {missing}")
        bad = {res: n for res, n in self.channels.items() if res in self.block_resolutions and not (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_WIDTH)}
        if bad:
            raise ValueError(f"channels must be whole numbers from 1 to {MAX_WIDTH:,}, got {bad}")
        return self

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.resolution)) + 1)]


class Dense(nn.Module):
    """Equalised-learning-rate dense layer: weight stored /lr, used × lr/sqrt(fan-in)."""

    def __init__(self, n_in: int, n_out: int, *, activation: str = "linear", lr: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(n_out, n_in).div_(lr))  # in place: cheap on the meta device too
        self.bias = nn.Parameter(torch.full((n_out,), float(bias_init)))
        self.weight_gain = lr / math.sqrt(n_in)
        self.bias_gain = lr

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype)
        if self.bias_gain != 1:
            b = b * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation, gain=LRELU_GAIN)


def normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class Mapping(nn.Module):
    """z (and a class label) -> w, broadcast to ``num_ws`` copies."""

    def __init__(self, cfg: MappingConfig, num_ws: int) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.c_dim, cfg.w_dim, num_ws
        self.num_layers = cfg.mapping_layers
        embed = (cfg.embed_features or cfg.w_dim) if cfg.c_dim else 0
        hidden = cfg.mapping_features or cfg.w_dim
        sizes = [cfg.z_dim + embed] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        if cfg.c_dim:
            self.embed = Dense(cfg.c_dim, embed)
        for i in range(cfg.mapping_layers):
            setattr(self, f"fc{i}", Dense(sizes[i], sizes[i + 1], activation="lrelu", lr=cfg.mapping_lr))
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def w(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        """One w per sample (B, w_dim): the mapping before its broadcast to ``num_ws`` copies and truncation."""
        parts = []
        if self.z_dim:
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim:
            if c is None:
                raise ValueError("this generator is class-conditional: pass a one-hot label c")
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x

    def forward(self, z: Tensor, c: Tensor | None = None, psi: float = 1.0, cutoff: int | None = None) -> Tensor:
        ws = self.w(z, c).unsqueeze(1).repeat(1, self.num_ws, 1)
        if psi != 1:
            if cutoff is None:
                ws = self.w_avg.lerp(ws, psi)
            else:
                ws = torch.cat([self.w_avg.lerp(ws[:, :cutoff], psi), ws[:, cutoff:]], dim=1)
        return ws


class SynthesisLayer(nn.Module):
    """Modulated 3×3 convolution (optionally up-sampling), noise, bias, leaky ReLU, clamp."""

    def __init__(self, n_in: int, n_out: int, cfg: StyleGAN2Config, resolution: int, up: int = 1) -> None:
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, cfg.use_noise
        self.conv_clamp = cfg.conv_clamp
        self.padding = 1
        self.register_buffer("resample_filter", fir_filter(cfg.fir))
        self.affine = Dense(cfg.w_dim, n_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(n_out, n_in, 3, 3))
        if cfg.use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: Tensor, w: Tensor, noise_mode: NoiseMode = "const", noise: Tensor | None = None, gain: float = 1.0) -> Tensor:
        styles = self.affine(w)
        n = None
        if self.use_noise and noise_mode != "none":
            if noise is None:
                noise = (
                    torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device)
                    if noise_mode == "random"
                    else self.noise_const
                )
            n = noise * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, up=self.up, padding=self.padding, f=self.resample_filter, noise=n)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act="lrelu", gain=LRELU_GAIN * gain, clamp=clamp)


class ToRGB(nn.Module):
    """Modulated 1×1 convolution to colours, without demodulation."""

    def __init__(self, n_in: int, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.conv_clamp = cfg.conv_clamp
        self.affine = Dense(cfg.w_dim, n_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(cfg.img_channels, n_in, 1, 1))
        self.bias = nn.Parameter(torch.zeros(cfg.img_channels))
        self.weight_gain = 1 / math.sqrt(n_in)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SkipConv(nn.Module):
    """The residual path of a ``resnet`` block: an up-sampling 1×1 convolution without bias."""

    def __init__(self, n_in: int, n_out: int, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.register_buffer("resample_filter", fir_filter(cfg.fir))
        self.weight = nn.Parameter(torch.randn(n_out, n_in, 1, 1))
        self.weight_gain = 1 / math.sqrt(n_in)

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        x = conv2d_up(x, (self.weight * self.weight_gain).to(x.dtype), self.resample_filter)
        return x * gain if gain != 1 else x


class Block(nn.Module):
    """One resolution: (constant or up-sampling conv0), conv1, and its RGB output."""

    def __init__(self, n_in: int, n_out: int, cfg: StyleGAN2Config, resolution: int) -> None:
        super().__init__()
        self.in_channels, self.resolution, self.architecture = n_in, resolution, cfg.architecture
        self.is_last = resolution == cfg.resolution
        log2 = int(math.log2(cfg.resolution))
        self.use_fp16 = cfg.fp16_resolutions > 0 and resolution >= max(2 ** (log2 + 1 - cfg.fp16_resolutions), 8)
        self.register_buffer("resample_filter", fir_filter(cfg.fir))
        self.num_conv = 0
        if n_in == 0:
            self.const = nn.Parameter(torch.randn(n_out, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(n_in, n_out, cfg, resolution, up=2)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(n_out, n_out, cfg, resolution)
        self.num_conv += 1
        self.num_torgb = 0
        if self.is_last or cfg.architecture == "skip":
            self.torgb = ToRGB(n_out, cfg)
            self.num_torgb = 1
        if n_in and cfg.architecture == "resnet":
            self.skip = SkipConv(n_in, n_out, cfg)

    def forward(
        self, x: Tensor | None, img: Tensor | None, ws: Tensor, noise_mode: NoiseMode, noise: list[Tensor | None], half: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        w = iter(ws.unbind(dim=1))
        nz = iter(noise)
        dtype = torch.float16 if half and self.use_fp16 else torch.float32
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
            x = self.conv1(x, next(w), noise_mode, next(nz))
        elif self.architecture == "resnet":
            x = x.to(dtype)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w), noise_mode, next(nz))
            x = self.conv1(x, next(w), noise_mode, next(nz), gain=math.sqrt(0.5))
            x = y + x
        else:
            x = x.to(dtype)
            x = self.conv0(x, next(w), noise_mode, next(nz))
            x = self.conv1(x, next(w), noise_mode, next(nz))
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.num_torgb:
            y = self.torgb(x, next(w)).to(torch.float32)
            img = img + y if img is not None else y
        return x, img


class Synthesis(nn.Module):
    """w (one per layer) -> image, roughly in [-1, 1]."""

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.block_resolutions = cfg.block_resolutions
        self.num_ws = 0
        self.noise_shapes: list[int] = []
        for res in self.block_resolutions:
            n_in = cfg.channels[res // 2] if res > 4 else 0
            block = Block(n_in, cfg.channels[res], cfg, res)
            self.num_ws += block.num_conv + (block.num_torgb if block.is_last else 0)
            self.noise_shapes += [res] * block.num_conv
            setattr(self, f"b{res}", block)

    def forward(self, ws: Tensor, noise_mode: NoiseMode = "const", noise: list[Tensor | None] | None = None, half: bool = False) -> Tensor:
        """``noise``: one (B or 1, 1, r, r) tensor per convolution (see :attr:`noise_shapes`), or None for ``noise_mode``.

        ``half``: run the blocks the checkpoint marks for float16 in float16, as the
        official code does on GPUs (faster there, slightly different images).
        """
        ws = ws.to(torch.float32)
        noise = list(noise) if noise is not None else [None] * len(self.noise_shapes)
        x = img = None
        w_idx = n_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), noise_mode, noise[n_idx : n_idx + block.num_conv], half)
            w_idx += block.num_conv
            n_idx += block.num_conv
        return img


class MappedGenerator(nn.Module):
    """What StyleGAN2 and StyleGAN3 share: ``G(z, c)`` is ``synthesis(mapping(z, c))``.

    Subclasses set ``cfg``, ``mapping`` (a :class:`Mapping`), ``synthesis`` and ``num_ws``.
    """

    cfg: MappingConfig
    mapping: Mapping
    synthesis: nn.Module
    num_ws: int

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        *,
        psi: float = 1.0,
        cutoff: int | None = None,
        noise_mode: NoiseMode = "const",
        noise: list[Tensor | None] | None = None,
        half: bool = False,
    ) -> Tensor:
        ws = self.mapping(z, c, psi=psi, cutoff=cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, noise=noise, half=half)


class StyleGAN2(MappedGenerator):
    """The generator: ``G(z, c) -> image`` (B, img_channels, resolution, resolution), roughly in [-1, 1].

    Args:
        cfg: the architecture (see :class:`StyleGAN2Config`).
    """

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.synthesis = Synthesis(cfg)
        self.num_ws = self.synthesis.num_ws
        self.mapping = Mapping(cfg, self.num_ws)
