"""Is a hand-written affine coupling flow faster than zuko's? (issue: "use zuko unless...")

Times, on the CPU, the forward pass with log-determinant of promptgen's
zuko-based :class:`~promptgen.training.flow.CouplingFlow` (affine couplings) against a
minimal hand-written RealNVP with the same layers (same masks, same MLP widths, same soft-clamped
scale), for sampling (1,000 latents, no grad) and for a training step (batch
64, forward + backward); zuko's spline couplings (the default) are timed too,
for reference. Prints JSON.

    python benchmarks/flow_implementations.py
"""

from __future__ import annotations

import json
import platform

import torch
from timing import best_of
from torch import nn

from promptgen.training.flow import CouplingFlow, FlowConfig, coupling_masks

REPEATS = 30


class HandCoupling(nn.Module):
    """Reference only: y_b = x_b · exp(s(x_a)) + t(x_a), as zuko's MonotonicAffineTransform."""

    def __init__(self, mask: torch.Tensor, hidden: int) -> None:
        super().__init__()
        self.register_buffer("idx_a", mask.nonzero().squeeze(1))
        self.register_buffer("idx_b", (~mask).nonzero().squeeze(1))
        da, db = len(self.idx_a), len(self.idx_b)
        self.net = nn.Sequential(nn.Linear(da, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2 * db))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = x[:, self.idx_a], x[:, self.idx_b]
        shift, raw = self.net(xa).unflatten(1, (-1, 2)).unbind(-1)
        log_scale = raw / (1 + (raw / torch.log(torch.tensor(1e-3))).abs())
        y = x.clone()
        y[:, self.idx_b] = xb * log_scale.exp() + shift
        return y, log_scale.sum(1)


class HandFlow(nn.Module):
    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        masks = coupling_masks(config.features, config.transforms, config.mask_seed)
        self.layers = nn.ModuleList(HandCoupling(m, config.hidden) for m in masks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            total = total + ld
        return x, total


def measure(flow: nn.Module, d: int) -> dict[str, float]:
    x = torch.randn(1000, d)
    xb = torch.randn(64, d)

    def sample() -> None:
        with torch.no_grad():
            flow(x)

    def step() -> None:
        z, ld = flow(xb)
        (0.5 * z.pow(2).sum() - ld.sum()).backward()

    return {"sample_1000_ms": 1e3 * best_of(sample, REPEATS), "train_step_b64_ms": 1e3 * best_of(step, REPEATS)}


def main() -> None:
    torch.manual_seed(0)
    rows = []
    for d, transforms, hidden in [(32, 6, 128), (512, 8, 256)]:
        config = FlowConfig(features=d, transforms=transforms, hidden=hidden, kind="affine-coupling")
        zuko_flow, hand_flow = CouplingFlow(config), HandFlow(config)
        spline = CouplingFlow(config.model_copy(update={"kind": "spline-coupling"}))
        row = {"features": d, "transforms": transforms, "hidden": hidden}
        for name, flow in (("zuko", zuko_flow), ("hand", hand_flow), ("zuko_spline", spline)):
            for k, v in measure(flow, d).items():
                row[f"{name}_{k}"] = round(v, 3)
        row["hand_speedup_sample"] = round(row["zuko_sample_1000_ms"] / row["hand_sample_1000_ms"], 2)
        row["hand_speedup_train"] = round(row["zuko_train_step_b64_ms"] / row["hand_train_step_b64_ms"], 2)
        rows.append(row)
    print(json.dumps({"benchmark": "flow_implementations", "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "machine": platform.machine(), "results": rows}, indent=2))


if __name__ == "__main__":
    main()
