"""A diffusion autoencoder as a promptgen generator, as the PromptGen paper controlled it.

The prompt's latent is the 512-d noise of the latent DDIM. The latent DDIM denoises it into a semantic code,
which is de-normalised with the stored mean and standard deviation; the image DDIM then runs from x_T,
conditioned on that code. x_T is the generator's own noise, which the prompt does not control: one seed
number per image (drawn with the latent, so ``sample --seed`` repeats it), or one fixed x_T for every image
of a prompt (``x_t_seed=``).

Step counts: ``steps``/``latent_steps`` while gradients flow into the latent (a prompt training; the paper
used 5 and 5), ``sample_steps``/``sample_latent_steps`` otherwise (sampling, eval, the closing check; the
paper used 100).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from promptgen import plugin

from .checkpoints import WHAT, DiffAEFiles
from .network import ConditionalUNet, LatentMLP
from .sampling import DDIM, ddim_timesteps, valid_counts


class DiffAESampler(nn.Module):
    """(z_latent (B, 512), x_T (B, 3, H, W)) -> images (B, 3, H, W) in [0, 1]."""

    def __init__(self, files: DiffAEFiles, *, steps: int, latent_steps: int, sample_steps: int, sample_latent_steps: int,
                 checkpointing: bool = True) -> None:
        super().__init__()
        p = files.preset
        with torch.device("meta"):  # no time spent initialising weights that the file replaces
            unet, latent_net = ConditionalUNet(p.unet), LatentMLP(p.latent)
        what = "the image U-Net of " + WHAT
        unet.load_state_dict(plugin.check_state_dict(files.unet, unet.state_dict(), source=files.source, what=what), assign=True)
        what = "the latent DDIM of " + WHAT
        latent_net.load_state_dict(plugin.check_state_dict(files.latent, latent_net.state_dict(), source=files.latent_source, what=what), assign=True)
        self.unet, self.latent_net = unet, latent_net
        self.register_buffer("conds_mean", files.mean.reshape(1, -1).clone())
        self.register_buffer("conds_std", files.std.reshape(1, -1).clone())
        self.image = nn.ModuleDict({str(n): DDIM(p.image_schedule, n, clip=True, total=p.total) for n in {steps, sample_steps}})
        self.latent = nn.ModuleDict({str(n): DDIM(p.latent_schedule, n, clip=False, total=p.total) for n in {latent_steps, sample_latent_steps}})
        self.steps, self.latent_steps = steps, latent_steps
        self.sample_steps, self.sample_latent_steps = sample_steps, sample_latent_steps
        self.checkpointing = checkpointing

    def semantic(self, z: Tensor, steps: int) -> Tensor:
        """The de-normalised semantic code for latent-DDIM noise ``z``."""
        code = self.latent[str(steps)](z, self.latent_net)
        return code * self.conds_std + self.conds_mean

    def forward(self, z: Tensor, x_t: Tensor) -> Tensor:
        training = torch.is_grad_enabled() and z.requires_grad
        steps, latent_steps = (self.steps, self.latent_steps) if training else (self.sample_steps, self.sample_latent_steps)
        cond = self.semantic(z, latent_steps)
        x = self.image[str(steps)](x_t, lambda x, t: self.unet(x, t, cond), self.checkpointing and training)
        return (x + 1) / 2


class DiffAEGenerator(plugin.ModuleGenerator):
    """The prompt controls the latent DDIM's noise (512,); x_T is seeded noise, or fixed by ``x_t_seed``."""

    def __init__(self, sampler: DiffAESampler, info: plugin.GeneratorInfo, x_t_seed: int | None = None) -> None:
        size = sampler.unet.cfg.image_size
        self.image_shape = (3, size, size)
        self.x_t_seed = x_t_seed
        self.noise_shapes = {"noise_seed": (1,)} if x_t_seed is None else None
        super().__init__(sampler, (sampler.latent_net.cfg.channels,), info)
        if x_t_seed is not None:
            fixed = torch.randn(self.image_shape, generator=torch.Generator().manual_seed(x_t_seed))
            sampler.register_buffer("fixed_x_t", fixed, persistent=False)

    def x_t(self, z: Tensor, noise: dict[str, Tensor] | None = None) -> Tensor:
        """The image DDIM's x_T for a batch of latents (and the generator's own noise)."""
        if self.x_t_seed is not None:
            fixed: Tensor = self.module.fixed_x_t  # type: ignore[assignment]
            return fixed.to(z.dtype).expand(z.shape[0], *self.image_shape)
        if noise is None:  # outside promptgen's sampling: the generator draws its own
            return torch.randn(z.shape[0], *self.image_shape, device=z.device, dtype=z.dtype)
        return plugin.seeded_noise(noise["noise_seed"], {"x_T": self.image_shape}, device=z.device, dtype=z.dtype)["x_T"]

    def decode(self, z: Tensor, noise: dict[str, Tensor] | None = None) -> Tensor:  # type: ignore[override]
        return self.module(z, self.x_t(z, noise))


def check_steps(options: object, total: int, spec_text: str) -> None:
    """Each step count is one ``ddimN`` spacing can give, at most the model's training steps (one line if not)."""
    for name in ("steps", "latent_steps", "sample_steps", "sample_latent_steps"):
        n = getattr(options, name)
        if n > total:
            raise plugin.SpecError(f"{spec_text!r}: {name}={n} is more than the {total} steps the model was trained with; give {name}=2..{total}")
        if ddim_timesteps(n, total) is None:
            near = sorted(valid_counts(total), key=lambda c: (abs(c - n), c))[:3]
            raise plugin.SpecError(
                f"{spec_text!r}: {name}={n} cannot be spaced evenly over {total} steps (DiffAE's ddimN spacing); give one of {', '.join(map(str, sorted(near)))}"
            )


def build(files: DiffAEFiles, options: object, info: plugin.GeneratorInfo, spec_text: str) -> DiffAEGenerator:
    """The generator for read and checked files with a spec's options."""
    check_steps(options, files.preset.total, spec_text)
    sampler = DiffAESampler(
        files, steps=options.steps, latent_steps=options.latent_steps, sample_steps=options.sample_steps,  # type: ignore[attr-defined]
        sample_latent_steps=options.sample_latent_steps, checkpointing=options.checkpointing,  # type: ignore[attr-defined]
    )
    size = files.preset.unet.image_size
    seed = options.x_t_seed  # type: ignore[attr-defined]
    x_t = f"x_T fixed for every image (x_t_seed={seed})" if seed is not None else "x_T drawn per image, not controlled"
    info = plugin.GeneratorInfo(
        name=info.name, resolution=(size, size), channels=3, licence=info.licence, source=info.source,
        description=f"{info.description}; the prompt controls the latent DDIM's {files.preset.latent.channels}-d noise; {x_t}; DDIM η=0, "
        f"{options.latent_steps}+{options.steps} steps training, {options.sample_latent_steps}+{options.sample_steps} sampling",  # type: ignore[attr-defined]
    )
    return DiffAEGenerator(sampler, info, seed)


__all__ = ["DiffAEGenerator", "DiffAESampler", "build", "check_steps"]
