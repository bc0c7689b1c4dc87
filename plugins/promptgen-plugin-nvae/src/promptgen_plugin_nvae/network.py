"""NVAE's generative path (the top-down decoder) in plain PyTorch, with the module names of NVlabs/NVAE.

Only what sampling needs is built: the learned input of the top-down tower
(``prior_ftr0``), the decoder tower (``dec_tower``: residual cells, up-sampling
cells and the combiners that merge each latent group in), the conditional
priors of the lower groups (``dec_sampler``), the post-processing cells
(``post_process``) and the head of the output distribution
(``image_conditional``); ``stem_decoder`` for a one-group model. Parameter and
buffer names equal those of the official ``AutoEncoder``'s state dict, so the
decoder's part of an official checkpoint loads key for key. The encoder, its
normalising flows and the optimiser state in the file are not read.

Reimplemented independently in plain PyTorch from the paper (Vahdat and
Kautz, NeurIPS 2020) and the official code's behaviour: module names, their
order and the numerical details (residual scale, σ floor, clamps) follow
NVlabs/NVAE so that its checkpoints load and its images are reproduced
(`scripts/conformance.py`); no function of it is copied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Channel growth per spatial halving (and shrink per doubling), fixed in NVAE.
CHANNEL_MULT = 2
BN_EPS = 1e-5
BN_MOMENTUM = 0.05

#: The decoder's cells for each ``--arch_instance`` of the official training script:
#: (normal_dec, up_dec, normal_post, up_post), each a tuple of operation names.
_RES = {"res_elu": "res_elu", "res_bnelu": "res_bnelu", "res_bnswish": "res_bnswish"}
ARCH_DECODER_CELLS: dict[str, dict[str, tuple[str, ...]]] = {
    **{name: {k: (op, op) for k in ("normal_dec", "up_dec", "normal_post", "up_post")} for name, op in _RES.items()},
    "mbconv_sep": {"normal_dec": ("mconv_e6k5g0",), "up_dec": ("mconv_e6k5g0",), "normal_post": ("mconv_e3k5g0",), "up_post": ("mconv_e3k5g0",)},
    "mbconv_sep11": {"normal_dec": ("mconv_e6k11g0",), "up_dec": ("mconv_e6k11g0",), "normal_post": ("mconv_e3k5g0",), "up_post": ("mconv_e3k5g0",)},
    "res_mbconv": {"normal_dec": ("mconv_e6k5g0",), "up_dec": ("mconv_e6k5g0",), "normal_post": ("mconv_e3k5g0",), "up_post": ("mconv_e3k5g0",)},
    "res53_mbconv": {"normal_dec": ("mconv_e6k5g0",), "up_dec": ("mconv_e6k5g0",), "normal_post": ("mconv_e3k5g0",), "up_post": ("mconv_e3k5g0",)},
    "res35_mbconv": {"normal_dec": ("mconv_e6k5g0",), "up_dec": ("mconv_e6k5g0",), "normal_post": ("mconv_e3k5g0",), "up_post": ("mconv_e3k5g0",)},
    "res55_mbconv": {"normal_dec": ("mconv_e6k5g0",), "up_dec": ("mconv_e6k5g0",), "normal_post": ("mconv_e3k5g0",), "up_post": ("mconv_e3k5g0",)},
    "mbconv_res": {k: ("res_bnswish", "res_bnswish") for k in ("normal_dec", "up_dec", "normal_post", "up_post")},
    "mbconv_den": {"normal_dec": ("mconv_e6k5g0",), "up_dec": ("mconv_e6k5g0",), "normal_post": ("mconv_e3k5g8",), "up_post": ("mconv_e3k5g8",)},
}
#: Inverted-residual operations: name -> (expansion, kernel, groups; 0 = depthwise).
MBCONV = {"mconv_e6k5g0": (6, 5, 0), "mconv_e3k5g0": (3, 5, 0), "mconv_e3k5g8": (3, 5, 8), "mconv_e6k11g0": (6, 11, 0)}
OPERATIONS = {"res_elu", "res_bnelu", "res_bnswish", "res_bnswish5", *MBCONV}

#: Image size of each ``--dataset`` of the official training script (MNIST is padded to 32).
DATASET_SIZES = {"mnist": 32, "omniglot": 32, "stacked_mnist": 32, "cifar10": 32, "ffhq": 256}
BINARY_DATASETS = {"mnist", "omniglot"}


def dataset_size(dataset: str) -> int | None:
    if dataset in DATASET_SIZES:
        return DATASET_SIZES[dataset]
    if dataset.startswith(("celeba", "imagenet", "lsun")):
        tail = dataset.rsplit("_", 1)[-1]
        return int(tail) if tail.isdigit() else None
    return None


def groups_per_scale(num_scales: int, num_groups: int, adaptive: bool, minimum: int = 1) -> list[int]:
    """Latent groups at each scale, finest first (halved per coarser scale with ``ada_groups``)."""
    out, n = [], num_groups
    for _ in range(num_scales):
        out.append(n)
        if adaptive:
            n = max(minimum, n // 2)
    return out


@dataclass(frozen=True)
class NVAEConfig:
    """The decoder's architecture, from the training arguments stored in a checkpoint."""

    dataset: str
    num_latent_scales: int
    num_groups_per_scale: int
    num_latent_per_group: int
    num_channels_enc: int
    num_channels_dec: int
    num_preprocess_blocks: int
    num_postprocess_blocks: int
    num_postprocess_cells: int
    num_cell_per_cond_dec: int
    arch_instance: str = "res_mbconv"
    ada_groups: bool = False
    min_groups_per_scale: int = 1
    num_mixture_dec: int = 10
    use_se: bool = True
    num_x_bits: int = 8

    @property
    def input_size(self) -> int:
        size = dataset_size(self.dataset)
        if size is None:
            raise ValueError(f"unknown dataset {self.dataset!r}")
        return size

    @property
    def binary(self) -> bool:
        return self.dataset in BINARY_DATASETS

    @property
    def channels(self) -> int:
        return 1 if self.binary else 3

    @property
    def groups(self) -> list[int]:
        """Groups per scale, coarsest (top) first, as the decoder visits them."""
        g = groups_per_scale(self.num_latent_scales, self.num_groups_per_scale, self.ada_groups, self.min_groups_per_scale)
        return g[::-1]

    @property
    def top_size(self) -> int:
        return self.input_size // 2 ** (self.num_preprocess_blocks + self.num_latent_scales - 1)

    def group_shapes(self) -> list[tuple[int, int, int]]:
        """(channels, height, width) of every latent group, top first."""
        out = []
        for s, n in enumerate(self.groups):
            r = self.top_size * 2**s
            out += [(self.num_latent_per_group, r, r)] * n
        return out

    @property
    def vanilla(self) -> bool:
        return self.num_latent_scales == 1 and self.num_groups_per_scale == 1


def swish(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)


def soft_clamp5(x: Tensor) -> Tensor:
    """A differentiable clamp to (-5, 5): 5·tanh(x/5), as NVAE's distributions apply to means and log-scales."""
    return 5.0 * torch.tanh(x / 5.0)


class WNConv2d(nn.Conv2d):
    """A convolution with NVAE's weight normalisation: each output filter scaled to norm exp(log_weight_norm)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1, groups: int = 1, bias: bool = False, weight_norm: bool = True) -> None:
        super().__init__(cin, cout, k, stride, padding, dilation, groups, bias)
        self.log_weight_norm = nn.Parameter(torch.zeros(cout, 1, 1, 1)) if weight_norm else None

    def normalized_weight(self) -> Tensor:
        if self.log_weight_norm is None:
            return self.weight
        norm = self.weight.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        return torch.exp(self.log_weight_norm) * self.weight / (norm + 1e-5)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.normalized_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)


class WrappedBN(nn.Module):
    """A batch norm one level down (``.bn``), where NVAE wraps its synchronised batch norm."""

    def __init__(self, c: int, eps: float = BN_EPS) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c, eps=eps, momentum=BN_MOMENTUM)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(x)


class BNSwish(nn.BatchNorm2d):
    """Batch norm followed by swish, one module (NVAE's fused ``SyncBatchNormSwish``)."""

    def __init__(self, c: int) -> None:
        super().__init__(c, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: Tensor) -> Tensor:
        return swish(super().forward(x))


class ActConv(nn.Module):
    """(batch norm) → activation → (2× nearest up-sampling) → weight-normalised convolution."""

    def __init__(self, cin: int, cout: int, stride: int, kind: str, k: int = 3, dilation: int = 1) -> None:
        super().__init__()
        self.kind, self.upsample = kind, stride == -1
        pad = dilation * (k - 1) // 2
        if kind == "bnelu":
            self.bn = WrappedBN(cin)
        elif kind == "bnswish":
            self.bn_act = BNSwish(cin)
        self.conv_0 = WNConv2d(cin, cout, k, abs(stride), pad, dilation, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "elu":
            x = F.elu(x)
        elif self.kind == "bnelu":
            x = F.elu(self.bn(x))
        else:
            x = self.bn_act(x)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv_0(x)


class ConvBNSwish(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Sequential(WNConv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, weight_norm=False), BNSwish(cout))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class MBConv(nn.Module):
    """Inverted residual: BN → 1×1 expand (BN, swish) → k×k depthwise (BN, swish) → 1×1 project → BN."""

    def __init__(self, cin: int, cout: int, stride: int, ex: int, k: int, g: int) -> None:
        super().__init__()
        hidden = round(cin * ex)
        layers: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest")] if stride == -1 else []
        layers += [
            WrappedBN(cin),
            ConvBNSwish(cin, hidden, k=1),
            ConvBNSwish(hidden, hidden, k=k, stride=abs(stride), groups=hidden if g == 0 else g),
            WNConv2d(hidden, cout, 1, weight_norm=False),
            WrappedBN(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


def operation(name: str, cin: int, cout: int, stride: int) -> nn.Module:
    if name in MBCONV:
        return MBConv(cin, cout, stride, *MBCONV[name])
    if name == "res_bnswish5":
        return ActConv(cin, cout, stride, "bnswish", k=3, dilation=2)
    return ActConv(cin, cout, stride, name.removeprefix("res_"))


class SE(nn.Module):
    """Squeeze and excitation: channel gates from the spatial mean."""

    def __init__(self, c: int) -> None:
        super().__init__()
        hidden = max(c // 16, 4)
        self.se = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(), nn.Linear(hidden, c), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.se(x.mean(dim=(2, 3)))[:, :, None, None]


class UpSkip(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class Cell(nn.Module):
    """A residual cell: skip + 0.1 · SE(ops(x)); an up-sampling cell halves the channels."""

    def __init__(self, cin: int, cout: int, cell_type: str, ops: tuple[str, ...], use_se: bool) -> None:
        super().__init__()
        self.cell_type = cell_type
        stride = -1 if cell_type.startswith("up") else 1
        self.skip = nn.Sequential(UpSkip(), WNConv2d(cin, cin // CHANNEL_MULT, 1)) if stride == -1 else nn.Identity()
        self._ops = nn.ModuleList([operation(op, cin if i == 0 else cout, cout, stride if i == 0 else 1) for i, op in enumerate(ops)])
        self.se = SE(cout) if use_se else None

    def forward(self, x: Tensor) -> Tensor:
        skip = self.skip(x)
        for op in self._ops:
            x = op(x)
        if self.se is not None:
            x = self.se(x)
        return skip + 0.1 * x


class DecCombiner(nn.Module):
    """Merges a latent group into the top-down features: 1×1 convolution of their concatenation."""

    cell_type = "combiner_dec"

    def __init__(self, c: int, cz: int) -> None:
        super().__init__()
        self.conv = WNConv2d(c + cz, c, 1, bias=True)

    def forward(self, s: Tensor, z: Tensor) -> Tensor:
        return self.conv(torch.cat([s, z], dim=1))


def _elu_conv(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.ELU(), WNConv2d(cin, cout, k, padding=(k - 1) // 2, bias=True))


class NVAEDecoder(nn.Module):
    """NVAE's top-down path: latent groups (standard normal noise each) → parameters of p(x | z)."""

    def __init__(self, cfg: NVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        cells = ARCH_DECODER_CELLS[cfg.arch_instance] if isinstance(cfg.arch_instance, str) else cfg.arch_instance
        unknown = {op for ops in cells.values() for op in ops} - OPERATIONS
        if unknown:
            raise ValueError(f"unsupported decoder operations {sorted(unknown)}")
        L, S, P = cfg.num_latent_per_group, cfg.num_latent_scales, cfg.num_preprocess_blocks
        mult = CHANNEL_MULT ** (P + S - 1)
        r = cfg.top_size
        self.prior_ftr0 = nn.Parameter(torch.zeros(int(mult * cfg.num_channels_dec), r, r))
        self.dec_sampler = nn.ModuleList()
        self.dec_tower = nn.ModuleList()
        for s, n in enumerate([] if cfg.vanilla else cfg.groups):
            c = int(cfg.num_channels_dec * mult)
            for g in range(n):
                if not (s == 0 and g == 0):
                    self.dec_sampler.append(_elu_conv(c, 2 * L, 1))
                    for _ in range(cfg.num_cell_per_cond_dec):
                        self.dec_tower.append(Cell(c, c, "normal_dec", cells["normal_dec"], cfg.use_se))
                self.dec_tower.append(DecCombiner(c, L))
            if s < S - 1:
                self.dec_tower.append(Cell(c, c // CHANNEL_MULT, "up_dec", cells["up_dec"], cfg.use_se))
                mult = mult / CHANNEL_MULT
        if cfg.vanilla:
            self.stem_decoder = WNConv2d(L, int(mult * cfg.num_channels_enc), 1, bias=True)
        self.post_process = nn.ModuleList()
        for _ in range(cfg.num_postprocess_blocks):
            for c_i in range(cfg.num_postprocess_cells):
                c = int(cfg.num_channels_dec * mult)
                if c_i == 0:
                    self.post_process.append(Cell(c, c // CHANNEL_MULT, "up_post", cells["up_post"], cfg.use_se))
                    mult = mult / CHANNEL_MULT
                else:
                    self.post_process.append(Cell(c, c, "normal_post", cells["normal_post"], cfg.use_se))
        c_out = 1 if cfg.binary else (6 if cfg.num_mixture_dec == 1 else 10 * cfg.num_mixture_dec)
        self.image_conditional = _elu_conv(int(cfg.num_channels_dec * mult), c_out, 3)
        self.group_shapes = cfg.group_shapes()

    @property
    def num_groups(self) -> int:
        return len(self.group_shapes)

    def forward(self, eps: list[Tensor], t: float = 1.0) -> Tensor:
        """Logits of p(x | z) for standard normal ``eps`` (one (B, *shape) per group, top first) at temperature ``t``.

        Group 0 is z0 = (1 + 0.01)·t·eps0 (NVAE's N(0, 1) prior, with its floor of 0.01 on σ); group i
        is drawn from its conditional prior: z_i = μ_i + t·σ_i·eps_i, μ_i and σ_i = exp(log σ_i) + 0.01
        (each soft-clamped to ±5) computed from the features above it.
        """
        if len(eps) != self.num_groups:
            raise ValueError(f"expected {self.num_groups} latent groups, got {len(eps)}")
        z = (1.0 + 1e-2) * t * eps[0]
        s = self.prior_ftr0.unsqueeze(0).expand(z.shape[0], -1, -1, -1)
        idx = 0
        for cell in self.dec_tower:
            if cell.cell_type == "combiner_dec":
                if idx > 0:
                    mu, log_sigma = self.dec_sampler[idx - 1](s).chunk(2, dim=1)
                    sigma = torch.exp(soft_clamp5(log_sigma)) + 1e-2
                    z = soft_clamp5(mu) + t * sigma * eps[idx]
                s = cell(s, z)
                idx += 1
            else:
                s = cell(s)
        if self.cfg.vanilla:
            s = self.stem_decoder(z)
        for cell in self.post_process:
            s = cell(s)
        return self.image_conditional(s)

    # The output distribution p(x | z) ---------------------------------------------------------------

    def mean(self, logits: Tensor) -> Tensor:
        """The decoder's output mean in [0, 1] (NVAE's ``DiscMixLogistic.mean``; the Bernoulli's p for MNIST)."""
        if self.cfg.binary:
            return torch.sigmoid(logits)
        if self.cfg.num_mixture_dec == 1:
            return (soft_clamp5(logits[:, :3]).clamp(-1, 1) + 1) / 2
        m = self.cfg.num_mixture_dec
        means, _, coeffs, logit_probs = self._mixture(logits, m)
        sel = torch.softmax(logit_probs, dim=1).unsqueeze(1)
        return self._channels((means * sel).sum(2), (coeffs * sel).sum(2), None)

    def sample(self, logits: Tensor, uniforms: tuple[Tensor, Tensor], t: float = 1.0) -> Tensor:
        """A sample of p(x | z) in [0, 1] from uniforms in (0, 1): (B, M, H, W) for the component, (B, C, H, W) for the value.

        As NVAE's ``DiscMixLogistic.sample`` (Gumbel-max choice of the component, logistic noise, channels
        coupled linearly), ``NormalDecoder.sample`` or a Bernoulli draw; ``t`` sharpens the mixture as there.
        """
        u_mix, u = uniforms
        if self.cfg.binary:
            return (u < torch.sigmoid(logits)).to(logits.dtype)
        if self.cfg.num_mixture_dec == 1:
            mu, sigma = soft_clamp5(logits[:, :3]), torch.exp(soft_clamp5(logits[:, 3:6])) + 1e-2
            normal = math.sqrt(2.0) * torch.erfinv(2 * u - 1)
            return ((mu + sigma * normal).clamp(-1, 1) + 1) / 2
        m = self.cfg.num_mixture_dec
        means, log_scales, coeffs, logit_probs = self._mixture(logits, m)
        gumbel = -torch.log(-torch.log(u_mix))
        sel = F.one_hot(torch.argmax(logit_probs / t + gumbel, 1), m).permute(0, 3, 1, 2).to(logits.dtype).unsqueeze(1)
        mean, log_scale, coeff = (means * sel).sum(2), (log_scales * sel).sum(2), (coeffs * sel).sum(2)
        x = mean + torch.exp(log_scale) / t * (torch.log(u) - torch.log(1.0 - u))
        return self._channels(x, coeff, None)

    @staticmethod
    def _mixture(logits: Tensor, m: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        b, _, h, w = logits.shape
        rest = logits[:, m:].reshape(b, 3, 3 * m, h, w)
        return rest[:, :, :m], rest[:, :, m : 2 * m].clamp(min=-7.0), torch.tanh(rest[:, :, 2 * m :]), logits[:, :m]

    @staticmethod
    def _channels(x: Tensor, coeff: Tensor, _: None) -> Tensor:
        r = x[:, 0].clamp(-1, 1)
        g = (x[:, 1] + coeff[:, 0] * r).clamp(-1, 1)
        b = (x[:, 2] + coeff[:, 1] * r + coeff[:, 2] * g).clamp(-1, 1)
        return (torch.stack([r, g, b], 1) + 1) / 2

    def output_shape(self) -> tuple[int, int, int]:
        size = self.cfg.input_size
        return (self.cfg.channels, size, size)
