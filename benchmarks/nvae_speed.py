"""Issue 16 targets: NVAE speed and memory on this machine, with random weights.

- decoder images per second and peak memory at the published FFHQ-256
  configuration (NVlabs/NVAE README: 30 decoder channels, 5 latent scales,
  16 groups per scale with ada_groups and at least 4 (36 groups), 2 cells per
  group, res_mbconv cells, SE, a mixture of 10 logistics), no gradients,
  t = 0.8, output the mean;
- the flow's share of one training step at 256: the flow (promptgen's default,
  on the 20×8×8 top group) forward, backward and Adam update timed alone, over
  the whole step (flow, decoder, a cheap energy, backward through the decoder,
  update). Lower groups are noise, drawn fresh each step as promptgen does.

Each case runs in a fresh process so its peak resident memory is its own.

    python benchmarks/nvae_speed.py [--repeats 2] [--threads N] [--batch 4] [--step-batch 1]

Prints one JSON object per case.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from timing import best_of

FFHQ_256 = {
    "dataset": "ffhq", "num_channels_enc": 30, "num_channels_dec": 30, "num_postprocess_cells": 2, "num_preprocess_cells": 2,
    "num_latent_scales": 5, "num_latent_per_group": 20, "num_cell_per_cond_enc": 2, "num_cell_per_cond_dec": 2,
    "num_preprocess_blocks": 1, "num_postprocess_blocks": 1, "num_groups_per_scale": 16, "num_nf": 2, "ada_groups": True,
    "min_groups_per_scale": 4, "use_se": True, "res_dist": True, "num_x_bits": 5, "num_mixture_dec": 10, "arch_instance": "res_mbconv",
}
T = 0.8


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def network():
    from promptgen_plugin_nvae.network import NVAEDecoder
    from promptgen_plugin_nvae.testing import config_of, randomize

    net = NVAEDecoder(config_of(FFHQ_256))
    return randomize(net, 0).eval().requires_grad_(False)


def generator_case(batch: int, repeats: int) -> dict:
    base0 = rss_mb()
    net = network()
    params = sum(p.numel() for p in net.parameters())
    eps = [torch.randn(batch, *s) for s in net.group_shapes]
    base = rss_mb()
    with torch.no_grad():
        net.mean(net([e[:1] for e in eps], T))  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            net.mean(net(eps, T))
            times.append(time.perf_counter() - t)
    best = min(times)
    return {
        "case": "decoder", "config": "NVAE FFHQ 256 (published)", "resolution": 256, "batch": batch, "groups": len(net.group_shapes),
        "noise_numbers_per_image": sum(s[0] * s[1] * s[2] for s in net.group_shapes[1:]),
        "decoder_parameters_millions": round(params / 1e6, 2), "images_per_second": round(batch / best, 3),
        "seconds_per_batch": round(best, 3), "python_torch_rss_mb": round(base0), "baseline_rss_mb": round(base),
        "peak_rss_mb": round(rss_mb()), "threads": torch.get_num_threads(),
    }


def flow_share_case(batch: int, repeats: int) -> dict:
    from promptgen.training.flow import CouplingFlow, FlowConfig

    net = network()
    top = net.group_shapes[0]
    d = top[0] * top[1] * top[2]
    flow = CouplingFlow(FlowConfig(features=d))
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)

    def full_step() -> None:
        eps = torch.randn(batch, d)
        z, log_det = flow(eps)
        lower = [torch.randn(batch, *s) for s in net.group_shapes[1:]]
        x = net.mean(net([z.view(batch, *top), *lower], T))
        energy = (x.mean(dim=(1, 2, 3)) - 0.3).square()  # cheap stand-in energy: the share is the flow's against the decoder
        loss = (0.5 * z.square().sum(1) + 30 * energy - log_det).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    cot = torch.randn(batch, d)

    def flow_step() -> None:
        eps = torch.randn(batch, d)
        z, log_det = flow(eps)
        loss = (z * cot).sum() - log_det.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    whole, own = best_of(full_step, repeats), best_of(flow_step, max(repeats, 5))
    return {
        "case": "flow share of a training step", "config": "NVAE FFHQ 256 (published)", "resolution": 256, "batch": batch,
        "flow_features": d, "step_seconds": round(whole, 3), "flow_seconds": round(own, 4),
        "flow_share_percent": round(100 * own / whole, 3), "peak_rss_mb": round(rss_mb()), "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--batch", type=int, default=4, help="images per decoder call (no gradients)")
    ap.add_argument("--step-batch", type=int, default=1, help="images per training step (2 needs ~22 GB with gradients: killed here)")
    ap.add_argument("--child", choices=["decoder", "flow-share"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child == "decoder":
        print(json.dumps(generator_case(args.batch, args.repeats)), flush=True)
        return
    if args.child == "flow-share":
        print(json.dumps(flow_share_case(args.step_batch, args.repeats)), flush=True)
        return
    extra = ["--repeats", str(args.repeats), "--threads", str(args.threads), "--batch", str(args.batch), "--step-batch", str(args.step_batch)]
    for child in ("decoder", "flow-share"):
        subprocess.run([sys.executable, __file__, "--child", child, *extra], check=True)


if __name__ == "__main__":
    main()
