"""Issue 16 targets: BigGAN-deep speed and memory on this machine, with random weights.

- generator images per second and peak memory at 128, 256 and 512 (no
  gradients; the official configurations, 50-56 M parameters, truncation 0.4,
  the class embedding as a latent part, as a prompt trains it);
- the flow's share of one training step at 128 (target: at most 2 %): the
  flow's own forward, backward and Adam update on the 256-d latent (z and the
  class embedding), timed alone, over the whole step (flow, generator decode,
  a cheap energy, backward through the generator, update).

Each generator case runs in a fresh process so its peak resident memory is
its own; ``baseline_rss_mb`` is that process before the generator runs (Python,
torch, the weights).

    python benchmarks/biggan_speed.py [--repeats 2] [--threads N]

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

BATCH = {128: 4, 256: 2, 512: 1}


def decoder(resolution: int):
    """The plugin's decoder (truncation 0.4, class embedding as a latent part) on a random-weight official configuration."""
    from promptgen_plugin_biggan.config import OFFICIAL
    from promptgen_plugin_biggan.generator import BigGANDecoder
    from promptgen_plugin_biggan.network import BigGAN
    from promptgen_plugin_biggan.testing import random_state_dict

    net = BigGAN(OFFICIAL[resolution])
    net.load_state_dict(random_state_dict(OFFICIAL[resolution], seed=0))
    net.refresh().eval().requires_grad_(False)
    return BigGANDecoder(net, truncation=0.4).eval().requires_grad_(False)


def generator_case(resolution: int, batch: int, repeats: int) -> dict:
    g = decoder(resolution)
    params = sum(p.numel() for p in g.parameters())
    eps = torch.randn(batch, 256)
    base = rss_mb()
    with torch.no_grad():
        g(eps[:1, :128], eps[:1, 128:])  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            g(eps[:, :128], eps[:, 128:])
            times.append(time.perf_counter() - t)
    best = min(times)
    return {
        "case": "generator", "resolution": resolution, "batch": batch, "parameters_millions": round(params / 1e6, 2),
        "images_per_second": round(batch / best, 3), "seconds_per_batch": round(best, 3),
        "baseline_rss_mb": round(base), "peak_rss_mb": round(rss_mb()), "threads": torch.get_num_threads(),
    }


def flow_share_case(batch: int, repeats: int) -> dict:
    from promptgen.training.flow import CouplingFlow, FlowConfig

    g = decoder(128)
    flow = CouplingFlow(FlowConfig(features=256))
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)

    def full_step() -> None:
        eps = torch.randn(batch, 256)
        z, log_det = flow(eps)
        x = g(z[:, :128], z[:, 128:])
        energy = (x.mean(dim=(1, 2, 3)) - 0.3).square()  # cheap stand-in energy: the share is the flow's against the generator
        training_update(opt, z, log_det, energy)

    flow_only = flow_step(flow, opt, batch, 256)

    whole, own = best_of(full_step, repeats), best_of(flow_only, repeats)
    return {
        "case": "flow share of a training step", "resolution": 128, "batch": batch,
        "flow_parameters_millions": round(sum(p.numel() for p in flow.parameters()) / 1e6, 3),
        "step_seconds": round(whole, 3), "flow_seconds": round(own, 4), "flow_share_percent": round(100 * own / whole, 2),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
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
    for res, batch in BATCH.items():
        subprocess.run([sys.executable, __file__, "--child", str(res), str(batch), *extra], check=True)
    subprocess.run([sys.executable, __file__, "--flow-share", *extra], check=True)


if __name__ == "__main__":
    main()
