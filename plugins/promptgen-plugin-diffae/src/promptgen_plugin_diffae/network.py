"""The networks of a diffusion autoencoder (Preechakul et al., CVPR 2022) that sampling needs, written for promptgen.

Two networks, with the parameter names of phizaz/diffae's checkpoints (``ema_model.`` stripped), so a
``last.ckpt`` loads into them as it is:

- :class:`ConditionalUNet`: the image denoiser ε(x_t, t, z_sem). A U-Net of residual blocks (BigGAN-style
  up and down sampling, self-attention at the listed resolutions) whose group-normalised features are scaled
  and shifted by the time embedding, then scaled by ``1 + W z_sem``. The semantic encoder of the checkpoint
  (``encoder.*``) is not built: sampling never encodes an image.
- :class:`LatentMLP`: the latent DDIM's denoiser ε(z_t, t) over the 512-d semantic code, an MLP whose hidden
  layers take the input again (skip connections) and are scaled by ``1 + W emb(t)`` before a layer norm.

``scripts/conformance.py`` runs the official networks and samplers beside these on the same random weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass(frozen=True)
class UNetConfig:
    """The image U-Net's shape (the names of phizaz/diffae's ``TrainConfig``: ``img_size``, ``net_ch``...)."""

    image_size: int = 256
    channels: int = 128  # net_ch
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)  # net_ch_mult
    res_blocks: int = 2  # net_num_res_blocks
    attention: tuple[int, ...] = (16,)  # net_attn
    heads: int = 1  # net_beatgans_attn_head
    embed: int = 512  # net_beatgans_embed_channels
    style: int = 512  # style_ch: the semantic code's size


@dataclass(frozen=True)
class LatentConfig:
    """The latent MLP's shape (``net_latent_*`` of phizaz/diffae's ``TrainConfig``)."""

    channels: int = 512  # style_ch
    hidden: int = 2048  # net_latent_num_hid_channels
    layers: int = 10  # net_latent_layers
    skip: tuple[int, ...] = field(default_factory=lambda: tuple(range(1, 10)))  # net_latent_skip_layers
    time_channels: int = 64  # net_latent_time_emb_channels
    norm: bool = True  # net_latent_use_norm
    condition_bias: float = 1.0  # net_latent_condition_bias


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (B,) timesteps: cosines then sines of ``t · max_period^(-k/half)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
    args = t[:, None].float() * freqs[None]
    out = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(out, (0, 1)) if dim % 2 else out


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels), channels)


class ResBlock(nn.Module):
    """norm → SiLU → conv, then norm, ``·(1 + s_t) + b_t``, ``·(1 + s_z)``, SiLU, dropout, conv; plus the skip."""

    def __init__(self, cin: int, cout: int, cfg: UNetConfig, *, resample: str = "", lateral: int = 0) -> None:
        super().__init__()
        total = cin + lateral
        self.lateral = lateral > 0
        self.resample = resample
        self.in_layers = nn.Sequential(group_norm(total), nn.SiLU(), nn.Conv2d(total, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(cfg.embed, 2 * cout))
        self.cond_emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(cfg.style, cout))
        self.out_layers = nn.Sequential(group_norm(cout), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip_connection = nn.Identity() if cout == total else nn.Conv2d(total, cout, 1)

    def _resample(self, x: Tensor) -> Tensor:
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        if self.resample == "down":
            return F.avg_pool2d(x, 2, 2)
        return x

    def forward(self, x: Tensor, emb: Tensor, cond: Tensor, lateral: Tensor | None = None) -> Tensor:
        if self.lateral:
            x = torch.cat([x, lateral], dim=1)  # type: ignore[list-item]
        norm_act, conv = self.in_layers[:-1], self.in_layers[-1]
        h = conv(self._resample(norm_act(x)))
        x = self._resample(x)
        scale, shift = self.emb_layers(emb)[..., None, None].chunk(2, dim=1)
        style = self.cond_emb_layers(cond)[..., None, None]
        norm, rest = self.out_layers[0], self.out_layers[1:]
        h = norm(h) * (1 + scale) + shift
        h = rest(h * (1 + style))
        return self.skip_connection(x) + h


class Attention(nn.Module):
    """Self-attention over the pixels of a feature map (heads split before q, k and v), added to the input."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor, *_: object) -> Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(flat))
        ch = c // self.heads
        q, k, v = qkv.reshape(b * self.heads, 3 * ch, -1).split(ch, dim=1)
        scale = 1 / math.sqrt(math.sqrt(ch))
        weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale).float(), dim=-1).type(q.dtype)
        h = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, -1)
        return (flat + self.proj_out(h)).reshape(b, c, *spatial)


class Stage(nn.ModuleList):
    """One entry of the U-Net's block lists: a residual block and an attention, or the first convolution."""

    def forward(self, x: Tensor, emb: Tensor, cond: Tensor, lateral: Tensor | None = None) -> Tensor:  # type: ignore[override]
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb, cond, lateral)
            elif isinstance(layer, Attention):
                x = layer(x)
            else:
                x = layer(x)
        return x


class TimeEmbed(nn.Module):
    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.time_embed = nn.Sequential(nn.Linear(cfg.channels, cfg.embed), nn.SiLU(), nn.Linear(cfg.embed, cfg.embed))


class ConditionalUNet(nn.Module):
    """ε(x_t, t, z_sem): (B, 3, H, W), (B,) original timesteps, (B, style) -> (B, 3, H, W)."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.time_embed = TimeEmbed(cfg)
        ch = cfg.channels * cfg.channel_mult[0]
        levels = len(cfg.channel_mult)
        self.input_blocks = nn.ModuleList([Stage([nn.Conv2d(3, ch, 3, padding=1)])])
        skips: list[list[int]] = [[ch]] + [[] for _ in range(levels - 1)]
        self.per_level = [1] + [0] * (levels - 1)
        res = cfg.image_size
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.res_blocks):
                out = cfg.channels * mult
                layers: list[nn.Module] = [ResBlock(ch, out, cfg)]
                ch = out
                if res in cfg.attention:
                    layers.append(Attention(ch, cfg.heads))
                self.input_blocks.append(Stage(layers))
                skips[level].append(ch)
                self.per_level[level] += 1
            if level != levels - 1:
                res //= 2
                self.input_blocks.append(Stage([ResBlock(ch, ch, cfg, resample="down")]))
                skips[level + 1].append(ch)
                self.per_level[level + 1] += 1
        self.middle_block = Stage([ResBlock(ch, ch, cfg), Attention(ch, cfg.heads), ResBlock(ch, ch, cfg)])
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.res_blocks + 1):
                lateral = skips[level].pop() if skips[level] else 0
                out = cfg.channels * mult
                layers = [ResBlock(ch, out, cfg, lateral=lateral)]
                ch = out
                if res in cfg.attention:
                    layers.append(Attention(ch, cfg.heads))
                if level and i == cfg.res_blocks:
                    res *= 2
                    layers.append(ResBlock(ch, ch, cfg, resample="up"))
                self.output_blocks.append(Stage(layers))
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(cfg.channels * cfg.channel_mult[0], 3, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        emb = self.time_embed.time_embed(timestep_embedding(t, self.cfg.channels))
        hs: list[list[Tensor]] = [[] for _ in self.cfg.channel_mult]
        h, k = x, 0
        for level, count in enumerate(self.per_level):
            for _ in range(count):
                h = self.input_blocks[k](h, emb, cond)
                hs[level].append(h)
                k += 1
        h = self.middle_block(h, emb, cond)
        k = 0
        for level in range(len(self.cfg.channel_mult)):
            for _ in range(self.cfg.res_blocks + 1):
                lateral = hs[-level - 1].pop() if hs[-level - 1] else None
                h = self.output_blocks[k](h, emb, cond, lateral)
                k += 1
        return self.out(h)


class LatentLayer(nn.Module):
    """Linear, then (when conditioned) ``·(bias + W SiLU(emb))`` and a layer norm, then SiLU (none on the last)."""

    def __init__(self, cin: int, cout: int, cfg: LatentConfig, *, last: bool) -> None:
        super().__init__()
        self.last = last
        self.bias = cfg.condition_bias
        self.linear = nn.Linear(cin, cout)
        self.act: nn.Module = nn.Identity() if last else nn.SiLU()
        if not last:
            self.linear_emb = nn.Linear(cfg.channels, cout)
            self.cond_layers = nn.Sequential(self.act, self.linear_emb)  # the checkpoint stores linear_emb twice
        self.norm: nn.Module = nn.LayerNorm(cout) if cfg.norm and not last else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        x = self.linear(x)
        if not self.last:
            x = x * (self.bias + self.cond_layers(emb))
        return self.act(self.norm(x))


class LatentMLP(nn.Module):
    """ε(z_t, t) of the latent DDIM: (B, 512), (B,) original timesteps -> (B, 512)."""

    def __init__(self, cfg: LatentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.time_embed = nn.Sequential(nn.Linear(cfg.time_channels, cfg.channels), nn.SiLU(), nn.Linear(cfg.channels, cfg.channels))
        layers = []
        for i in range(cfg.layers):
            cin = cfg.channels if i == 0 else cfg.hidden
            cout = cfg.channels if i == cfg.layers - 1 else cfg.hidden
            layers.append(LatentLayer(cin + (cfg.channels if i in cfg.skip else 0), cout, cfg, last=i == cfg.layers - 1))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        emb = self.time_embed(timestep_embedding(t, self.cfg.time_channels))
        h = x
        for i, layer in enumerate(self.layers):
            if i in self.cfg.skip:
                h = torch.cat([h, x], dim=1)
            h = layer(h, emb)
        return h


__all__ = ["ConditionalUNet", "LatentConfig", "LatentMLP", "UNetConfig", "timestep_embedding"]
