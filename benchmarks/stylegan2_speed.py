"""Issue 4 targets: StyleGAN2 speed and memory on this machine, with random weights.

- generator images per second and peak memory at 256 and 1024 (no gradients;
  the official architectures: config F at 1024 with channel base 32,768, and
  the stylegan3 release's 256 config with base 16,384; both capped at 512
  channels, 8 mapping layers, noise const);
- the flow's share of one training step at 256: the flow's own forward,
  backward and Adam update, timed alone, over the whole step (flow, generator,
  a cheap energy, backward through the generator, update).

Each generator case runs in a fresh process so its peak resident memory is
its own; ``baseline_rss_mb`` is that process before the generator runs (Python,
torch, the weights).

    python benchmarks/stylegan2_speed.py [--repeats 3] [--threads N]

Prints one JSON object per case.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
from timing import best_of, flow_step, rss_mb, training_update

CONFIGS = {256: {"channel_base": 16384, "channel_max": 512}, 1024: {"channel_base": 32768, "channel_max": 512}}


def network(resolution: int):
    from promptgen_plugin_stylegan2.network import StyleGAN2, StyleGAN2Config

    torch.manual_seed(0)
    return StyleGAN2(StyleGAN2Config(resolution=resolution, **CONFIGS[resolution])).eval().requires_grad_(False)


def generator_case(resolution: int, batch: int, repeats: int) -> dict:
    g = network(resolution)
    params = sum(p.numel() for p in g.parameters())
    z = torch.randn(batch, 512)
    base = rss_mb()
    with torch.no_grad():
        g(z[:1])  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            g(z)
            times.append(time.perf_counter() - t)
    best = min(times)
    return {
        "case": "generator", "resolution": resolution, "batch": batch, "parameters_millions": round(params / 1e6, 2),
        "images_per_second": round(batch / best, 3), "seconds_per_batch": round(best, 3),
        "baseline_rss_mb": round(base), "peak_rss_mb": round(rss_mb()), "threads": torch.get_num_threads(),
    }


def flow_share_case(batch: int, repeats: int) -> dict:
    from promptgen.training.flow import CouplingFlow, FlowConfig

    g = network(256)
    flow = CouplingFlow(FlowConfig(features=512))
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)

    def full_step() -> None:
        eps = torch.randn(batch, 512)
        z, log_det = flow(eps)
        x = (g(z) + 1) / 2
        energy = (x.mean(dim=(1, 2, 3)) - 0.3).square()  # cheap stand-in energy: the share is the flow's against the generator
        training_update(opt, z, log_det, energy)

    flow_only = flow_step(flow, opt, batch, 512)

    whole, own = best_of(full_step, repeats), best_of(flow_only, repeats)
    return {
        "case": "flow share of a training step", "resolution": 256, "batch": batch,
        "step_seconds": round(whole, 3), "flow_seconds": round(own, 4), "flow_share_percent": round(100 * own / whole, 2),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--child", nargs=2, type=int, metavar=("RESOLUTION", "BATCH"), help=argparse.SUPPRESS)
    ap.add_argument("--flow-share", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(generator_case(*args.child, args.repeats)), flush=True)
        return
    if args.flow_share:
        print(json.dumps(flow_share_case(8, args.repeats)), flush=True)
        return
    extra = ["--repeats", str(args.repeats), "--threads", str(args.threads)]
    for res, batch in ((256, 8), (1024, 2)):
        subprocess.run([sys.executable, __file__, "--child", str(res), str(batch), *extra], check=True)
    subprocess.run([sys.executable, __file__, "--flow-share", *extra], check=True)


if __name__ == "__main__":
    main()
