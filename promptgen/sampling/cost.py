"""What a sampling run cost (:class:`SamplerCost`), and the timing and placement helpers the samplers share."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from promptgen.core.device import resolve_device
from promptgen.training.ebm import EnergyBasedModel

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


def per_second(count: int, seconds: float) -> float:
    """``count / seconds``, infinite for a run too fast to time."""
    return count / seconds if seconds > 0 else math.inf


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timing covers it (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def place(ebm: EnergyBasedModel, device: torch.device | str | None) -> torch.device:
    """The device to run on: the ebm's own unless ``device`` is given (then the ebm is moved there)."""
    if device is None:
        return torch.device(ebm.generator.device)
    dev = resolve_device(device)
    ebm.to(dev)
    return dev


__all__ = ["P_STAR", "SamplerCost"]
