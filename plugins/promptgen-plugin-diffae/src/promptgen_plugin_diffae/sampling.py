"""DiffAE's two deterministic DDIMs (η = 0), as differentiable functions of their starting noise.

phizaz/diffae samples in two stages: a DDIM over the 512-d semantic code (the latent MLP, a constant
β = 0.008 schedule, no clipping), then, after de-normalising the code with the dataset's stored mean and
standard deviation, a DDIM over the image conditioned on it (a linear β schedule, x̂_0 clipped to [-1, 1]).
Both use ``ddimN`` spacing: the timesteps ``0, s, 2s, ...`` for the smallest integer stride s that gives N of
them, so not every N exists (:func:`ddim_timesteps` says which do).

The coefficients are computed in float64 and used in float32, in the order phizaz/diffae's code uses them,
so the same weights and noises give the same images (``scripts/conformance.py`` measures the difference).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn


def betas(schedule: str, steps: int = 1000) -> np.ndarray:
    """A named β schedule of phizaz/diffae: ``linear`` (Ho et al.) or ``constX`` (X · 1000/steps everywhere)."""
    scale = 1000 / steps
    if schedule == "linear":
        return np.linspace(scale * 0.0001, scale * 0.02, steps, dtype=np.float64)
    if schedule.startswith("const"):
        return np.array([scale * float(schedule[5:])] * steps, dtype=np.float64)
    raise ValueError(f"unknown beta schedule {schedule!r}; DiffAE uses 'linear' (images) and 'const0.008' (latents)")


def ddim_timesteps(n: int, total: int = 1000) -> list[int] | None:
    """The ``n`` timesteps of ``ddimN`` spacing, or None when no integer stride gives exactly ``n``.

    >>> ddim_timesteps(5), ddim_timesteps(4)[-1], len(ddim_timesteps(100)), ddim_timesteps(999)
    ([0, 200, 400, 600, 800], 750, 100, None)
    """
    for stride in range(1, total):
        if len(range(0, total, stride)) == n:
            return list(range(0, total, stride))
    return None


def valid_counts(total: int = 1000) -> list[int]:
    """Every step count ``ddimN`` spacing can give for a model trained with ``total`` steps."""
    return sorted({len(range(0, total, s)) for s in range(1, total)})


class DDIM(nn.Module):
    """x_T -> x_0 by a deterministic DDIM over the ``ddimN`` timesteps of a β schedule.

    ``model(x, t)`` predicts the noise ε, with ``t`` the original timesteps (B,) as int64.
    """

    def __init__(self, schedule: str, n: int, *, clip: bool, total: int = 1000) -> None:
        super().__init__()
        kept = ddim_timesteps(n, total)
        if kept is None:
            raise ValueError(f"{n} DDIM steps cannot be spaced evenly over {total}")
        alphas_cumprod = np.cumprod(1.0 - betas(schedule, total))
        # The spaced process: the kept steps' ᾱ (recomputed through their betas, as phizaz/diffae does).
        last, spaced_betas = 1.0, []
        for i in kept:
            spaced_betas.append(1 - alphas_cumprod[i] / last)
            last = alphas_cumprod[i]
        ac = np.cumprod(1.0 - np.array(spaced_betas))
        ac_prev = np.append(1.0, ac[:-1])
        f32 = lambda a: torch.from_numpy(np.asarray(a)).float()
        self.register_buffer("timesteps", torch.tensor(kept, dtype=torch.int64), persistent=False)
        self.register_buffer("alpha_bar", f32(ac), persistent=False)
        self.register_buffer("alpha_bar_prev", f32(ac_prev), persistent=False)
        self.register_buffer("sqrt_recip", f32(np.sqrt(1.0 / ac)), persistent=False)
        self.register_buffer("sqrt_recipm1", f32(np.sqrt(1.0 / ac - 1)), persistent=False)
        self.clip = clip

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    def step(self, eps: Tensor, x: Tensor, i: int) -> Tensor:
        """x at spaced step ``i`` and the predicted noise -> x at step ``i - 1``."""
        shape = (-1,) + (1,) * (x.dim() - 1)
        recip, recipm1 = self.sqrt_recip[i].reshape(shape), self.sqrt_recipm1[i].reshape(shape)
        x0 = recip * x - recipm1 * eps
        if self.clip:
            x0 = x0.clamp(-1, 1)
        eps = (recip * x - x0) / recipm1
        prev = self.alpha_bar_prev[i].reshape(shape)
        return x0 * torch.sqrt(prev) + torch.sqrt(1 - prev) * eps

    def forward(self, x: Tensor, model: Callable[[Tensor, Tensor], Tensor], checkpointing: bool = False) -> Tensor:
        """Runs every step; ``checkpointing`` (with gradients on) recomputes each step's activations in the backward
        pass. Gradients may flow in through ``model``'s closure (the semantic code) even when ``x`` needs none."""
        for i in reversed(range(self.steps)):
            t = self.timesteps[i].repeat(x.shape[0])
            if checkpointing and torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint

                eps = checkpoint(model, x, t, use_reentrant=False)
            else:
                eps = model(x, t)
            x = self.step(eps, x, i)
        return x


__all__ = ["DDIM", "betas", "ddim_timesteps", "valid_counts"]
