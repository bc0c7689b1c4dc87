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

The samplers live in :mod:`~promptgen.sampling.rejection` and :mod:`~promptgen.sampling.langevin`, their
cost record in :mod:`~promptgen.sampling.cost`; this module times the flow and picks a sampler by name.
"""

from __future__ import annotations

import time

import torch
from rich.console import Console
from torch import Tensor

from promptgen.core.device import resolve_device
from promptgen.core.errors import PromptgenError
from promptgen.core.protocols import Generator
from promptgen.sampling.cost import P_STAR, SamplerCost, per_second, synchronize
from promptgen.sampling.langevin import MALA_TARGET_ACCEPT, langevin_sample
from promptgen.sampling.rejection import ACCEPT_MODES, rejection_sample
from promptgen.training.ebm import EnergyBasedModel

METHODS = ("flow", "rejection", "langevin")


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
    synchronize(dev)
    t0 = time.perf_counter()
    images = sample_images(generator, n, seed=seed, device=dev, batch_size=batch_size)
    synchronize(dev)
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
        samples_per_second=per_second(n, seconds),
        device=str(dev),
        note="approximate: a flow trained by reverse KL" if is_prompt else "a base generator, no flow",
    )
    return images, cost


# -- the energy-based model's samplers, by name --------------------------------------------------------------------------


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
    """Dispatch to :func:`rejection_sample` or :func:`langevin_sample` by ``method``.

    Refuses a conditional model: its energies read a condition and compare with twins through the flow.
    """
    if ebm.conditions:
        raise PromptgenError(
            f"--method {method} cannot sample a conditional prompt's model (its energies compare each sample with its twin "
            "through the flow); sample it with the flow, e.g. --cond or --sweep"
        )
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
    "MALA_TARGET_ACCEPT",
    "METHODS",
    "P_STAR",
    "SamplerCost",
    "flow_sample",
    "langevin_sample",
    "rejection_sample",
    "sample_ebm",
]
