"""BigGAN-deep's generator in plain PyTorch, with the parameter names of pytorch-pretrained-BigGAN.

The state dict of :class:`BigGAN` has exactly the keys (and shapes) that
``pytorch_pretrained_biggan.BigGAN(config).state_dict()`` has, so the official
``pytorch_model.bin`` files load into it with ``load_state_dict(strict=True)``.
The network is written from the architecture (Brock et al. 2019, appendix B;
the computational graph of DeepMind's TF-Hub modules), not copied.

Spectral normalisation is evaluated as ``torch.nn.utils.spectral_norm`` does
in eval mode: ``W = weight_orig / (uᵀ · weight_orig · v)`` with the stored
vectors ``u`` and ``v`` and no power iteration (the weights are frozen). The
normalised weights are computed once, by :meth:`BigGAN.refresh`, after loading.

Conditional batch norm uses stored statistics, one set per truncation value on
a grid of ``n_stats`` points in [0, 1] (standing statistics, as DeepMind
exported them), picked and interpolated exactly as the reference does, so
images match it at float precision for every truncation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from promptgen_plugin_biggan.config import BigGANConfig


class SNLinear(nn.Module):
    """A spectrally normalised linear layer: parameters ``weight_orig`` (out, in), [``bias``]; buffers ``weight_u``, ``weight_v``."""

    def __init__(self, n_in: int, n_out: int, bias: bool = True) -> None:
        super().__init__()
        self.weight_orig = nn.Parameter(torch.empty(n_out, n_in))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None
        self.register_buffer("weight_u", torch.zeros(n_out))
        self.register_buffer("weight_v", torch.zeros(n_in))
        self.register_buffer("weight", torch.empty(n_out, n_in), persistent=False)

    def refresh(self) -> None:
        with torch.no_grad():
            w = self.weight_orig
            sigma = torch.dot(self.weight_u, torch.mv(w.reshape(w.shape[0], -1), self.weight_v))
            self.weight.copy_(w / sigma)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class SNConv2d(SNLinear):
    """A spectrally normalised convolution (stride 1); ``weight_orig`` is (out, in, k, k)."""

    def __init__(self, n_in: int, n_out: int, kernel: int, bias: bool = True) -> None:
        nn.Module.__init__(self)
        self.padding = kernel // 2
        self.weight_orig = nn.Parameter(torch.empty(n_out, n_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None
        self.register_buffer("weight_u", torch.zeros(n_out))
        self.register_buffer("weight_v", torch.zeros(n_in * kernel * kernel))
        self.register_buffer("weight", torch.empty(n_out, n_in, kernel, kernel), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)


def stats_at(means: Tensor, variances: Tensor, truncation: float) -> tuple[Tensor, Tensor]:
    """The standing statistics for ``truncation``, as pytorch-pretrained-BigGAN picks them.

    The grid has ``n`` points, step ``1 / (n - 1)``. On a grid point (0.4 with
    51 points: index 20) the stored row is used as it is. Between points the
    reference mixes rows ``i`` and ``i + 1`` with weights ``f`` and ``1 - f``,
    where ``f`` is the fractional part of ``truncation / step``: note that it
    gives the *lower* row the weight of the fraction. We keep that formula so
    images match the reference (and so the official models behave as their
    users know them).
    """
    step = 1.0 / (means.shape[0] - 1)
    coef, start = math.modf(truncation / step)
    i = int(start)
    if coef != 0.0:
        return means[i] * coef + means[i + 1] * (1 - coef), variances[i] * coef + variances[i + 1] * (1 - coef)
    return means[i], variances[i]


class ConditionalBatchNorm(nn.Module):
    """Batch norm with standing statistics per truncation and a scale and offset computed from the condition."""

    def __init__(self, channels: int, condition: int, n_stats: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, channels))
        self.register_buffer("running_vars", torch.ones(n_stats, channels))
        self.scale = SNLinear(condition, channels, bias=False)
        self.offset = SNLinear(condition, channels, bias=False)

    def forward(self, x: Tensor, truncation: float, cond: Tensor) -> Tensor:
        mean, var = stats_at(self.running_means, self.running_vars, truncation)
        gain = 1 + self.scale(cond)[:, :, None, None]
        bias = self.offset(cond)[:, :, None, None]
        return (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps) * gain + bias


class BatchNorm(nn.Module):
    """The last batch norm: standing statistics per truncation, a learnt ``weight`` and ``bias``."""

    def __init__(self, channels: int, n_stats: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, channels))
        self.register_buffer("running_vars", torch.ones(n_stats, channels))
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, truncation: float) -> Tensor:
        mean, var = stats_at(self.running_means, self.running_vars, truncation)
        return F.batch_norm(x, mean, var, self.weight, self.bias, training=False, eps=self.eps)


class SelfAttention(nn.Module):
    """SAGAN self-attention, keys and values max-pooled by 2; ``gamma`` scales the residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.snconv1x1_theta = SNConv2d(channels, channels // 8, 1, bias=False)
        self.snconv1x1_phi = SNConv2d(channels, channels // 8, 1, bias=False)
        self.snconv1x1_g = SNConv2d(channels, channels // 2, 1, bias=False)
        self.snconv1x1_o_conv = SNConv2d(channels // 2, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        theta = self.snconv1x1_theta(x).flatten(2)  # (B, C/8, HW)
        phi = F.max_pool2d(self.snconv1x1_phi(x), 2).flatten(2)  # (B, C/8, HW/4)
        attn = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (B, HW, HW/4)
        g = F.max_pool2d(self.snconv1x1_g(x), 2).flatten(2)  # (B, C/2, HW/4)
        out = (g @ attn.transpose(1, 2)).view(b, c // 2, h, w)
        return x + self.gamma * self.snconv1x1_o_conv(out)


class Block(nn.Module):
    """BigGAN-deep's residual block: 1×1 down to a quarter of the channels, two 3×3, 1×1 out; the skip drops channels."""

    def __init__(self, n_in: int, n_out: int, condition: int, upsample: bool, n_stats: int, eps: float) -> None:
        super().__init__()
        mid = n_in // 4
        self.upsample, self.n_out = upsample, n_out
        self.bn_0 = ConditionalBatchNorm(n_in, condition, n_stats, eps)
        self.conv_0 = SNConv2d(n_in, mid, 1)
        self.bn_1 = ConditionalBatchNorm(mid, condition, n_stats, eps)
        self.conv_1 = SNConv2d(mid, mid, 3)
        self.bn_2 = ConditionalBatchNorm(mid, condition, n_stats, eps)
        self.conv_2 = SNConv2d(mid, mid, 3)
        self.bn_3 = ConditionalBatchNorm(mid, condition, n_stats, eps)
        self.conv_3 = SNConv2d(mid, n_out, 1)

    def forward(self, x: Tensor, cond: Tensor, truncation: float) -> Tensor:
        h = self.conv_0(F.relu(self.bn_0(x, truncation, cond)))
        h = F.relu(self.bn_1(h, truncation, cond))
        if self.upsample:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.conv_1(h)
        h = self.conv_2(F.relu(self.bn_2(h, truncation, cond)))
        h = self.conv_3(F.relu(self.bn_3(h, truncation, cond)))
        skip = x[:, : self.n_out] if self.n_out != x.shape[1] else x
        if self.upsample:
            skip = F.interpolate(skip, scale_factor=2, mode="nearest")
        return h + skip


class Generator(nn.Module):
    """condition (B, 2·z_dim) -> images (B, 3, R, R) in [-1, 1]."""

    def __init__(self, cfg: BigGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch, cond = cfg.channel_width, 2 * cfg.z_dim
        self.gen_z = SNLinear(cond, 4 * 4 * 16 * ch)
        layers: list[nn.Module] = []
        for i, (up, cin, cout) in enumerate(cfg.layers):
            if i == cfg.attention_layer_position:
                layers.append(SelfAttention(ch * cin))
            layers.append(Block(ch * cin, ch * cout, cond, up, cfg.n_stats, cfg.eps))
        self.layers = nn.ModuleList(layers)
        self.bn = BatchNorm(ch, cfg.n_stats, cfg.eps)
        self.conv_to_rgb = SNConv2d(ch, ch, 3)

    def forward(self, cond: Tensor, truncation: float) -> Tensor:
        ch = self.cfg.channel_width
        # gen_z's output is laid out (4, 4, channels), TensorFlow's NHWC order.
        x = self.gen_z(cond).view(-1, 4, 4, 16 * ch).permute(0, 3, 1, 2)
        for layer in self.layers:
            x = layer(x, cond, truncation) if isinstance(layer, Block) else layer(x)
        x = self.conv_to_rgb(F.relu(self.bn(x, truncation)))
        return torch.tanh(x[:, :3])


class BigGAN(nn.Module):
    """BigGAN-deep: ``embeddings`` (a bias-free Linear(num_classes, z_dim)) and the :class:`Generator`."""

    def __init__(self, cfg: BigGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = nn.Linear(cfg.num_classes, cfg.z_dim, bias=False)
        self.generator = Generator(cfg)

    def refresh(self) -> BigGAN:
        """Compute the spectrally normalised weights from the loaded ``weight_orig``, ``weight_u``, ``weight_v``."""
        for m in self.modules():
            if isinstance(m, SNLinear):
                m.refresh()
        return self

    def embed_class(self, one_hot: Tensor) -> Tensor:
        return self.embeddings(one_hot)

    def synthesise(self, z: Tensor, embedding: Tensor, truncation: float) -> Tensor:
        """``z`` (B, z_dim) as the network takes it (already truncated), ``embedding`` (B, z_dim) -> images in [-1, 1]."""
        return self.generator(torch.cat([z, embedding], dim=1), truncation)

    def forward(self, z: Tensor, class_vector: Tensor, truncation: float) -> Tensor:
        """As the reference's ``BigGAN.forward(z, class_label, truncation)``: images in [-1, 1]."""
        if not 0 < truncation <= 1:
            raise ValueError(f"truncation must be in (0, 1], got {truncation}")
        return self.synthesise(z, self.embed_class(class_vector), truncation)
