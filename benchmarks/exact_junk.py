"""The junk an exact sampler of the asked distribution would show: the generator's own junk rate, digit by digit.

``benchmarks/held_out.py`` holds a prompt's junk to the generator's overall junk plus 2 points (issue 24's target).
But evening out a generator's digits, or asking for its rarest, draws more of the digits it draws worst: an exact
sampler (rejection sampling of the generator itself) would show the generator's junk *among the asked digits*.
This prints, per generator, the junk rate (promptgen's realism check) among the base samples each judge calls K,
and its average over the ten digits (the exact junk of ``debias:digit``'s uniform target).

    python benchmarks/exact_junk.py [--gen foreign-mlp-gan] [-n 20000] [--lenet FILE]

Prints one JSON object per generator.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from promptgen.artifacts.prompt import build_generator, sample_images
from promptgen.core.registry import get_registry

HELD_OUT = Path(__file__).with_name("held_out.py")


def main() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("held_out", HELD_OUT)
    held_out = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(held_out)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gen", action="append")
    ap.add_argument("--foreign", type=Path, default=Path("../shared/foreign"))
    ap.add_argument("--lenet", type=Path, default=None)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    torch.set_num_threads(2)
    judges = held_out.Judges(args.lenet or (args.foreign / held_out.LENET if (args.foreign / held_out.LENET).exists() else None))
    control = get_registry().build_classifier("mnist-digit", {})
    for gen in args.gen or held_out.CHOSEN_ON + held_out.HELD_OUT:
        images = sample_images(build_generator(held_out.spec_of(gen, args.foreign)), args.n, seed=args.seed)
        j = judges(images)
        with torch.no_grad():
            j["control"] = torch.cat([control.log_probs(c)["digit"].argmax(1) for c in images.split(1000)])
        junk = 1 - j["real"].double()
        row = {"generator": gen, "n": args.n, "junk": round(float(junk.mean()), 4)}
        for judge in ("digit", "lenet", "control"):
            by = [float(junk[j[judge] == k].mean()) if bool((j[judge] == k).any()) else float("nan") for k in range(10)]
            name = {"digit": "evaluator", "lenet": "lenet", "control": "control"}[judge]
            row[f"junk_by_{name}_digit"] = [round(v, 4) for v in by]
            row[f"junk_if_uniform_by_{name}"] = round(sum(by) / 10, 4)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
