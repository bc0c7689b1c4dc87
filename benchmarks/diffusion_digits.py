"""Issue 27 on the digit diffusion model: the cost of a trained prompt against its floor, and against per-image
noise optimisation.

Given prompt folders already trained on ``panel-diffusion`` (``benchmarks/panel.py --gen panel-diffusion
--case classifier --case debias`` writes them), for each:

- ``cost``: its training seconds (the manifest's) against the floor: the same number of steps of just the
  generator's and the energies' forward and backward passes on a batch (``panel.floor_seconds``), measured in
  this run, so the ratio holds on any machine;
- ``samplers`` (``classifier:digit=K`` prompts): the flow against Langevin on the same energy-based model in
  x_T, which is per-image noise optimisation (each image's x_T moved by gradient steps through the DDIM), at
  several step counts; useful samples per second (samples per second × the evaluator's share of K), both
  measured in this run.

    python benchmarks/diffusion_digits.py runs/bench-diffusion/panel-diffusion-digit5 [--langevin-steps 25 100] [--floor-repeats 1]

Prints one JSON object per prompt and case.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch
from panel import Judges, floor_seconds, sampler_row

from promptgen.artifacts.prompt import load_prompt
from promptgen.composing import prompt_ebm
from promptgen.sampling.baselines import flow_sample, langevin_sample
from promptgen.training.trainer import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prompts", nargs="+", type=Path)
    ap.add_argument("--langevin-steps", type=int, nargs="+", default=[25, 100])
    ap.add_argument("--langevin-n", type=int, default=64)
    ap.add_argument("--floor-repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    judges = Judges()
    for folder in args.prompts:
        prompt = load_prompt(folder)
        manifest = prompt.manifest
        specs = [e.spec for e in manifest.energies]
        gen = manifest.generator.spec
        config = TrainConfig(seed=args.seed, steps=manifest.training.config.steps, batch_size=manifest.training.config.batch_size)
        t = time.perf_counter()
        floor = floor_seconds(gen, specs, config, repeats=args.floor_repeats)
        print(json.dumps({"prompt": str(folder), "case": "cost", "generator": gen, "energies": specs, "steps": config.steps,
                          "batch_size": config.batch_size, "floor_seconds": round(floor, 1),
                          "train_seconds": round(manifest.training.seconds, 1), "ratio": round(manifest.training.seconds / floor, 3),
                          "bench_seconds": round(time.perf_counter() - t, 1)}), flush=True)
        asked = next((int(m.group(1)) for s in specs if (m := re.match(r"classifier:digit=(\d)$", s))), None)
        if asked is None:
            continue
        ebm = prompt_ebm(prompt)
        flow_sample(prompt, 64, seed=args.seed)  # warm-up
        rows = [sampler_row("flow", judges, asked, *flow_sample(prompt, 1000, seed=args.seed + 1))]
        for steps in args.langevin_steps:
            rows.append(sampler_row("langevin (noise optimisation)", judges, asked,
                                    *langevin_sample(ebm, args.langevin_n, steps=steps, seed=args.seed + 3, progress=False)))
        flow = rows[0]
        matched = [r for r in rows[1:] if r["evaluator_accuracy"] >= flow["evaluator_accuracy"]]
        best = max(rows[1:], key=lambda r: r["useful_per_second"])
        print(json.dumps({"prompt": str(folder), "case": "samplers", "digit": asked, "rows": rows,
                          "langevin_matched_steps": matched[0]["steps"] if matched else None,
                          "flow_over_langevin_matched": round(flow["samples_per_second"] / matched[0]["samples_per_second"], 1) if matched else None,
                          "flow_over_langevin_best_useful": round(flow["useful_per_second"] / max(best["useful_per_second"], 1e-12), 1)}), flush=True)


if __name__ == "__main__":
    main()
