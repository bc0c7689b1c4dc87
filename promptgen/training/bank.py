"""The forward-KL term's bank: base latents with importance weights for the model ``p*``."""

from __future__ import annotations

import torch

from promptgen.training.ebm import EnergyBasedModel


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

    def state(self) -> dict[str, torch.Tensor]:
        return {"latents": self.latents.cpu(), "log_weights": self.log_weights.cpu()}

    @classmethod
    def restore(cls, ebm: EnergyBasedModel, state: dict[str, torch.Tensor], device: torch.device) -> ImportanceBank:
        bank = cls.__new__(cls)
        bank.ebm = ebm
        bank.latents = state["latents"].to(device)
        bank.log_weights = state["log_weights"].to(device)
        w = torch.softmax(bank.log_weights, 0)
        bank.ess = float(1.0 / (w * w).sum())
        return bank

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.multinomial(torch.softmax(self.log_weights, 0).cpu(), n, replacement=True, generator=generator)
        return self.latents[idx.to(self.latents.device)]


__all__ = ["ImportanceBank"]
