"""Metropolis-adjusted Langevin (MALA) chains in latent space (see :mod:`promptgen.sampling.baselines`)."""

from __future__ import annotations

import math
import time

import torch
from rich.console import Console
from torch import Tensor

from promptgen.core.errors import PromptgenError
from promptgen.core.progress import progress_bar
from promptgen.sampling.cost import P_STAR, SamplerCost, per_second, place, synchronize
from promptgen.training.ebm import EnergyBasedModel

#: Acceptance rate MALA's step size is adapted towards (optimal for MALA in high
#: dimension, Roberts & Rosenthal 1998).
MALA_TARGET_ACCEPT = 0.574


def _potential_and_grad(ebm: EnergyBasedModel, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``U(z)`` (B,), ``∇U(z)`` (B, *latent_shape) and ``G(z)``, all detached."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        pot = ebm.potential(z)
        (grad,) = torch.autograd.grad(pot.total.sum(), z)
    return pot.total.detach().float(), _frozen_noise(ebm, grad.detach()), pot.images.detach()


def _frozen_noise(ebm: EnergyBasedModel, step: Tensor) -> Tensor:
    """``step`` with the generator's own noise coordinates set to 0: a chain moves the latent, not the noise."""
    if ebm.controlled >= step[0].numel():
        return step
    flat = step.flatten(1).clone()
    flat[:, ebm.controlled :] = 0
    return flat.view_as(step)


def _expand(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def _mala_step(
    ebm: EnergyBasedModel, g: torch.Generator, z: Tensor, grad: Tensor, images: Tensor, u_cur: Tensor, log_h: Tensor,
    dev: torch.device, dtype: torch.dtype,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One step of every chain: propose ``z' = z − h∇U(z) + sqrt(2h)·ξ`` and accept it with the
    Metropolis–Hastings probability α. Returns the chains' new ``z``, ``∇U``, images and ``U``, and α."""
    m = z.shape[0]
    h = _expand(log_h.exp(), z)
    xi = _frozen_noise(ebm, torch.randn((m, *z.shape[1:]), generator=g).to(device=dev, dtype=dtype))
    z_new = z - h * grad + (2 * h).sqrt() * xi
    u_new, grad_new, images_new = _potential_and_grad(ebm, z_new)
    # log q(z' | z) − log q(z | z'), Gaussian proposals of variance 2h (constants cancel).
    log_fwd = -0.5 * xi.flatten(1).float().pow(2).sum(1)
    back = (z - z_new + h * grad_new).flatten(1).float().pow(2).sum(1)
    log_bwd = -back / (4 * log_h.exp())
    log_alpha = u_cur - u_new + log_bwd - log_fwd
    ok = torch.isfinite(u_new) & torch.isfinite(grad_new.flatten(1)).all(1)
    log_alpha = torch.where(ok, torch.nan_to_num(log_alpha, nan=-math.inf), torch.full_like(log_alpha, -math.inf))
    alpha = log_alpha.clamp(max=0.0).exp()
    u = torch.rand(m, generator=g, dtype=torch.float64).to(dev)
    acc = torch.log(u) < log_alpha.double()
    z = torch.where(_expand(acc, z).bool(), z_new, z)
    grad = torch.where(_expand(acc, grad).bool(), grad_new, grad)
    images = torch.where(_expand(acc, images).bool(), images_new, images)
    u_cur = torch.where(acc, u_new, u_cur)
    return z, grad, images, u_cur, alpha


def langevin_sample(
    ebm: EnergyBasedModel,
    n: int,
    *,
    steps: int = 200,
    step_size: float = 0.05,
    adapt: bool = True,
    target_accept: float = MALA_TARGET_ACCEPT,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: bool = False,
    console: Console | None = None,
) -> tuple[Tensor, SamplerCost]:
    """``n`` images from ``n`` parallel MALA chains on ``U(z) = ½‖z‖² + Σ w_i E_i(G(z))``.

    Each chain starts at ``z ~ N(0, I)``; a step proposes
    ``z' = z − h∇U(z) + sqrt(2h)·ξ`` and accepts it with the Metropolis–Hastings
    probability ``min(1, exp(U(z) − U(z') + log q(z | z') − log q(z' | z)))``,
    ``q(b | a) = N(b; a − h∇U(a), 2h·I)``. With ``adapt``, each chain's ``h`` is
    tuned during the first half of the steps (Robbins–Monro on ``log h``
    towards ``target_accept``) and then frozen at its average over the last
    half of that burn-in, so the second half is a valid MCMC for ``p*``.

    Args:
        ebm: the generator and weighted energies.
        n: chains, one image each (the final states).
        steps: MALA steps per chain.
        step_size: initial (or, without ``adapt``, fixed) ``h``.
        adapt: adapt ``h`` during the first half of the steps.
        target_accept: acceptance probability the adaptation aims for.
        seed: seed of the CPU generator all noise is drawn from.
        batch_size: chains run at once; more are run batch after batch.
        device: where to run (default: where the ebm's generator is).
        progress: show a rich progress bar on ``console``.

    Returns:
        (images (n, C, H, W) in [0, 1] on the CPU, cost).
    """
    if n < 1:
        raise PromptgenError(f"n must be at least 1, got {n}")
    if steps < 1:
        raise PromptgenError(f"--steps must be at least 1, got {steps}")
    if not step_size > 0:
        raise PromptgenError(f"--step-size must be positive, got {step_size}")
    if not 0 < target_accept < 1:
        raise PromptgenError(f"target acceptance must be in (0, 1), got {target_accept}")
    dev = place(ebm, device)
    gen = ebm.generator
    shape = tuple(gen.latent_shape)
    dtype = gen.dtype
    g = torch.Generator().manual_seed(seed)
    adapt_steps = steps // 2 if adapt else 0
    average_from = adapt_steps // 2
    batches = math.ceil(n / batch_size)

    out: list[Tensor] = []
    final_h: list[Tensor] = []
    alpha_sum = 0.0
    alpha_count = 0
    synchronize(dev)
    t0 = time.perf_counter()
    bar = progress_bar(console, progress, "langevin")
    with bar:
        task = bar.add_task("", total=steps * batches)
        for b in range(batches):
            m = min(batch_size, n - b * batch_size)
            z = torch.randn((m, *shape), generator=g).to(device=dev, dtype=dtype)
            u_cur, grad, images = _potential_and_grad(ebm, z)
            log_h = torch.full((m,), math.log(step_size), device=dev)
            log_h_sum = torch.zeros(m, device=dev)
            window_alpha = 0.0
            for t in range(steps):
                z, grad, images, u_cur, alpha = _mala_step(ebm, g, z, grad, images, u_cur, log_h, dev, dtype)
                if t < adapt_steps:
                    rate = 1.0 / (1 + t / 10) ** 0.6  # Robbins–Monro gain, slow to decay: chains move a lot in burn-in
                    log_h = log_h + rate * (alpha - target_accept)
                    if t >= average_from:
                        log_h_sum = log_h_sum + log_h
                    if t == adapt_steps - 1:  # freeze at the average over the last half of the burn-in
                        log_h = log_h_sum / (adapt_steps - average_from)
                else:
                    alpha_sum += float(alpha.sum())
                    alpha_count += m
                    window_alpha = 0.9 * window_alpha + 0.1 * float(alpha.mean()) if t > adapt_steps else float(alpha.mean())
                if t % 5 == 4 or t == steps - 1:
                    phase = "adapting" if t < adapt_steps else f"MH acceptance {window_alpha:.2f}"
                    bar.update(task, completed=b * steps + t + 1, description=f"{phase}, h {float(log_h.exp().mean()):.3g}")
            out.append(images.clamp(0, 1).float().cpu())
            final_h.append(log_h.exp().cpu())
    synchronize(dev)
    seconds = time.perf_counter() - t0
    calls = (steps + 1) * n
    cost = SamplerCost(
        method="langevin",
        target=P_STAR,
        exact=False,
        accepted=n,
        draws=calls,
        draws_per_sample=calls / n,
        energy_evaluations=calls,
        gradient_evaluations=calls,
        seconds=seconds,
        samples_per_second=per_second(n, seconds),
        steps=steps,
        step_size=float(torch.cat(final_h).mean()),
        mh_acceptance=alpha_sum / alpha_count if alpha_count else None,
        device=str(dev),
        note=f"MCMC: final states of {n} chains after {steps} steps"
        + (f" (step size adapted in the first {adapt_steps})" if adapt_steps else "")
        + "; asymptotically exact",
    )
    return torch.cat(out), cost


__all__ = ["MALA_TARGET_ACCEPT", "langevin_sample"]
