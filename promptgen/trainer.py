"""Training the flow by reverse KL to the energy-based model.

The trainer knows the energy-based model only through
:meth:`~promptgen.ebm.EnergyBasedModel.reverse_kl`; it knows nothing of what
the energies are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from promptgen.atomic import write_atomic
from promptgen.ebm import EnergyBasedModel
from promptgen.flow import CouplingFlow
from promptgen.progress import progress_bar
from promptgen.protocols import BaseSample


class TrainConfig(BaseModel):
    """Training settings; recorded in the prompt's manifest.

    The defaults are the ones measured in ``benchmarks/compose_mnist.py`` to
    train the built-in digit prompt in well under a minute on a 2-core CPU.
    """

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=800, ge=1)
    batch_size: int = Field(default=64, ge=1)
    accumulate: int = Field(default=1, ge=1, description="micro-batches per optimiser step")
    lr: float = Field(default=1e-3, gt=0)
    clip_grad: float | None = Field(default=10.0, gt=0, description="max gradient norm; None disables")
    seed: int = 0
    eval_every: int = Field(default=100, ge=1)
    eval_batch: int = Field(default=256, ge=1)
    checkpoint_every: int = Field(default=200, ge=1)
    fit_samples: int = Field(default=2048, ge=1, description="base samples for energies that fit first")
    warmup: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="share of the steps over which the energies' weights ramp linearly from 0 to their value",
    )

    forward_weight: float = Field(
        default=0.0,
        ge=0,
        description="weight of a forward-KL term: the flow's negative log-likelihood of base samples drawn "
        "in proportion to their importance weights exp(-sum w E); teaches the flow the rare parts of the target "
        "that reverse KL alone under-covers",
    )
    forward_samples: int = Field(default=16384, ge=1, description="base samples behind the forward-KL term")
    schedule: Literal["constant", "cosine"] = Field(
        default="cosine", description="learning rate over the steps: constant, or cosine decay to zero"
    )
    settle: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="share of the steps at the end in which energies that close a loop stop adapting",
    )

    def adapting(self, step: int) -> bool:
        """Whether energies that close a loop (``adapt_every``) adapt after step ``step``."""
        return self.anneal(step) >= 1.0 and step <= (1.0 - self.settle) * self.steps

    def anneal(self, step: int) -> float:
        """Multiplier of the energy weights at optimiser step ``step`` (1-based)."""
        ramp = self.warmup * self.steps
        return 1.0 if ramp <= 0 else min(1.0, step / ramp)


class TrainingSummary(BaseModel):
    """How the flow was trained and where it ended; stored in the prompt's manifest."""

    model_config = ConfigDict(extra="forbid")

    config: TrainConfig
    device: str
    seconds: float
    final_loss: float
    final_terms: dict[str, float]
    history: list[dict[str, float]] = Field(default_factory=list)
    fits: dict[str, dict[str, float]] = Field(default_factory=dict)
    adaptations: list[dict[str, float]] = Field(
        default_factory=list, description="what energies that close a loop saw of the flow, by step"
    )


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
    needy = [t for t in ebm.terms if t.energy.needs_fit]
    if not needy:
        return {}
    # An energy may ask for more base samples than the default (rare classes need many).
    n = max([n] + [int(getattr(t.energy, "fit_samples", 0)) for t in needy])
    z = torch.randn((n, *ebm.generator.latent_shape), generator=generator, device="cpu").to(device)
    fits = {}
    with progress_bar(console, progress, "fitting") as bar:
        for t in needy:
            task = bar.add_task(t.label, total=n)

            def decode(chunk: torch.Tensor, task: int = task) -> torch.Tensor:
                images = ebm.generator.decode(chunk)
                bar.advance(task, chunk.shape[0])
                return images

            # Decoded a chunk at a time when the energy asks: 8,192 StyleGAN images at 1024² would not fit in memory.
            fits[t.label] = dict(t.energy.fit(BaseSample(latents=z, decode=decode)))
    return fits


@torch.no_grad()
def evaluate(ebm: EnergyBasedModel, flow: CouplingFlow, eps: torch.Tensor) -> dict[str, float]:
    """Mean loss, prior, log-det and each unweighted energy on fixed noise ``eps``."""
    out: dict[str, list[float]] = {}
    for chunk in eps.split(256):
        loss, pot, log_det = ebm.reverse_kl(flow, chunk)
        row = {"loss": loss, "prior": pot.prior, "log_det": log_det, **pot.energies}
        for k, v in row.items():
            out.setdefault(k, []).append(float(v.sum()))
    return {k: sum(v) / len(eps) for k, v in out.items()}


class ImportanceBank:
    """Base latents with self-normalised importance weights for the model ``p*``.

    With ``z_i ~ N(0, I)`` (the generator's prior), ``p*(z_i) / N(z_i) ∝
    exp(−Σ w E(G(z_i)))``, so resampling the bank by these weights gives
    (approximate) samples of ``p*`` for a forward-KL term.
    """

    def __init__(self, ebm: EnergyBasedModel, n: int, generator: torch.Generator, device: torch.device) -> None:
        self.ebm = ebm
        self.latents = torch.randn((n, *ebm.generator.latent_shape), generator=generator).to(device)
        self.reweight()

    @torch.no_grad()
    def reweight(self) -> None:
        """Recompute the weights (after an energy changed, e.g. de-biasing's β was refitted)."""
        parts = []
        for chunk in self.latents.split(512):
            pot = self.ebm.potential(chunk)
            parts.append(-(pot.total - pot.prior))
        self.log_weights = torch.cat(parts)
        w = torch.softmax(self.log_weights, 0)
        self.ess = float(1.0 / (w * w).sum())

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.multinomial(torch.softmax(self.log_weights, 0).cpu(), n, replacement=True, generator=generator)
        return self.latents[idx.to(self.latents.device)]


def adapt_energies(ebm: EnergyBasedModel, flow: CouplingFlow, step: int, generator: torch.Generator, device: torch.device) -> dict[str, float]:
    """Show energies that close a loop (``adapt_every``) samples of the flow as it is now."""
    row: dict[str, float] = {}
    for t in ebm.terms:
        every = getattr(t.energy, "adapt_every", 0)
        if not every or step % every:
            continue
        n = getattr(t.energy, "adapt_samples", 1024)
        with torch.no_grad():
            eps = torch.randn((n, *flow.latent_shape), generator=generator).to(device)
            z = torch.cat([flow(chunk)[0] for chunk in eps.split(256)])
        report = t.energy.adapt(BaseSample(latents=z, decode=ebm.generator.decode))
        row.update({f"{t.label} {k}": float(v) for k, v in report.items()})
    return row


def save_checkpoint(path: Path, flow: CouplingFlow, optimizer: torch.optim.Optimizer, step: int) -> None:
    """Flow, optimiser and step in one file, written atomically (loadable with weights_only=True)."""
    state = {"flow": flow.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
    write_atomic(path, lambda p: torch.save(state, p))


def train_flow(
    ebm: EnergyBasedModel,
    flow: CouplingFlow,
    config: TrainConfig,
    *,
    device: torch.device,
    checkpoint: Path | None = None,
    console: Console | None = None,
    progress: bool = True,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainingSummary:
    """Minimise ``E_ε[U(f(ε)) − log|det ∂f/∂ε|]`` over the flow's weights with Adam.

    Args:
        ebm: generator and weighted energies (frozen; moved to ``device``).
        flow: the sampler being trained (moved to ``device``).
        config: steps, batch size, accumulation, clipping, seed...
        device: where to train.
        checkpoint: file to write every ``config.checkpoint_every`` steps.
        console: where the progress bar goes.
        progress: show a rich progress bar with the loss and each energy term.
        on_eval: called with (step, metrics) at each periodic evaluation.
    """
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    ebm.to(device)
    flow.to(device)
    t0 = time.perf_counter()
    fits = fit_energies(ebm, config.fit_samples, g, device, console=console, progress=progress)
    eval_eps = torch.randn((config.eval_batch, *flow.latent_shape), generator=g).to(device)
    bank = ImportanceBank(ebm, config.forward_samples, g, device) if config.forward_weight > 0 else None
    opt = torch.optim.Adam(flow.parameters(), lr=config.lr)
    # Decaying the rate lets the flow settle on one distribution instead of
    # wandering between nearby ones (which shows when sharp energies are evened out).
    schedule = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps)
        if config.schedule == "cosine"
        else torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    )
    history: list[dict[str, float]] = []
    adaptations: list[dict[str, float]] = []
    labels = [t.label for t in ebm.terms]
    running: dict[str, float] = {}

    def describe() -> str:
        parts = [f"loss {running.get('loss', math.nan):8.3f}"]
        parts += [f"{lab} {running.get(lab, math.nan):.3f}" for lab in labels]
        return "  ".join(parts)

    bar = progress_bar(console, progress, "training")
    with bar:
        task = bar.add_task(describe(), total=config.steps)
        for step in range(1, config.steps + 1):
            opt.zero_grad(set_to_none=True)
            stats: dict[str, float] = {}
            anneal = config.anneal(step)
            for _ in range(config.accumulate):
                eps = torch.randn((config.batch_size, *flow.latent_shape), generator=g).to(device)
                loss, pot, _ = ebm.reverse_kl(flow, eps, anneal)
                total = loss.mean()
                if bank is not None:
                    nll = -flow.log_prob(bank.draw(config.batch_size, g)).mean()
                    total = total + anneal * config.forward_weight * nll
                (total / config.accumulate).backward()
                for k, v in {"loss": loss, **pot.energies}.items():
                    stats[k] = stats.get(k, 0.0) + float(v.detach().mean()) / config.accumulate
            if config.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(flow.parameters(), config.clip_grad)
            opt.step()
            schedule.step()
            if config.adapting(step):
                row = adapt_energies(ebm, flow, step, g, device)
                if row and bank is not None:
                    bank.reweight()
                    row["forward ess"] = bank.ess
                if row:
                    adaptations.append({"step": float(step), **row})
            for k, v in stats.items():  # exponential moving average for the display
                running[k] = v if k not in running else 0.9 * running[k] + 0.1 * v
            if step % config.eval_every == 0 or step == config.steps:
                metrics = evaluate(ebm, flow, eval_eps)
                history.append({"step": float(step), "seconds": time.perf_counter() - t0, **metrics})
                if on_eval is not None:
                    on_eval(step, metrics)
            if checkpoint is not None and step % config.checkpoint_every == 0:
                save_checkpoint(checkpoint, flow, opt, step)
            if step % 5 == 0 or step == config.steps:
                bar.update(task, completed=step, description=describe())
    final = history[-1]
    return TrainingSummary(
        config=config,
        device=str(device),
        seconds=time.perf_counter() - t0,
        final_loss=final["loss"],
        final_terms={k: final[k] for k in labels if k in final},
        history=history,
        fits=fits,
        adaptations=adaptations,
    )
