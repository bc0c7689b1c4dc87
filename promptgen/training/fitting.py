"""What the trainer does with energies besides training on them: their one-off fits on base samples
(:func:`fit_energies`, :func:`prefit`), closing their loops on the flow's samples (:func:`adapt_energies`),
and the mixture term that decides the flow's components (:func:`mixture_for`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.markup import escape

from promptgen.core.conditions import draw_conditions
from promptgen.core.errors import SpecError
from promptgen.core.progress import progress_bar
from promptgen.core.protocols import BaseSample
from promptgen.training.config import TrainConfig
from promptgen.training.ebm import EnergyBasedModel, WeightedEnergy, mixture_term
from promptgen.training.flow import CouplingFlow


def fit_energies(
    ebm: EnergyBasedModel,
    n: int,
    generator: torch.Generator,
    device: torch.device,
    *,
    console: Console | None = None,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Give energies that need it their one-off fit on ``n`` base samples."""
    needy = [t for t in ebm.terms if t.caps.fittable]
    if not needy:
        return {}
    # An energy may ask for more base samples than the default (rare classes need many).
    n = max([n] + [t.caps.fit_samples for t in needy])
    z = torch.randn((n, *ebm.generator.latent_shape), generator=generator, device="cpu").to(device)
    fits = {}
    with progress_bar(console, progress, "fitting") as bar:
        for t in needy:
            task = bar.add_task(escape(t.label), total=n)  # labels come from specs or manifests: never markup

            def decode(chunk: torch.Tensor, task: int = task) -> torch.Tensor:
                images = ebm.generator.decode(chunk)
                bar.advance(task, chunk.shape[0])
                return images

            # Decoded a chunk at a time when the energy asks: 8,192 StyleGAN images at 1024² would not fit in memory.
            fits[t.label] = dict(t.caps.fit(BaseSample(latents=z, decode=decode)))
    return fits


@dataclass
class Prefit:
    """What :func:`prefit` did: each energy's fit report by label, the noise generator's state after, and how long it took."""

    fits: dict[str, dict[str, float]]
    generator_state: torch.Tensor
    seconds: float


def prefit(
    ebm: EnergyBasedModel, config: TrainConfig, device: torch.device, *, console: Console | None = None, progress: bool = False
) -> Prefit:
    """The energies' one-off fits exactly as :func:`~promptgen.training.trainer.train_flow` would make them first.

    For callers that need the fitted energies before the flow is built (a
    de-biasing energy in ``mode=auto`` decides at its fit whether the prompt
    is a mixture). Pass the result to ``train_flow`` as ``fitted``; the run
    is then the same as if it had fitted them itself, its time included.
    """
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    ebm.to(device)
    fits = fit_energies(ebm, config.fit_samples, g, device, console=console, progress=progress)
    return Prefit(fits, g.get_state(), time.perf_counter() - t0)


def mixture_for(terms: list[WeightedEnergy], config: TrainConfig) -> WeightedEnergy | None:
    """The term that makes the prompt a mixture (:func:`~promptgen.training.ebm.mixture_term`), checked against the settings.

    Raises:
        SpecError: two such terms, or ``forward_weight`` (the forward-KL bank has no components).
    """
    mixture = mixture_term(terms)
    if mixture is not None and config.forward_weight > 0:
        raise SpecError(f"--forward-weight does not apply to a mixture prompt ({mixture.label!r}); remove it, or add mode=tilt")
    return mixture


def asked_components(ebm: EnergyBasedModel, config: TrainConfig) -> int:
    """The mixture components the energies ask for, 0 for none (an auto energy settles at its fit)."""
    mixture = mixture_for(ebm.terms, config)
    return mixture.caps.mixture_components if mixture else 0


def adapt_energies(ebm: EnergyBasedModel, flow: CouplingFlow, step: int, generator: torch.Generator, device: torch.device) -> dict[str, float]:
    """Show energies that close a loop (``adapt_every``) samples of the flow as it is now."""
    row: dict[str, float] = {}
    for t in ebm.terms:
        every = t.caps.adapt_every
        if not every or step % every:
            continue
        n = t.caps.adapt_samples
        with torch.no_grad():
            eps = torch.randn((n, *flow.latent_shape), generator=generator).to(device)
            if ebm.conditions:  # a conditional flow's samples over its conditions' training distribution
                condition = draw_conditions(ebm.conditions, n, generator).to(device)
                z = torch.cat([flow(e, None, c)[0] for e, c in zip(eps.split(256), condition.split(256), strict=True)])
            else:
                z = torch.cat([flow(chunk)[0] for chunk in eps.split(256)])
        report = t.caps.adapt(BaseSample(latents=z, decode=ebm.generator.decode))
        row.update({f"{t.label} {k}": float(v) for k, v in report.items()})
    return row


def energy_states(ebm: EnergyBasedModel) -> dict[str, dict[str, list[float]]]:
    """The fitted or adapted state (e.g. de-biasing's β) of each energy that keeps one, by label (for checkpoints)."""
    return {t.label: t.caps.state() for t in ebm.terms if t.caps.stateful}


__all__ = ["Prefit", "adapt_energies", "asked_components", "energy_states", "fit_energies", "mixture_for", "prefit"]
