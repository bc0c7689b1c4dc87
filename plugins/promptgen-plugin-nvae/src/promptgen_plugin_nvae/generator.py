"""NVAE as a promptgen :class:`~promptgen.plugin.Generator`: the flow controls the top latent group(s), the rest is noise."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from promptgen.plugin import GeneratorInfo, ModuleGenerator, Options, Spec, SpecError, local_file, seeded_noise
from promptgen_plugin_nvae.checkpoints import load_decoder
from promptgen_plugin_nvae.network import NVAEDecoder
from promptgen_plugin_nvae.zoo import ZooModel

CACHE_SUBDIR = "nvae"
#: Images per pass when re-estimating batch-norm statistics (NVAE's evaluate.py, sample mode).
BN_BATCH = 16
#: Uniforms for the output sample stay inside (0, 1), as NVAE's samplers draw them.
U_EPS = 1e-5
#: MNIST was trained padded to 32×32, its loss on the central 28×28 only: the border is cut off.
MNIST_CROP = 2


class NVAESampler(nn.Module):
    """Standard normal noise of every latent group → images in [0, 1], with the options baked in."""

    def __init__(self, net: NVAEDecoder, *, t: float, output: str) -> None:
        super().__init__()
        self.net, self.t, self.output = net, t, output
        self.crop = MNIST_CROP if net.cfg.dataset == "mnist" else 0

    def uniforms(self, logits: Tensor, seed: Tensor) -> tuple[Tensor, Tensor]:
        """Per-image uniforms for the output sample, each image's from its own seed number (``seed``: (B,))."""
        _, _, h, w = logits.shape
        shapes = {"mix": (self.net.cfg.num_mixture_dec, h, w), "val": (self.net.cfg.channels, h, w)}
        u = seeded_noise(seed, shapes, distribution="uniform", device=logits.device, dtype=logits.dtype)
        lo, hi = U_EPS, 1 - U_EPS
        return lo + (hi - lo) * u["mix"], lo + (hi - lo) * u["val"]

    def forward(self, eps: list[Tensor], seed: Tensor | None = None) -> Tensor:
        """``seed``: (B,) one number per image for the output sample's draw (None: drawn here)."""
        logits = self.net(eps, self.t)
        if self.output == "sample":
            if seed is None:
                seed = torch.randn(logits.shape[0])
            x = self.net.sample(logits, self.uniforms(logits, seed))
        else:
            x = self.net.mean(logits)
        if self.crop:
            x = x[:, :, self.crop : -self.crop, self.crop : -self.crop]
        return x


class NVAEGenerator(ModuleGenerator):
    """An NVAE whose first ``controlled`` latent groups are the prompt's latent and the others its own noise.

    One group controlled: ``latent_shape`` is that group's (C, H, W). More: the
    groups are ``latent_parts`` ``z0``, ``z1``... Lower groups are ``noise_shapes``
    ``z{k}`` (standard normal, mapped to their conditional priors at ``t``);
    with ``output=sample`` one more number per image, ``output_seed``, seeds
    the output distribution's draw. promptgen draws the noise with the latent.

    With ``noise="seeded"`` (the default) the lower groups are not in the
    latent: one number per image, ``noise_seed``, seeds them
    (:func:`promptgen.plugin.seeded_noise`). At 256² they are 6 million numbers
    per image, which as a latent would make every checkpoint's fixed evaluation
    noise gigabytes.
    """

    def __init__(self, sampler: NVAESampler, controlled: int, info: GeneratorInfo, noise_mode: str = "seeded") -> None:
        shapes = sampler.net.group_shapes
        self.noise_mode = noise_mode
        self.controlled = controlled
        if controlled == 1:
            latent_shape: tuple[int, ...] = tuple(shapes[0])
            self.latent_parts = None
        else:
            self.latent_parts = {f"z{i}": tuple(shapes[i]) for i in range(controlled)}
            latent_shape = (sum(math.prod(s) for s in self.latent_parts.values()),)
        self.lower_shapes = {f"z{i}": tuple(shapes[i]) for i in range(controlled, len(shapes))}
        noise: dict[str, tuple[int, ...]] = dict(self.lower_shapes)
        if noise_mode == "seeded" and noise:
            noise = {"noise_seed": (1,)}
        if sampler.output == "sample":
            noise["output_seed"] = (1,)
        self.noise_shapes = noise or None
        super().__init__(sampler, latent_shape, info)

    def decode(self, z: Tensor | dict[str, Tensor], noise: dict[str, Tensor] | None = None) -> Tensor:
        top = [z[f"z{i}"] for i in range(self.controlled)] if isinstance(z, dict) else [z.reshape(z.shape[0], *self.module.net.group_shapes[0])]
        b, ref = top[0].shape[0], top[0]
        shapes = self.module.net.group_shapes
        if noise is None:  # outside promptgen's sampling: the generator draws its own
            lower = [torch.randn(b, *s, device=ref.device, dtype=ref.dtype) for s in shapes[self.controlled :]]
            seeds = None
        else:
            if "noise_seed" in noise:
                drawn = seeded_noise(noise["noise_seed"], self.lower_shapes, device=ref.device, dtype=ref.dtype)
            else:
                drawn = noise
            lower = [drawn[name] for name in self.lower_shapes]
            seeds = noise["output_seed"].flatten() if "output_seed" in noise else None
        return self.module(top + lower, seeds)


@torch.no_grad()
def readjust_batch_norm(net: NVAEDecoder, passes: int, t: float, seed: int = 0) -> None:
    """Re-estimate every batch norm's running statistics as NVAE's ``--readjust_bn``: sample in train mode, then eval.

    ``passes`` batches of :data:`BN_BATCH` images at temperature ``t``; each pass moves the running
    mean and variance 5 % (the layers' momentum) towards the batch's. Seeded: the same statistics every time.
    """
    g = torch.Generator().manual_seed(seed)
    net.train()
    try:
        for _ in range(passes):
            net([torch.randn(BN_BATCH, *s, generator=g) for s in net.group_shapes], t)
    finally:
        net.eval()


def build_generator(spec: Spec, options: Options, model: ZooModel | None = None) -> NVAEGenerator:
    """A promptgen generator for ``nvae:path=FILE`` or a zoo name, with the spec's options (checked by the core)."""
    weights, what = (model.weights, f"{model.which} (checkpoint.pt)") if model else (None, "an NVAE checkpoint.pt")
    path = local_file(weights, path=options.path, subdir=CACHE_SUBDIR, spec=spec, what=what)
    net = load_decoder(path)
    n = net.num_groups
    if options.groups > n:
        raise SpecError(f"{spec.format()!r}: groups={options.groups} but this NVAE has {n} latent groups; give groups=1..{n}")
    if options.readjust_bn:
        readjust_batch_norm(net, options.readjust_bn, options.t)
    sampler = NVAESampler(net, t=options.t, output=options.output)
    c, h, w = net.output_shape()
    h, w = h - 2 * sampler.crop, w - 2 * sampler.crop
    top = net.group_shapes[0]
    controlled = " + ".join("×".join(map(str, s)) for s in net.group_shapes[: options.groups])
    info = GeneratorInfo(
        name=spec.name,
        resolution=(h, w),
        channels=c,
        licence=model.licence if model is not None else "see the checkpoint's source (NVIDIA's NVAE weights: NVIDIA Source Code License, non-commercial)",
        source=model.weights.page if model is not None else str(path),
        description=(model.description if model is not None else f"NVAE from {path.name}")
        + f", {n} latent groups (top {'×'.join(map(str, top))}); the prompt controls {controlled}, t={options.t:g}",
    )
    return NVAEGenerator(sampler, options.groups, info, options.noise)
