"""A diffusers pipeline as a promptgen generator: G(x_T) is a deterministic DDIM (η = 0) from the noise x_T.

Two step counts: :attr:`DDIMSampler.steps` while gradients flow into x_T (a prompt training: every step runs
forward and backward, with activation checkpointing by default) and :attr:`DDIMSampler.sample_steps` otherwise
(sampling, evaluating, the closing check). A prompt trained with few steps is thereby judged, and used, with many.

What the prompt controls (``latent=``):

- ``full``: x_T itself, (C, H, W);
- ``blocks``: the means of its b×b squares, multiplied by b so that they are standard normal, (C, H/b, W/b).
  The rest of x_T (each pixel minus its square's mean) is noise the prompt does not control, drawn from one
  seed number per image. Since x_T is Gaussian, a square's mean and the deviations from it are independent,
  so ``x_T = upsample(u / b) + (n - upsample(mean_b(n)))`` with u and n standard normal is standard normal:
  the base generator is unchanged, and the flow's width does not grow with the image.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from promptgen.plugin import GeneratorInfo, ModuleGenerator, SpecError, seeded_noise

from .options import AUTO_FULL_LIMIT


def ddim_scheduler(config: dict[str, Any], steps: int) -> Any:
    """A ``DDIMScheduler`` from a saved scheduler configuration, set to ``steps`` steps (as ``DDIMPipeline`` builds it)."""
    from diffusers import DDIMScheduler
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # a DDPM config's extra keys are expected, not news
    try:
        scheduler = DDIMScheduler.from_config(config)
    finally:
        diffusers_logging.set_verbosity(level)
    scheduler.set_timesteps(steps)
    return scheduler


class DDIMSampler(nn.Module):
    """x_T (B, C, H, W) standard normal -> images (B, C, H, W) in [0, 1], by a DDIM with η = 0.

    The same computation as diffusers' ``DDIMPipeline(unet, scheduler)(num_inference_steps=n, eta=0)`` from the
    same x_T (``scripts/conformance.py`` measures it), written as a differentiable function of x_T.
    """

    def __init__(self, unet: nn.Module, scheduler_config: dict[str, Any], *, steps: int, sample_steps: int,
                 checkpointing: bool = True) -> None:
        super().__init__()
        self.unet = unet
        self.scheduler_config = dict(scheduler_config)
        self.steps, self.sample_steps, self.checkpointing = steps, sample_steps, checkpointing
        self.schedulers = {n: ddim_scheduler(self.scheduler_config, n) for n in {steps, sample_steps}}

    def _eps(self, x: Tensor, t: Tensor) -> Tensor:
        return self.unet(x, t).sample

    def run(self, x_t: Tensor, steps: int) -> Tensor:
        """The DDIM from ``x_t`` with ``steps`` steps, as pixels in [-1, 1] (the scheduler clips as configured)."""
        scheduler = self.schedulers.get(steps) or self.schedulers.setdefault(steps, ddim_scheduler(self.scheduler_config, steps))
        grad = torch.is_grad_enabled() and x_t.requires_grad
        x = x_t
        for t in scheduler.timesteps:
            if grad and self.checkpointing:
                from torch.utils.checkpoint import checkpoint

                eps = checkpoint(self._eps, x, t, use_reentrant=False)
            else:
                eps = self._eps(x, t)
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        return x

    def forward(self, x_t: Tensor) -> Tensor:
        steps = self.steps if torch.is_grad_enabled() and x_t.requires_grad else self.sample_steps
        return (self.run(x_t, steps) / 2 + 0.5).clamp(0, 1)


def combine(u: Tensor, rest: Tensor, block: int) -> Tensor:
    """x_T from the controlled block means ``u`` (B, C, H/b, W/b) and noise ``rest`` (B, C, H, W), both standard normal.

    >>> u, n = torch.randn(2, 1, 2, 2), torch.randn(2, 1, 4, 4)
    >>> x = combine(u, n, 2)
    >>> torch.allclose(F.avg_pool2d(x, 2) * 2, u, atol=1e-6)  # the blocks' means are the controlled part
    True
    """
    up = F.interpolate(u / block, scale_factor=block, mode="nearest")
    return rest - F.interpolate(F.avg_pool2d(rest, block), scale_factor=block, mode="nearest") + up


def auto_block(channels: int, height: int, width: int) -> int:
    """The smallest power-of-two block dividing the image that leaves at most :data:`AUTO_FULL_LIMIT` means (1: all of x_T).

    >>> auto_block(1, 28, 28), auto_block(3, 32, 32), auto_block(3, 256, 256)
    (1, 1, 8)
    """
    b = 1
    while channels * (height // b) * (width // b) > AUTO_FULL_LIMIT and height % (2 * b) == 0 and width % (2 * b) == 0:
        b *= 2
    return b


class DiffusersGenerator(ModuleGenerator):
    """A :class:`DDIMSampler` whose x_T is the prompt's latent (``block`` 1) or its block means plus seeded noise."""

    def __init__(self, sampler: DDIMSampler, info: GeneratorInfo, block: int = 1) -> None:
        cfg = sampler.unet.config
        size = cfg.sample_size if isinstance(cfg.sample_size, int) else tuple(cfg.sample_size)
        h, w = (size, size) if isinstance(size, int) else size
        self.image_shape = (int(cfg.in_channels), int(h), int(w))
        self.block = block
        c = self.image_shape[0]
        self.noise_shapes = None if block == 1 else {"noise_seed": (1,)}
        super().__init__(sampler, (c, h // block, w // block), info)

    def x_t(self, z: Tensor, noise: dict[str, Tensor] | None = None) -> Tensor:
        """The DDIM's starting noise for latents ``z`` (and the generator's own noise)."""
        z = z.reshape(z.shape[0], *self.latent_shape)
        if self.block == 1:
            return z
        if noise is None:  # outside promptgen's sampling: the generator draws its own
            rest = torch.randn(z.shape[0], *self.image_shape, device=z.device, dtype=z.dtype)
        else:
            rest = seeded_noise(noise["noise_seed"], {"x_T": self.image_shape}, device=z.device, dtype=z.dtype)["x_T"]
        return combine(z, rest, self.block)

    def decode(self, z: Tensor, noise: dict[str, Tensor] | None = None) -> Tensor:  # type: ignore[override]
        return self.module(self.x_t(z, noise))


def build(unet: nn.Module, scheduler_config: dict[str, Any], options: Any, info: GeneratorInfo, spec_text: str) -> DiffusersGenerator:
    """The generator for a loaded pipeline with a spec's options, checked against the pipeline (one line each)."""
    cfg = unet.config
    total = int(scheduler_config.get("num_train_timesteps", 1000))
    for name in ("steps", "sample_steps"):
        if getattr(options, name) > total:
            raise SpecError(f"{spec_text!r}: {name}={getattr(options, name)} is more than the {total} steps the model was trained with; give {name}=1..{total}")
    size = cfg.sample_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    c = int(cfg.in_channels)
    if options.latent == "full":
        if options.block:
            raise SpecError(f"{spec_text!r}: block={options.block} is for latent=blocks; give latent=blocks,block={options.block} or drop block=")
        block = 1
    elif options.block:
        block = options.block
    else:
        block = auto_block(c, h, w)
        if options.latent == "blocks" and block == 1:
            block = 2
    if h % block or w % block:
        divisors = [d for d in range(2, min(h, w) + 1) if h % d == 0 and w % d == 0]
        raise SpecError(f"{spec_text!r}: block={block} does not divide the {h}×{w} image; give block= one of {', '.join(map(str, divisors)) or 'none (use latent=full)'}")
    sampler = DDIMSampler(unet, scheduler_config, steps=options.steps, sample_steps=options.sample_steps, checkpointing=options.checkpointing)
    controlled = f"x_T ({c}×{h}×{w})" if block == 1 else f"the means of x_T's {block}×{block} squares ({c}×{h // block}×{w // block}; the rest is noise)"
    info = GeneratorInfo(
        name=info.name, resolution=(h, w), channels=c, licence=info.licence, source=info.source,
        description=f"{info.description}; DDIM η=0, {options.steps} steps training, {options.sample_steps} sampling; the prompt controls {controlled}",
    )
    return DiffusersGenerator(sampler, info, block)


__all__ = ["DDIMSampler", "DiffusersGenerator", "auto_block", "build", "combine", "ddim_scheduler"]
