"""Issue 16 targets: NVAE speed and memory on this machine, with random weights.

- decoder images per second and peak memory for each published model (the
  five of the plugin's zoo; architecture arguments from the training commands
  in the NVlabs/NVAE README, train.py's defaults for the flags a command leaves
  out): no gradients, t = 0.8, output the mean. FFHQ 256, for instance: 30
  decoder channels, 5 latent scales, 16 groups per scale with ada_groups and
  at least 4 (36 groups), 2 cells per group, res_mbconv cells, SE, a mixture
  of 10 logistics;
- the flow's share of one training step at 256: the flow (promptgen's default,
  on the 20×8×8 top group) forward, backward and Adam update timed alone, over
  the whole step (flow, decoder, a cheap energy, backward through the decoder,
  update). Lower groups are noise, drawn fresh each step as promptgen does.

Each case runs in a fresh process so its peak resident memory is its own; a
case whose process fails (say, killed for memory) prints a JSON object with
its ``error`` instead.

    python benchmarks/nvae_speed.py [--model all|NAME] [--repeats 2] [--threads N] [--batch N] [--step-batch 1]

Prints one JSON object per case.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from timing import best_of, flow_step, rss_mb, run_case, training_update

# The training commands' flags (NVlabs/NVAE README); absent flags take train.py's defaults:
# min_groups_per_scale 1, num_x_bits 8, num_mixture_dec 10, arch_instance res_mbconv, ada_groups False.
COMMON = {
    "num_latent_per_group": 20, "num_cell_per_cond_enc": 2, "num_cell_per_cond_dec": 2, "use_se": True, "res_dist": True,
    "num_mixture_dec": 10, "arch_instance": "res_mbconv", "min_groups_per_scale": 1, "num_x_bits": 8, "ada_groups": False,
}
FFHQ_256 = {
    **COMMON, "dataset": "ffhq", "num_channels_enc": 30, "num_channels_dec": 30, "num_postprocess_cells": 2, "num_preprocess_cells": 2,
    "num_latent_scales": 5, "num_preprocess_blocks": 1, "num_postprocess_blocks": 1, "num_groups_per_scale": 16, "num_nf": 2,
    "ada_groups": True, "min_groups_per_scale": 4, "num_x_bits": 5,
}
CELEBAHQ_256 = {**FFHQ_256, "dataset": "celeba_256"}  # the same flags as FFHQ's but the data set
CELEBA_64 = {
    **COMMON, "dataset": "celeba_64", "num_channels_enc": 64, "num_channels_dec": 64, "num_postprocess_cells": 2, "num_preprocess_cells": 2,
    "num_latent_scales": 3, "num_preprocess_blocks": 1, "num_postprocess_blocks": 1, "num_groups_per_scale": 20, "num_nf": 1,
    "ada_groups": True,
}
CIFAR10 = {  # the single-scale command (the zoo's shapes)
    **COMMON, "dataset": "cifar10", "num_channels_enc": 128, "num_channels_dec": 128, "num_postprocess_cells": 2, "num_preprocess_cells": 2,
    "num_latent_scales": 1, "num_preprocess_blocks": 1, "num_postprocess_blocks": 1, "num_groups_per_scale": 30, "num_nf": 1,
}
MNIST = {
    **COMMON, "dataset": "mnist", "num_channels_enc": 32, "num_channels_dec": 32, "num_postprocess_cells": 3, "num_preprocess_cells": 3,
    "num_latent_scales": 2, "num_preprocess_blocks": 2, "num_postprocess_blocks": 2, "num_groups_per_scale": 10, "num_nf": 0,
    "ada_groups": True,
}
#: zoo name -> (training arguments, default decoder batch: small enough for 24 GB, big enough to time).
MODELS = {
    "nvae-ffhq-256": (FFHQ_256, 2),
    "nvae-celebahq-256": (CELEBAHQ_256, 2),
    "nvae-celeba-64": (CELEBA_64, 8),
    "nvae-cifar10": (CIFAR10, 16),
    "nvae-mnist": (MNIST, 64),
}
FLOW_SHARE_MODEL = "nvae-ffhq-256"  # the target is at 256 (CelebA-HQ 256 has the same architecture)
T = 0.8


def network(model: str):
    from promptgen_plugin_nvae.network import NVAEDecoder
    from promptgen_plugin_nvae.testing import config_of, randomize

    net = NVAEDecoder(config_of(MODELS[model][0]))
    return randomize(net, 0).eval().requires_grad_(False)


def generator_case(model: str, batch: int, repeats: int) -> dict:
    from promptgen_plugin_nvae.zoo import MODELS as ZOO

    base0 = rss_mb()
    net = network(model)
    params = sum(p.numel() for p in net.parameters())
    eps = [torch.randn(batch, *s) for s in net.group_shapes]
    base = rss_mb()
    with torch.no_grad():
        net.mean(net([e[:1] for e in eps], T))  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            x = net.mean(net(eps, T))
            times.append(time.perf_counter() - t)
    best = min(times)
    zoo = ZOO[model]
    return {
        "case": "decoder", "model": model, "config": f"{MODELS[model][0]['dataset']} (published training command)",
        "zoo_resolution": zoo.resolution, "output_shape": list(x.shape[1:]), "batch": batch, "groups": len(net.group_shapes),
        "top_group": list(net.group_shapes[0]),
        "matches_zoo": len(net.group_shapes) == zoo.groups and tuple(net.group_shapes[0]) == zoo.top,
        "noise_numbers_per_image": sum(s[0] * s[1] * s[2] for s in net.group_shapes[1:]),
        "decoder_parameters_millions": round(params / 1e6, 2), "images_per_second": round(batch / best, 3),
        "seconds_per_batch": round(best, 3), "python_torch_rss_mb": round(base0), "baseline_rss_mb": round(base),
        "peak_rss_mb": round(rss_mb()), "threads": torch.get_num_threads(),
    }


def flow_share_case(model: str, batch: int, repeats: int) -> dict:
    from promptgen_plugin_nvae.zoo import MODELS as ZOO

    from promptgen.training.flow import CouplingFlow, FlowConfig

    net = network(model)
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
        training_update(opt, z, log_det, energy)

    flow_only = flow_step(flow, opt, batch, d)

    whole, own = best_of(full_step, repeats), best_of(flow_only, max(repeats, 5))
    return {
        "case": "flow share of a training step", "model": model, "config": f"{MODELS[model][0]['dataset']} (published training command)",
        "zoo_resolution": ZOO[model].resolution, "batch": batch,
        "flow_features": d, "step_seconds": round(whole, 3), "flow_seconds": round(own, 4),
        "flow_share_percent": round(100 * own / whole, 3), "peak_rss_mb": round(rss_mb()), "threads": torch.get_num_threads(),
    }


def run_child(child: str, model: str, extra: list[str]) -> None:
    """One case in a fresh process; its JSON line, or one saying why it failed."""
    cmd = [sys.executable, __file__, "--child", child, "--model", model, *extra]
    run_case(cmd, {"case": "decoder" if child == "decoder" else "flow share of a training step", "model": model})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--model", choices=["all", *MODELS], default="all", help="which published configuration (default: all)")
    ap.add_argument("--batch", type=int, default=0, help="images per decoder call, no gradients (0: the model's default, "
                    + ", ".join(f"{k} {b}" for k, (_, b) in MODELS.items()) + ")")
    ap.add_argument("--step-batch", type=int, default=1, help="images per training step (2 needs ~22 GB with gradients: killed here)")
    ap.add_argument("--child", choices=["decoder", "flow-share"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        if args.model == "all":
            ap.error("--child needs one --model")
        if args.child == "decoder":
            print(json.dumps(generator_case(args.model, args.batch or MODELS[args.model][1], args.repeats)), flush=True)
        else:
            print(json.dumps(flow_share_case(args.model, args.step_batch, args.repeats)), flush=True)
        return
    extra = ["--repeats", str(args.repeats), "--threads", str(args.threads), "--batch", str(args.batch), "--step-batch", str(args.step_batch)]
    models = list(MODELS) if args.model == "all" else [args.model]
    for model in models:
        run_child("decoder", model, extra)
    if FLOW_SHARE_MODEL in models:
        run_child("flow-share", FLOW_SHARE_MODEL, extra)


if __name__ == "__main__":
    main()
