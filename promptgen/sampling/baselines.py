"""Exact-but-slow alternatives to a trained prompt, for the same energy-based model.

    p*(z)  ∝  N(z; 0, I) · exp( − Σ_i w_i · E_i(G(z)) )

- :func:`rejection_sample` draws ``z ~ N(0, I)``, decodes and keeps each sample
  with a probability: ``exp(−Σ w_i (E_i − b_i))`` with ``b_i`` the energy's
  ``lower_bound()`` (exact samples of ``p*``), or the product of the energies'
  ``acceptance(images)`` (keep the images that have the attribute, which is what
  a user does by hand). Its cost grows as one over the acceptance rate.
- :func:`langevin_sample` runs Metropolis-adjusted Langevin (MALA) chains in
  latent space on ``U(z) = ½‖z‖² + Σ w_i E_i(G(z))``; every step costs one
  generator pass, one pass of every energy and their gradients.
- :func:`flow_sample` times the trained flow (one generator pass per image) so
  the three can be compared in one :class:`SamplerCost` table.

All noise is drawn on the CPU from ``seed`` (as in
:func:`promptgen.artifacts.prompt.sample_images`), so results repeat across devices.
"""

from __future__ import annotations

import math
import time
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from torch import Tensor

from promptgen.core.device import resolve_device
from promptgen.core.errors import PromptgenError
from promptgen.core.progress import progress_bar
from promptgen.core.protocols import Generator
from promptgen.training.ebm import EnergyBasedModel

#: Acceptance rate MALA's step size is adapted towards (optimal for MALA in high
#: dimension, Roberts & Rosenthal 1998).
MALA_TARGET_ACCEPT = 0.574

METHODS = ("flow", "rejection", "langevin")
ACCEPT_MODES = ("auto", "energy", "attribute")

P_STAR = "p*(z) ∝ N(z; 0, I)·exp(−Σ w·E)"


class SamplerCost(BaseModel):
    """What one sampling run cost, comparable across methods.

    Attributes:
        method: ``flow``, ``rejection`` or ``langevin``.
        accept: for rejection, how samples were kept: ``energy`` or ``attribute``.
        target: the distribution the method samples.
        exact: True when the images are exact, independent draws of ``target``.
        accepted: images returned.
        draws: generator calls in total (latents decoded, including rejected ones,
            a rejection pilot batch, and every Langevin proposal).
        draws_per_sample: ``draws / accepted``: generator calls per image.
        energy_evaluations: samples on which the energies (or their
            ``acceptance``) were evaluated.
        gradient_evaluations: samples on which ``∇U`` was computed (Langevin:
            ``(steps + 1) × n``, the extra one being the chains' starting points).
        acceptance_rate: rejection: the share of candidate draws kept.
        seconds: wall-clock time of sampling (models already loaded).
        samples_per_second: ``accepted / seconds``.
        steps: Langevin steps per chain.
        step_size: Langevin step size after adaptation (mean over chains).
        mh_acceptance: Langevin: mean Metropolis–Hastings acceptance probability
            once the step size is frozen (all steps when it is not adapted).
        device: where it ran.
        note: anything a reader of the numbers must know.
    """

    model_config = ConfigDict(extra="forbid")

    method: Literal["flow", "rejection", "langevin"]
    accept: Literal["energy", "attribute"] | None = None
    target: str
    exact: bool
    accepted: int = Field(ge=0)
    draws: int = Field(ge=0)
    draws_per_sample: float
    energy_evaluations: int = Field(ge=0)
    gradient_evaluations: int = Field(default=0, ge=0)
    acceptance_rate: float | None = None
    seconds: float
    samples_per_second: float
    steps: int | None = None
    step_size: float | None = None
    mh_acceptance: float | None = None
    device: str
    note: str = ""


def _per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.inf


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _place(ebm: EnergyBasedModel, device: torch.device | str | None) -> torch.device:
    """The device to run on: the ebm's own unless ``device`` is given (then the ebm is moved there)."""
    if device is None:
        return torch.device(ebm.generator.device)
    dev = resolve_device(device)
    ebm.to(dev)
    return dev


# -- the flow ----------------------------------------------------------------------------------------------------------


def flow_sample(
    generator: Generator, n: int, *, seed: int = 0, device: torch.device | str | None = None, batch_size: int = 500
) -> tuple[Tensor, SamplerCost]:
    """Sample a trained prompt (or any generator) in one pass per image, and time it.

    The images are those of :func:`promptgen.artifacts.prompt.sample_images` for the same
    ``seed``. Returns (images (n, C, H, W) in [0, 1] on the CPU, cost).
    """
    from promptgen.artifacts.prompt import Prompt, sample_images

    if n < 1:
        raise PromptgenError(f"n must be at least 1, got {n}")
    dev = resolve_device(device) if device is not None else torch.device(generator.device)
    generator.to(dev)
    _sync(dev)
    t0 = time.perf_counter()
    images = sample_images(generator, n, seed=seed, device=dev, batch_size=batch_size)
    _sync(dev)
    seconds = time.perf_counter() - t0
    is_prompt = isinstance(generator, Prompt)
    cost = SamplerCost(
        method="flow",
        target=P_STAR if is_prompt else f"the generator {generator.info.name!r} itself",
        exact=not is_prompt,
        accepted=n,
        draws=n,
        draws_per_sample=1.0,
        energy_evaluations=0,
        seconds=seconds,
        samples_per_second=_per_second(n, seconds),
        device=str(dev),
        note="approximate: a flow trained by reverse KL" if is_prompt else "a base generator, no flow",
    )
    return images, cost


# -- rejection sampling ------------------------------------------------------------------------------------------------


def _energies(ebm: EnergyBasedModel, images: Tensor, z: Tensor) -> list[Tensor]:
    out = []
    for term in ebm.terms:
        e = term.energy(images, z)
        if e.shape != (z.shape[0],):
            raise RuntimeError(f"energy {term.label!r} returned shape {tuple(e.shape)}, expected {(z.shape[0],)}")
        out.append(e.float())
    return out


def _weighted(ebm: EnergyBasedModel, energies: list[Tensor], which: list[int], batch: int, device: torch.device) -> Tensor:
    total = torch.zeros(batch, device=device)
    for i in which:
        total = total + ebm.terms[i].weight * energies[i]
    return total


def rejection_sample(
    ebm: EnergyBasedModel,
    n: int,
    *,
    accept: str = "auto",
    seed: int = 0,
    batch_size: int = 256,
    max_draws: int = 1_000_000,
    device: torch.device | str | None = None,
    progress: bool = False,
    console: Console | None = None,
    margin: float = 1.0,
) -> tuple[Tensor, SamplerCost]:
    """``n`` images by rejection sampling from the generator's own distribution.

    Args:
        ebm: the generator and weighted energies (e.g. ``prompt_ebm(load_prompt(path))``).
        n: images to return.
        accept: ``"energy"``: keep with probability ``exp(−Σ w_i (E_i − b_i))``,
            ``b_i`` the energy's ``lower_bound()``, which samples ``p*`` exactly;
            an energy without ``lower_bound()`` has its bound estimated from a
            pilot batch (minimum minus ``margin`` nats) and the result is marked
            ``exact=False``. ``"attribute"``: keep with probability the product
            of the energies' ``acceptance(images)`` (the generator conditioned
            on the attribute, not ``p*``). ``"auto"``: attribute when every
            energy has ``acceptance``, else energy.
        seed: seed of the CPU generator the latents and uniforms are drawn from.
        batch_size: latents decoded at once.
        max_draws: give up (PromptgenError) after this many latents.
        device: where to run (default: where the ebm's generator is).
        progress: show a rich progress bar on ``console``.
        margin: nats subtracted from a pilot minimum to make an estimated bound.

    Returns:
        (images (n, C, H, W) in [0, 1] on the CPU, cost).
    """
    if n < 1:
        raise PromptgenError(f"n must be at least 1, got {n}")
    if accept not in ACCEPT_MODES:
        raise PromptgenError(f"unknown --accept {accept!r}; use {', '.join(ACCEPT_MODES)}")
    if max_draws < 1 or batch_size < 1:
        raise PromptgenError("max_draws and batch_size must be at least 1")
    terms = ebm.terms
    lacking_acceptance = [t.label for t in terms if not t.caps.accepting]
    mode = accept if accept != "auto" else ("energy" if lacking_acceptance else "attribute")
    if mode == "attribute" and lacking_acceptance:
        raise PromptgenError(
            f"--accept attribute needs every energy to say which images have its attribute, and "
            f"{', '.join(repr(x) for x in lacking_acceptance)} cannot (no acceptance()); use --accept energy"
        )

    dev = _place(ebm, device)
    gen = ebm.generator
    shape = tuple(gen.latent_shape)
    dtype = gen.dtype
    g = torch.Generator().manual_seed(seed)
    draws = candidates = kept_total = energy_evals = 0
    exact = True
    note = ""
    shift = 0.0  # Σ w_i b_i: log-acceptance is −(Σ w_i E_i − shift)
    violations = 0

    _sync(dev)
    t0 = time.perf_counter()
    if mode == "energy":
        bounded = [i for i, t in enumerate(terms) if t.caps.bounded]
        unbounded = [i for i in range(len(terms)) if i not in bounded]
        shift = sum(terms[i].weight * float(terms[i].caps.lower_bound() or 0.0) for i in bounded)
        if unbounded:
            m = min(batch_size, max_draws)
            z = torch.randn((m, *shape), generator=g).to(device=dev, dtype=dtype)
            with torch.no_grad():
                energies = _energies(ebm, gen.decode(z), z)
                pilot = _weighted(ebm, energies, unbounded, m, dev)
            draws += m
            energy_evals += m
            finite = pilot[torch.isfinite(pilot)]
            if finite.numel() == 0:
                raise PromptgenError("every energy of the pilot batch was infinite or NaN; rejection sampling cannot estimate a bound")
            shift += float(finite.min()) - margin
            exact = False
            names = ", ".join(terms[i].label for i in unbounded)
            note = f"not exact: no lower_bound() for {names}; bound estimated from {m} pilot draws (minimum − {margin:g})"

    kept: list[Tensor] = []
    n_kept = 0
    bar = progress_bar(console, progress, "rejection")
    with bar:
        task = bar.add_task("", total=n)
        while n_kept < n:
            m = min(batch_size, max_draws - draws)
            if m <= 0:
                rate = kept_total / candidates if candidates else 0.0
                need = f"; at this rate about {math.ceil(n / rate):,} draws are needed" if rate > 0 else ""
                raise PromptgenError(
                    f"rejection sampling accepted only {n_kept} of {n} images in {draws:,} draws "
                    f"(acceptance rate {rate:.2g}){need}; raise --max-draws or sample the trained flow (--method flow)"
                )
            z = torch.randn((m, *shape), generator=g).to(device=dev, dtype=dtype)
            u = torch.rand(m, generator=g, dtype=torch.float64)
            with torch.no_grad():
                images = gen.decode(z)
                if mode == "energy":
                    total = _weighted(ebm, _energies(ebm, images, z), list(range(len(terms))), m, dev)
                    log_acc = (shift - total).double().cpu()
                    log_acc = torch.nan_to_num(log_acc, nan=-math.inf)
                    violations += int((log_acc > 1e-4).sum())
                    keep = torch.log(u) < log_acc.clamp(max=0.0)
                else:
                    prob = torch.ones(m, dtype=torch.float64)
                    for t in terms:
                        prob = prob * t.energy.acceptance(images).double().cpu()
                    keep = u < torch.nan_to_num(prob, nan=0.0)
            draws += m
            candidates += m
            energy_evals += m
            k = int(keep.sum())
            kept_total += k
            if k:
                take = min(k, n - n_kept)
                idx = keep.nonzero().squeeze(1)[:take].to(images.device)
                kept.append(images.index_select(0, idx).clamp(0, 1).float().cpu())
                n_kept += take
            bar.update(task, completed=n_kept, description=f"{draws:,} draws, kept {kept_total / candidates:.3g}")
    _sync(dev)
    seconds = time.perf_counter() - t0
    if violations:
        exact = False
        note = (note + "; " if note else "") + f"{violations} draws fell below the energy bound (acceptance clipped at 1)"
    cost = SamplerCost(
        method="rejection",
        accept=mode,  # type: ignore[arg-type]
        target=P_STAR if mode == "energy" else "the generator's samples whose acceptance() holds (not p*)",
        exact=exact,
        accepted=n,
        draws=draws,
        draws_per_sample=draws / n,
        energy_evaluations=energy_evals,
        acceptance_rate=kept_total / candidates if candidates else None,
        seconds=seconds,
        samples_per_second=_per_second(n, seconds),
        device=str(dev),
        note=note,
    )
    return torch.cat(kept), cost


# -- Metropolis-adjusted Langevin ------------------------------------------------------------------------------------


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
    dev = _place(ebm, device)
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
    _sync(dev)
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
                h = _expand(log_h.exp(), z)
                xi = _frozen_noise(ebm, torch.randn((m, *shape), generator=g).to(device=dev, dtype=dtype))
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
    _sync(dev)
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
        samples_per_second=_per_second(n, seconds),
        steps=steps,
        step_size=float(torch.cat(final_h).mean()),
        mh_acceptance=alpha_sum / alpha_count if alpha_count else None,
        device=str(dev),
        note=f"MCMC: final states of {n} chains after {steps} steps"
        + (f" (step size adapted in the first {adapt_steps})" if adapt_steps else "")
        + "; asymptotically exact",
    )
    return torch.cat(out), cost


def sample_ebm(
    ebm: EnergyBasedModel,
    n: int,
    method: str,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
    console: Console | None = None,
    accept: str = "auto",
    max_draws: int = 1_000_000,
    steps: int = 200,
    step_size: float = 0.05,
    batch_size: int = 256,
) -> tuple[Tensor, SamplerCost]:
    """Dispatch to :func:`rejection_sample` or :func:`langevin_sample` by ``method``."""
    if method == "rejection":
        return rejection_sample(
            ebm, n, accept=accept, seed=seed, batch_size=batch_size, max_draws=max_draws, device=device,
            progress=progress, console=console,
        )
    if method == "langevin":
        return langevin_sample(
            ebm, n, steps=steps, step_size=step_size, seed=seed, batch_size=batch_size, device=device,
            progress=progress, console=console,
        )
    raise PromptgenError(f"unknown method {method!r} for an energy-based model; use rejection or langevin")


__all__ = [
    "ACCEPT_MODES",
    "METHODS",
    "SamplerCost",
    "flow_sample",
    "langevin_sample",
    "rejection_sample",
    "sample_ebm",
]
