"""A third judge of digits: csinva's LeNet-5, trained on the 60,000 MNIST training images.

promptgen's evaluator and realism check trained on 4,000 digits of the MNIST test set, from the same split
family as the control classifier's. A judge from elsewhere, trained on other images by other people, can
disagree where both of promptgen's were fooled together, so the benchmarks report it beside them.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from promptgen_plugin_foreign_digits.files import load_lenet, locate

#: A sample the judge is less sure of than this is counted as junk ("unsure"), as in issue 24.
SURE = 0.9


class LeNetJudge:
    """``judge(images)`` -> (B, 10) digit log-probabilities of 28×28 grey images in [0, 1].

    The images are resized to 32×32 bilinearly, as the classifier was trained (``Resize((32, 32))``).
    """

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu") -> None:
        self.net = load_lenet(locate("lenet", path)).to(device)
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        x = F.interpolate(images.to(self.device, torch.float32), size=(32, 32), mode="bilinear", align_corners=False)
        return self.net(x.clamp(0, 1))

    def judge(self, images: Tensor, batch: int = 1000) -> tuple[Tensor, Tensor]:
        """(top digit, whether the judge is at least :data:`SURE` of it), each (B,)."""
        tops, sure = [], []
        for chunk in images.split(batch):
            logp = self(chunk)
            tops.append(logp.argmax(1).cpu())
            sure.append((logp.amax(1).exp() >= SURE).cpu())
        return torch.cat(tops), torch.cat(sure)


__all__ = ["SURE", "LeNetJudge"]
