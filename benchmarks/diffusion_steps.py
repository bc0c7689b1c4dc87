"""Issue 27: a diffusion prompt trained through few DDIM steps, sampled with many: does it keep its target?

For each prompt folder given (trained on ``panel-diffusion`` or any diffusers generator of digits), samples
``-n`` images at each ``--sample-steps`` count from the same flow and the same noise, and judges them with the
independent evaluator and its realism check: the share of the asked digit (``classifier:digit=K``) or the KL
to uniform (``debias:digit``), and the junk rate; the generator alone is judged at each count too.

    python benchmarks/diffusion_steps.py runs/bench-diffusion/panel-diffusion-classifier [-n 5000] [--sample-steps 4 20 50 100]

Prints one JSON object per prompt and step count.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch
from panel import Judges, histogram, rate, uniform_kl

from promptgen.artifacts.prompt import load_prompt, sample_images


def sampler_of(generator):
    inner = getattr(generator, "inner", generator)
    return inner.module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prompts", nargs="+", type=Path)
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sample-steps", type=int, nargs="+", default=[4, 20, 50, 100])
    args = ap.parse_args()
    torch.set_num_threads(2)
    judges = Judges()
    for folder in args.prompts:
        prompt = load_prompt(folder)
        specs = [e.spec for e in prompt.manifest.energies]
        asked = next((int(m.group(1)) for s in specs if (m := re.match(r"classifier:digit=(\d)", s))), None)
        sampler = sampler_of(prompt.base)
        trained = sampler.steps
        for steps in args.sample_steps:
            sampler.sample_steps = steps
            row: dict = {"folder": str(folder), "energies": specs, "train_steps": trained, "sample_steps": steps, "n": args.n}
            for side, source in (("generator", prompt.base), ("prompt", prompt)):
                t = time.perf_counter()
                images = sample_images(source, args.n, seed=args.seed)
                seconds = time.perf_counter() - t
                j = judges(images)
                figure = {"junk": round(1 - rate(j["real"]), 4), "sample_seconds": round(seconds, 1)}
                if asked is not None:
                    figure[f"share_{asked}"] = round(histogram(j["digit"])[asked], 4)
                    figure[f"share_{asked}_counting_junk"] = rate((j["digit"] == asked) & j["real"])
                else:
                    figure["kl_uniform"] = round(uniform_kl(j["digit"][j["real"]]), 4)
                row[side] = figure
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
