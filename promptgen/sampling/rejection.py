"""Rejection sampling from the generator's own distribution (see :mod:`promptgen.sampling.baselines`)."""

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

ACCEPT_MODES = ("auto", "energy", "attribute")


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


def _mode(ebm: EnergyBasedModel, accept: str) -> str:
    """``energy`` or ``attribute``: what ``accept`` asks for.

    ``auto``: ``energy`` (exact samples of p*) when every energy knows its lower bound, as the built-in ones do;
    else ``attribute`` when every energy has ``acceptance``; else ``energy`` with a bound from a pilot batch. The
    attribute's test keeps what the control classifier's top class calls the attribute, which on the built-in
    digits let through 8s and 2s that the adversarially trained control calls 3s (issue 26): not the default.
    """
    lacking_acceptance = [t.label for t in ebm.terms if not t.caps.accepting]
    if accept == "auto":
        bounded = all(t.caps.bounded for t in ebm.terms)
        mode = "energy" if bounded or lacking_acceptance else "attribute"
    else:
        mode = accept
    if mode == "attribute" and lacking_acceptance:
        raise PromptgenError(
            f"--accept attribute needs every energy to say which images have its attribute, and "
            f"{', '.join(repr(x) for x in lacking_acceptance)} cannot (no acceptance()); use --accept energy"
        )
    return mode


def _energy_bound(ebm: EnergyBasedModel, g: torch.Generator, m: int, dev: torch.device, margin: float) -> tuple[float, int, str]:
    """``(shift, pilot draws, note)``: ``shift = Σ w_i b_i`` (log-acceptance is ``−(Σ w_i E_i − shift)``).

    ``b_i`` is each energy's ``lower_bound()``; the energies without one get theirs from a pilot batch of
    ``m`` draws (their minimum minus ``margin``), and the note says the samples are not exact (empty when they are).
    """
    terms, gen = ebm.terms, ebm.generator
    bounded = [i for i, t in enumerate(terms) if t.caps.bounded]
    unbounded = [i for i in range(len(terms)) if i not in bounded]
    shift = sum(terms[i].weight * float(terms[i].caps.lower_bound() or 0.0) for i in bounded)
    if not unbounded:
        return shift, 0, ""
    z = torch.randn((m, *tuple(gen.latent_shape)), generator=g).to(device=dev, dtype=gen.dtype)
    with torch.no_grad():
        energies = _energies(ebm, gen.decode(z), z)
        pilot = _weighted(ebm, energies, unbounded, m, dev)
    finite = pilot[torch.isfinite(pilot)]
    if finite.numel() == 0:
        raise PromptgenError("every energy of the pilot batch was infinite or NaN; rejection sampling cannot estimate a bound")
    shift += float(finite.min()) - margin
    names = ", ".join(terms[i].label for i in unbounded)
    return shift, m, f"not exact: no lower_bound() for {names}; bound estimated from {m} pilot draws (minimum − {margin:g})"


def _kept(
    ebm: EnergyBasedModel, mode: str, images: Tensor, z: Tensor, u: Tensor, shift: float, dev: torch.device
) -> tuple[Tensor, int]:
    """Which candidates to keep, given their uniforms ``u`` ((m,) bool on the CPU), and how many of them
    fell below the energy bound (their acceptance clipped at 1; ``energy`` mode only)."""
    m = z.shape[0]
    if mode == "energy":
        total = _weighted(ebm, _energies(ebm, images, z), list(range(len(ebm.terms))), m, dev)
        log_acc = (shift - total).double().cpu()
        log_acc = torch.nan_to_num(log_acc, nan=-math.inf)
        return torch.log(u) < log_acc.clamp(max=0.0), int((log_acc > 1e-4).sum())
    prob = torch.ones(m, dtype=torch.float64)
    for t in ebm.terms:
        prob = prob * t.energy.acceptance(images).double().cpu()
    return u < torch.nan_to_num(prob, nan=0.0), 0


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
    mode = _mode(ebm, accept)

    dev = place(ebm, device)
    gen = ebm.generator
    shape = tuple(gen.latent_shape)
    dtype = gen.dtype
    g = torch.Generator().manual_seed(seed)
    draws = candidates = kept_total = energy_evals = 0
    exact = True
    note = ""
    shift = 0.0  # Σ w_i b_i: log-acceptance is −(Σ w_i E_i − shift)
    violations = 0

    synchronize(dev)
    t0 = time.perf_counter()
    if mode == "energy":
        shift, pilot, note = _energy_bound(ebm, g, min(batch_size, max_draws), dev, margin)
        draws += pilot
        energy_evals += pilot
        exact = not pilot

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
                keep, below = _kept(ebm, mode, images, z, u, shift, dev)
            violations += below
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
    synchronize(dev)
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
        samples_per_second=per_second(n, seconds),
        device=str(dev),
        note=note,
    )
    return torch.cat(kept), cost


__all__ = ["ACCEPT_MODES", "rejection_sample"]
