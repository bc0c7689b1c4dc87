"""StyleNeRF's generator (FFHQ configuration) in plain PyTorch, under the official parameter and buffer names.

Gu et al., "StyleNeRF: A Style-based 3D-Aware Generator for High-resolution
Image Synthesis" (ICLR 2022); the architecture of facebookresearch/StyleNeRF's
``training/stylenerf.py`` with ``conf/model/stylenerf_ffhq.yaml``, written from
its description, with that code's names so an official ``G_ema`` state loads
as is:

1. ``mapping``: z (B, 512) -> w, broadcast to ``num_ws`` copies (StyleGAN2's
   mapping network, reused from ``promptgen-plugin-stylegan2``).
2. ``synthesis.V``, the volume renderer: one ray per pixel of a
   ``resolution_vol``² image (32² for FFHQ) from the camera; 14 samples in
   ``depth_range`` through the foreground field ``fg_nerf`` (an MLP of 1×1
   modulated convolutions, styled by the first ``fg_nerf.num_ws`` ws), 14 more
   placed by the first pass's weights (hierarchical sampling, deterministic),
   and 4 samples of the background field ``bg_nerf`` (NeRF++'s inverted
   sphere, driven by a 32-d latent code of its own, not by w). The result is a
   feature map: 3 RGB channels and ``rgb_out_dim`` features.
3. ``synthesis.b64`` ... ``b{resolution}``: StyleGAN2 blocks with 1×1
   convolutions that double the resolution with the "nn_cat" upsampler (nearest
   neighbour plus a learned correction from the 4-neighbour averages, then a
   [1, 3, 3, 1] blur), adding RGB skips, up to the output image in [-1, 1].

Everything runs in float32 (the official code runs the upper blocks in
float16 on a GPU). The camera and the background code are inputs: they are
never drawn here.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from promptgen_plugin_stylegan2.network import Dense, Mapping, MappingConfig
from promptgen_plugin_stylegan2.ops import LRELU_GAIN, bias_act, fir_filter, modulated_conv2d, upfirdn2d, upsample2d
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from .camera import FFHQ_CAMERA, CameraPrior

#: Bounds on what a file may describe (a network past them is refused before anything is allocated).
MAX_WIDTH = 4096
MAX_RESOLUTION = 1024
MAX_SAMPLES = 256
MAX_BLOCKS = 32
MAX_FREQUENCIES = 16
FIR = (1.0, 3.0, 3.0, 1.0)


class StyleNeRFConfig(BaseModel):
    """Everything needed to rebuild a StyleNeRF generator before its weights are loaded (defaults: FFHQ 256)."""

    model_config = ConfigDict(extra="forbid")

    z_dim: int = Field(default=512, ge=1, le=MAX_WIDTH, strict=True)
    w_dim: int = Field(default=512, ge=1, le=MAX_WIDTH, strict=True)
    mapping_layers: int = Field(default=8, ge=1, le=32, strict=True)
    mapping_lr: float = Field(default=0.01, gt=0, allow_inf_nan=False)
    resolution: int = Field(
        default=256, ge=8, le=MAX_RESOLUTION, strict=True, description="output image side, a power of two"
    )
    img_channels: int = Field(default=3, ge=1, le=4, strict=True)
    resolution_vol: int = Field(
        default=32, ge=2, le=MAX_RESOLUTION, strict=True, description="side of the volume-rendered image"
    )
    z_dim_bg: int = Field(default=32, ge=1, le=MAX_WIDTH, strict=True, description="the background field's latent code")
    rgb_out_dim: int = Field(
        default=256, ge=1, le=MAX_WIDTH, strict=True, description="features the foreground field renders"
    )
    rgb_out_dim_bg: int = Field(default=256, ge=1, le=MAX_WIDTH, strict=True)
    fg_hidden: int = Field(default=128, ge=1, le=MAX_WIDTH, strict=True)
    fg_blocks: int = Field(default=8, ge=2, le=MAX_BLOCKS, strict=True)
    bg_hidden: int = Field(default=64, ge=1, le=MAX_WIDTH, strict=True)
    bg_blocks: int = Field(default=4, ge=2, le=MAX_BLOCKS, strict=True)
    n_freq: int = Field(
        default=10, ge=1, le=MAX_FREQUENCIES, strict=True, description="positional-encoding frequencies"
    )
    n_ray_samples: int = Field(default=14, ge=3, le=MAX_SAMPLES, strict=True)
    n_bg_samples: int = Field(default=4, ge=2, le=MAX_SAMPLES, strict=True)
    hierarchical: bool = True
    depth_range: tuple[float, float] = (0.88, 1.12)
    bg_start: float = Field(default=0.5, gt=0, le=1)
    channel_base: int = Field(default=32768, ge=1, le=MAX_WIDTH * MAX_RESOLUTION, strict=True)
    channel_max: int = Field(default=1024, ge=1, le=MAX_WIDTH, strict=True)
    conv_clamp: float | None = 256.0
    magnitude_ema: bool = True
    #: the stored progressive-growing state: -1 (never grown) renders 20 foreground samples, 1 (grown) n_ray_samples
    alpha: float = 1.0
    camera: CameraPrior = FFHQ_CAMERA

    @model_validator(mode="after")
    def _check(self) -> StyleNeRFConfig:
        for name in ("resolution", "resolution_vol"):
            r = getattr(self, name)
            if r & (r - 1):
                raise ValueError(f"{name} must be a power of two, got {r}")
        if self.resolution_vol >= self.resolution:
            raise ValueError(
                f"resolution_vol ({self.resolution_vol}) must be below the image resolution ({self.resolution})"
            )
        if not 0 < self.depth_range[0] < self.depth_range[1] <= 1e3:
            raise ValueError(f"depth_range must be two increasing positive numbers, got {self.depth_range}")
        if self.alpha not in (-1.0, 1.0):
            raise ValueError(
                f"alpha (progressive growing) is {self.alpha}: "
                "only a finished model (1) or one never grown (-1) renders"
            )
        return self

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(int(math.log2(self.resolution_vol)) + 1, int(math.log2(self.resolution)) + 1)]

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def fg_num_ws(self) -> int:
        return self.fg_blocks + 2  # fc_in, the other blocks, sigma_out, feat_out

    @property
    def num_ws(self) -> int:
        return self.fg_num_ws + 2 * len(self.block_resolutions) + 1


def positional_encoding(p: Tensor, n_freq: int) -> Tensor:
    """(..., D) -> (..., 2·D·n_freq): sin and cos of 2^i·π·p for i < n_freq (NeRF's encoding)."""
    return torch.cat(
        [torch.cat([torch.sin((2**i) * math.pi * p), torch.cos((2**i) * math.pi * p)], dim=-1) for i in range(n_freq)],
        dim=-1,
    )


def _styled_matmul(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool) -> Tensor:
    """A 1×1 modulated convolution over points: x (B, P, I), weight (O, I, 1, 1), styles (B, I) -> (B, P, O)."""
    w = weight[None, :, :, 0, 0] * styles[:, None, :]  # (B, O, I)
    if demodulate:
        w = w * (w.square().sum(dim=2, keepdim=True) + 1e-8).rsqrt()
    return torch.bmm(x, w.transpose(1, 2))


class Style2Layer(nn.Module):
    """One layer of a NeRF field: a 1×1 modulated convolution and a leaky ReLU (w_dim > 0), or linear + ReLU (0)."""

    def __init__(self, n_in: int, n_out: int, w_dim: int) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.register_buffer("resample_filter", fir_filter(FIR))  # stored by the official layer, never used
        if w_dim > 0:
            self.affine = Dense(w_dim, n_in, bias_init=1.0)
            self.weight = nn.Parameter(torch.randn(n_out, n_in, 1, 1))
        else:
            self.weight = nn.Parameter(torch.randn(n_out, n_in) / math.sqrt(n_in))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: Tensor, w: Tensor | None) -> Tensor:
        """x (B, P, I), w (B, w_dim) -> (B, P, O)."""
        if self.w_dim > 0:
            assert w is not None
            x = _styled_matmul(x, self.weight, self.affine(w), demodulate=True)
            return bias_act(x.transpose(1, 2), self.bias, act="lrelu", gain=LRELU_GAIN).transpose(1, 2)
        return F.relu(F.linear(x, self.weight, self.bias))


class ToRGBLayer(nn.Module):
    """A 1×1 modulated convolution without demodulation (w_dim > 0), or a linear layer (0); on points or images."""

    def __init__(self, n_in: int, n_out: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.w_dim, self.conv_clamp = w_dim, conv_clamp
        if w_dim > 0:
            self.affine = Dense(w_dim, n_in, bias_init=1.0)
            self.weight = nn.Parameter(torch.randn(n_out, n_in, 1, 1))
            self.weight_gain = 1 / math.sqrt(n_in)
        else:
            self.weight = nn.Parameter(torch.randn(n_out, n_in) / math.sqrt(n_in))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: Tensor, w: Tensor | None) -> Tensor:
        """x (B, P, I) points or (B, I, H, W) images -> the same with O channels."""
        if self.w_dim == 0:
            return F.linear(x, self.weight, self.bias)
        assert w is not None
        styles = self.affine(w) * self.weight_gain
        if x.ndim == 3:
            y = _styled_matmul(x, self.weight, styles, demodulate=False)
            return bias_act(y.transpose(1, 2), self.bias, clamp=self.conv_clamp).transpose(1, 2)
        return bias_act(modulated_conv2d(x, self.weight, styles, demodulate=False), self.bias, clamp=self.conv_clamp)


class Conv2dLayer(nn.Module):
    """A plain 1×1 convolution with the equalised learning rate's gain, then the activation (official Conv2dLayer)."""

    def __init__(self, n_in: int, n_out: int, activation: str = "linear") -> None:
        super().__init__()
        self.activation = activation
        self.register_buffer("resample_filter", fir_filter(FIR))
        self.weight = nn.Parameter(torch.randn(n_out, n_in, 1, 1))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.weight_gain = 1 / math.sqrt(n_in)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, I, H, W) or (B, P, I) -> the same with O channels."""
        gain = LRELU_GAIN if self.activation == "lrelu" else 1.0
        w = self.weight * self.weight_gain
        if x.ndim == 3:
            return bias_act(
                torch.matmul(x, w[:, :, 0, 0].t()).transpose(1, 2), self.bias, act=self.activation, gain=gain
            ).transpose(1, 2)
        return bias_act(F.conv2d(x, w), self.bias, act=self.activation, gain=gain)


class NeRFBlock(nn.Module):
    """A radiance field: points (B, P, D) -> features (B, P, img_channels + rgb_out_dim) and raw density (B, P).

    Styled by ws (``w_dim`` > 0, the foreground), or by a latent code concatenated to the encoded points
    (``z_dim`` > 0, the background).
    """

    def __init__(
        self,
        input_dim: int,
        *,
        w_dim: int,
        z_dim: int,
        hidden: int,
        n_blocks: int,
        rgb_out_dim: int,
        img_channels: int,
        n_freq: int,
    ) -> None:
        super().__init__()
        self.z_dim, self.n_freq, self.n_blocks = z_dim, n_freq, n_blocks
        style = 0 if z_dim > 0 else w_dim
        n_embed = input_dim * n_freq * 2 + z_dim
        self.fc_in = Style2Layer(n_embed, hidden, style)
        self.blocks = nn.ModuleList([Style2Layer(hidden, hidden, style) for _ in range(n_blocks - 1)])
        self.sigma_out = ToRGBLayer(hidden, 1, style)
        self.feat_out = ToRGBLayer(hidden, rgb_out_dim, style)
        self.to_rgb = Conv2dLayer(rgb_out_dim, img_channels)
        self.num_ws = 0 if z_dim > 0 else n_blocks + 2

    def forward(self, p: Tensor, ws: Tensor | None = None, z: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = positional_encoding(p, self.n_freq)
        if self.z_dim > 0:
            assert z is not None
            x = torch.cat([x, z[:, None, :].expand(-1, x.shape[1], -1)], -1)

        def style(i: int) -> Tensor | None:
            return ws[:, i] if ws is not None else None

        net = self.fc_in(x, style(0))
        for i, layer in enumerate(self.blocks):
            net = layer(net, style(i + 1))
        sigma = self.sigma_out(net, style(self.n_blocks))
        feat = self.feat_out(net, style(-1) if ws is not None else None)
        rgb = self.to_rgb(feat)
        return torch.cat([rgb, feat], -1), sigma[..., 0]


class SynthesisLayer(nn.Module):
    """A 1×1 modulated convolution of the upsampler, doubling the resolution with "nn_cat" when ``up`` is 2."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        w_dim: int,
        resolution: int,
        *,
        up: int,
        conv_clamp: float | None,
        magnitude_ema: bool,
    ) -> None:
        super().__init__()
        self.up, self.conv_clamp, self.resolution = up, conv_clamp, resolution
        self.register_buffer("resample_filter", fir_filter(FIR))
        if up == 2:
            self.adapter = nn.Sequential(Conv2dLayer(n_out * 2, n_out // 4, "lrelu"), Conv2dLayer(n_out // 4, n_out))
        self.affine = Dense(w_dim, n_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(n_out, n_in, 1, 1))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.magnitude_ema = magnitude_ema
        if magnitude_ema:
            self.register_buffer("w_avg", torch.ones([]))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        if self.magnitude_ema:
            x = x * cast(Tensor, self.w_avg).rsqrt()
        x = modulated_conv2d(x, self.weight, self.affine(w))
        if self.up == 2:
            x = self.upsample_nn_cat(x)
        clamp = self.conv_clamp if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act="lrelu", gain=LRELU_GAIN, clamp=clamp)

    def upsample_nn_cat(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, 2H, 2W): nearest neighbour plus a learned term of it and neighbour means, blurred."""
        b, _, h, w = x.shape
        pad = F.pad(x, (1, 1, 1, 1))
        left, up, down, right = pad[..., 1:-1, :-2], pad[..., :-2, 1:-1], pad[..., 2:, 1:-1], pad[..., 1:-1, 2:]
        # Each of the four output pixels of an input pixel sees the mean of its two nearest neighbours.
        corners = torch.stack([left + up, up + right, left + down, right + down], 2) / 2
        between = F.pixel_shuffle(corners.reshape(b, -1, h, w), 2)
        nearest = F.interpolate(x, size=(2 * h, 2 * w), mode="nearest")
        x = nearest + self.adapter(torch.cat([nearest, between], 1))
        f = cast(Tensor, self.resample_filter)
        return upfirdn2d(x, f, pad=(f.shape[-1] // 2, (f.shape[-1] - 1) // 2, f.shape[-2] // 2, (f.shape[-2] - 1) // 2))


class SynthesisBlock(nn.Module):
    """Doubles the feature map (two layers) and adds its RGB to the up-sampled image (the "skip" architecture)."""

    num_conv = 2
    num_torgb = 1

    def __init__(
        self,
        n_in: int,
        n_out: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        *,
        conv_clamp: float | None,
        magnitude_ema: bool,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.register_buffer("resample_filter", fir_filter(FIR))
        self.conv0 = SynthesisLayer(
            n_in, n_out, w_dim, resolution, up=2, conv_clamp=conv_clamp, magnitude_ema=magnitude_ema
        )
        self.conv1 = SynthesisLayer(
            n_out, n_out, w_dim, resolution, up=1, conv_clamp=conv_clamp, magnitude_ema=magnitude_ema
        )
        self.torgb = ToRGBLayer(n_out, img_channels, w_dim, conv_clamp=conv_clamp)

    def forward(self, x: Tensor, img: Tensor, ws: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, I, H, W), img (B, 3, H, W), ws (B, 3, w_dim) -> x (B, O, 2H, 2W), img (B, 3, 2H, 2W)."""
        x = self.conv0(x, ws[:, 0])
        x = self.conv1(x, ws[:, 1])
        img = upsample2d(img, cast(Tensor, self.resample_filter))
        return x, img + self.torgb(x, ws[:, 2])


class VolumeRenderer(nn.Module):
    """Renders the fields for a camera: a (B, 3 + features, r, r) map of ``resolution_vol`` r. Holds no weights.

    A forward hook on it sees the camera each image was rendered from: its inputs are
    ``(world (B, 4, 4), fg_nerf, bg_nerf, styles (B, fg ws, w_dim), z_bg (B, z_dim_bg))``.
    """

    def __init__(self, cfg: StyleNeRFConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("camera_matrix", cfg.camera.intrinsics_inverse(), persistent=False)
        self.n_steps = cfg.n_ray_samples if cfg.alpha != -1 else 20  # the official renderer's choice for alpha = -1

    def pixels(self, batch: int, device: torch.device) -> Tensor:
        """(B, r², 2) pixel centres in [-1, 1], rows from the top (y flipped), as the official ``arange_pixels``."""
        r = self.cfg.resolution_vol
        half = 1 - 1 / r
        xs = torch.linspace(-half, half, r, device=device)
        ys = torch.linspace(-half, half, r, device=device)
        grid = torch.stack([xs[None, :].expand(r, r), -ys[:, None].expand(r, r)], -1)
        return grid.reshape(1, -1, 2).repeat(batch, 1, 1)

    def rays(self, world: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Each pixel's point on the image plane (B, N, 3), the camera's position (B, N, 3) and the ray (B, N, 3)."""
        b = world.shape[0]
        pixels = self.pixels(b, world.device)
        n = pixels.shape[1]
        homogeneous = torch.cat(
            [pixels, -torch.ones(b, n, 1, device=world.device), torch.ones(b, n, 1, device=world.device)], -1
        )
        camera_mat = cast(Tensor, self.camera_matrix).to(world.dtype).expand(b, 4, 4)
        to_world = torch.eye(4, dtype=world.dtype, device=world.device).expand(b, 4, 4) @ world @ camera_mat
        pixels_world = (to_world @ homogeneous.transpose(1, 2))[:, :3].transpose(1, 2)
        origin = torch.zeros(b, 4, n, dtype=world.dtype, device=world.device)
        origin[:, -1] = 1
        camera_world = (to_world @ origin)[:, :3].transpose(1, 2)
        return pixels_world, camera_world, pixels_world - camera_world

    def depth(self, di: Tensor) -> Tensor:
        near, far = self.cfg.depth_range
        return far * di + near * (1 - di)

    def foreground(
        self, nerf: NeRFBlock, styles: Tensor, di: Tensor, camera: Tensor, ray: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Features (B, N, S, D) and density (B, N, S) at normalised depths ``di`` (B, N, S) along each ray."""
        b, n, s = di.shape
        p = camera.unsqueeze(-2) + self.depth(di).unsqueeze(-1) * ray.unsqueeze(-2)
        feat, sigma = nerf(p.reshape(b, -1, 3), ws=styles)
        return feat.reshape(b, n, s, -1), F.relu(sigma.reshape(b, n, s))

    def forward(self, world: Tensor, fg_nerf: NeRFBlock, bg_nerf: NeRFBlock, styles: Tensor, z_bg: Tensor) -> Tensor:
        b = world.shape[0]
        pixels_world, camera_world, ray = self.rays(world)
        n, s = pixels_world.shape[1], self.n_steps
        di = torch.linspace(0.0, 1.0, s, device=world.device).expand(b, n, s)
        feat, sigma = self.foreground(fg_nerf, styles, di, camera_world, ray)
        weights, bg_lambda = volume_weights(sigma, self.depth(di), ray, last_dist=0.0)
        if self.cfg.hierarchical:
            with torch.no_grad():
                middle = 0.5 * (di[..., :-1] + di[..., 1:])
                fine = sample_pdf(middle.reshape(-1, s - 1), weights.reshape(-1, s)[:, 1:-1], s).reshape(b, -1, s)
            feat_f, sigma_f = self.foreground(fg_nerf, styles, fine, camera_world, ray)
            di, order = torch.sort(torch.cat([fine, di], 2), dim=2)
            sigma = torch.gather(torch.cat([sigma_f, sigma], 2), 2, order)
            feat = torch.gather(torch.cat([feat_f, feat], 2), 2, order[..., None].expand(-1, -1, -1, feat.shape[-1]))
            weights, bg_lambda = volume_weights(sigma, self.depth(di), ray, last_dist=0.0)
        fg_feat = torch.sum(weights.unsqueeze(-1) * feat, dim=-2)

        # The background: NeRF++'s inverted sphere, at inverse distances bg_start .. 0 beyond the unit sphere.
        sb = self.cfg.n_bg_samples
        dib = torch.linspace(-1.0, 0.0, sb, device=world.device).expand(b, n, sb) * self.cfg.bg_start
        direction = ray / ray.norm(dim=-1, keepdim=True)
        pts = outside_points(
            camera_world.unsqueeze(-2).expand(b, n, sb, 3), direction.unsqueeze(-2).expand(b, n, sb, 3), -dib
        )
        feat_bg, sigma_bg = bg_nerf(pts.reshape(b, -1, 4), z=z_bg)
        bg_weights, _ = volume_weights(F.relu(sigma_bg.reshape(b, n, sb)), dib, None, last_dist=1e10)
        bg_feat = bg_lambda.unsqueeze(-1) * torch.sum(bg_weights.unsqueeze(-1) * feat_bg.reshape(b, n, sb, -1), dim=-2)

        r = self.cfg.resolution_vol
        return (fg_feat + bg_feat).transpose(1, 2).reshape(b, -1, r, r)


def volume_weights(sigma: Tensor, depth: Tensor, ray: Tensor | None, last_dist: float) -> tuple[Tensor, Tensor]:
    """Alpha compositing: each sample's weight (B, N, S), and the light left after the samples but the last (B, N).

    ``depth`` (B, N, S) along rays of length |ray| (or 1); the last interval is ``last_dist`` long (0: the
    foreground leaves its light to the background; 1e10: the background is opaque at its end).
    """
    dists = depth[..., 1:] - depth[..., :-1]
    if ray is not None:
        dists = dists * torch.norm(ray, dim=-1, keepdim=True)
    dists = torch.cat([dists, torch.ones_like(dists[..., :1]) * last_dist], dim=-1)
    alpha = 1.0 - torch.exp(-F.relu(sigma) * dists)
    if last_dist > 0:
        alpha = torch.cat([alpha[..., :-1], torch.ones_like(alpha[..., -1:])], -1)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1.0 - alpha + 1e-10], dim=-1), dim=-1)[
        ..., :-1
    ]
    return alpha * transmittance, transmittance[..., -1]


def sample_pdf(bins: Tensor, weights: Tensor, n: int, eps: float = 1e-5) -> Tensor:
    """``n`` depths (R, n) at evenly spaced quantiles of the piecewise-constant density ``weights`` (R, K)
    on ``bins`` (R, K+1)."""
    rays, k = weights.shape
    weights = weights + eps
    pdf = weights / torch.sum(weights, -1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)
    u = torch.linspace(0, 1, n, device=bins.device).expand(rays, n).contiguous()
    above_index = torch.searchsorted(cdf, u)
    below = torch.clamp_min(above_index - 1, 0)
    above = torch.clamp_max(above_index, k)
    pairs = torch.stack([below, above], -1).view(rays, 2 * n)
    cdf_pair = torch.gather(cdf, 1, pairs).view(rays, n, 2)
    bins_pair = torch.gather(bins, 1, pairs).view(rays, n, 2)
    denom = cdf_pair[..., 1] - cdf_pair[..., 0]
    denom = torch.where(denom < eps, torch.ones_like(denom), denom)  # an empty bin is never chosen; any value does
    return bins_pair[..., 0] + (u - cdf_pair[..., 0]) / denom * (bins_pair[..., 1] - bins_pair[..., 0])


def outside_points(origin: Tensor, direction: Tensor, inverse_depth: Tensor) -> Tensor:
    """NeRF++'s points outside the unit sphere along unit rays, as (x, y, z on the unit sphere, 1/r): (..., 4).

    ``inverse_depth`` (...) in [0, 1]: 1 / the distance from the origin of the point the ray reaches.
    """
    d1 = -torch.sum(direction * origin, dim=-1) / torch.sum(direction * direction, dim=-1)
    p_mid = origin + d1.unsqueeze(-1) * direction
    p_mid_norm = torch.norm(p_mid, dim=-1)
    cos = 1.0 / torch.norm(direction, dim=-1)
    d2 = torch.sqrt(1.0 - p_mid_norm * p_mid_norm) * cos
    p_sphere = origin + (d1 + d2).unsqueeze(-1) * direction
    axis = torch.cross(origin, p_sphere, dim=-1)
    axis = axis / torch.norm(axis, dim=-1, keepdim=True)
    angle = (torch.asin(p_mid_norm) - torch.asin(p_mid_norm * inverse_depth)).unsqueeze(-1)
    # Rodrigues' rotation of the sphere point about the axis, towards the ray's far end.
    rotated = (
        p_sphere * torch.cos(angle)
        + torch.cross(axis, p_sphere, dim=-1) * torch.sin(angle)
        + axis * torch.sum(axis * p_sphere, dim=-1, keepdim=True) * (1.0 - torch.cos(angle))
    )
    rotated = rotated / torch.norm(rotated, dim=-1, keepdim=True)
    return torch.cat([rotated, inverse_depth.unsqueeze(-1)], dim=-1)


class NeRFSynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim), camera world matrices (B, 4, 4), background codes (B, z_dim_bg) -> images in [-1, 1]."""

    def __init__(self, cfg: StyleNeRFConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.V = VolumeRenderer(cfg)
        common = {"img_channels": cfg.img_channels, "n_freq": cfg.n_freq}
        self.fg_nerf = NeRFBlock(
            3,
            w_dim=cfg.w_dim,
            z_dim=0,
            hidden=cfg.fg_hidden,
            n_blocks=cfg.fg_blocks,
            rgb_out_dim=cfg.rgb_out_dim,
            **common,
        )
        self.bg_nerf = NeRFBlock(
            4,
            w_dim=cfg.w_dim,
            z_dim=cfg.z_dim_bg,
            hidden=cfg.bg_hidden,
            n_blocks=cfg.bg_blocks,
            rgb_out_dim=cfg.rgb_out_dim_bg,
            **common,
        )
        n_in = cfg.rgb_out_dim
        self.block_names = []
        for res in cfg.block_resolutions:
            n_out = cfg.channels(res)
            block = SynthesisBlock(
                n_in,
                n_out,
                cfg.w_dim,
                res,
                cfg.img_channels,
                conv_clamp=cfg.conv_clamp,
                magnitude_ema=cfg.magnitude_ema,
            )
            setattr(self, f"b{res}", block)
            self.block_names.append(f"b{res}")
            n_in = n_out
        self.register_buffer("alpha", torch.tensor(cfg.alpha))
        self.num_ws = cfg.num_ws

    def forward(self, ws: Tensor, world: Tensor, z_bg: Tensor) -> Tensor:
        k = self.fg_nerf.num_ws
        feat = self.V(world, self.fg_nerf, self.bg_nerf, ws[:, :k], z_bg)
        c = self.cfg.img_channels
        img, x = feat[:, :c], feat[:, c:]
        ws = ws[:, k:]
        for i, name in enumerate(self.block_names):
            x, img = getattr(self, name)(x, img, ws[:, 2 * i : 2 * i + 3])
        return img


class StyleNeRF(nn.Module):
    """z (B, z_dim), camera mode (B, 2), background code (B, z_dim_bg) -> images (B, 3, H, W) in [-1, 1]."""

    def __init__(self, cfg: StyleNeRFConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.synthesis = NeRFSynthesisNetwork(cfg)
        mapping = MappingConfig(
            z_dim=cfg.z_dim, w_dim=cfg.w_dim, mapping_layers=cfg.mapping_layers, mapping_lr=cfg.mapping_lr
        )
        self.mapping = Mapping(mapping, cfg.num_ws)

    def forward(self, z: Tensor, mode: Tensor, z_bg: Tensor, psi: float = 1.0) -> Tensor:
        ws = self.mapping(z, psi=psi)
        world = self.cfg.camera.world_matrix(mode.to(torch.float32))
        return self.synthesis(ws, world, z_bg)


__all__ = [
    "NeRFBlock",
    "NeRFSynthesisNetwork",
    "StyleNeRF",
    "StyleNeRFConfig",
    "SynthesisBlock",
    "VolumeRenderer",
    "outside_points",
    "positional_encoding",
    "sample_pdf",
    "volume_weights",
]
