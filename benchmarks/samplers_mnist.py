"""Issue 3 sampler targets: the trained flow against rejection and Langevin sampling of the same model.

For each target (``--target``, repeatable; default all, from common to rare):

    digit=3            classifier:digit=3
    thick              classifier:thickness=thick
    thick-3            classifier:digit=3 + classifier:thickness=thick
    thick-7            classifier:digit=7 + classifier:thickness=thick
    thick-1            classifier:digit=1 + classifier:thickness=thick

a prompt is trained with the default settings, then images are drawn three ways
from the same energy-based model:

- ``flow``: the prompt, one pass per image;
- ``rejection``: base samples kept when the control classifiers' top classes
  are the asked ones (``--accept attribute``; what a user does by hand);
- ``langevin`` (``digit=3`` only): Metropolis-adjusted Langevin in latent
  space from N(0, I), at several step counts, to find the cost of matching the
  flow's accuracy.

Each method's *useful samples per second* is its images per second times the
share of them that the independent evaluators judge correct, so methods are
compared at the accuracy each reaches; the ratios are the flow's over each.

    python benchmarks/samplers_mnist.py [--target digit=3] [--seed 0] [--out runs/bench-samplers]

Prints one JSON object per target.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from promptgen.composing import compose, prompt_ebm
from promptgen.core.registry import get_registry
from promptgen.sampling.baselines import flow_sample, langevin_sample, rejection_sample
from promptgen.training.trainer import TrainConfig

TARGETS = {
    "digit=3": ["classifier:digit=3"],
    "thick": ["classifier:thickness=thick"],
    "thick-3": ["classifier:digit=3", "classifier:thickness=thick"],
    "thick-7": ["classifier:digit=7", "classifier:thickness=thick"],
    "thick-1": ["classifier:digit=1", "classifier:thickness=thick"],
}


@torch.no_grad()
def evaluator_accuracy(prompt, images: torch.Tensor) -> float:
    """Share of images whose independent evaluators' top classes are all the asked ones."""
    registry = get_registry()
    ok = torch.ones(len(images), dtype=torch.bool)
    for record in prompt.manifest.energies:
        for t in record.targets:
            entry, independent = registry.evaluator_for(t.attribute)
            assert independent, t.attribute
            clf = registry.build_classifier(entry.name)
            labels = [str(x) for x in entry.attributes[t.attribute]]
            top = torch.cat([clf.log_probs(chunk)[t.attribute].argmax(1) for chunk in images.split(500)])
            for label in t.asked:
                ok &= top == labels.index(label)
    return float(ok.double().mean())


def row(name: str, prompt, images: torch.Tensor, cost) -> dict:
    acc = evaluator_accuracy(prompt, images)
    return {
        "method": name,
        "n": cost.accepted,
        "seconds": round(cost.seconds, 3),
        "samples_per_second": round(cost.samples_per_second, 2),
        "evaluator_accuracy": round(acc, 4),
        "useful_per_second": round(cost.samples_per_second * acc, 2),
        "draws_per_sample": round(cost.draws_per_sample, 1),
        "acceptance_rate": None if cost.acceptance_rate is None else round(cost.acceptance_rate, 5),
        "steps": cost.steps,
        "mh_acceptance": None if cost.mh_acceptance is None else round(cost.mh_acceptance, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", action="append", choices=list(TARGETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--flow-n", type=int, default=2000)
    ap.add_argument("--rejection-n", type=int, default=200)
    ap.add_argument("--langevin-n", type=int, default=64)
    ap.add_argument("--langevin-steps", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-samplers"))
    args = ap.parse_args()
    torch.set_grad_enabled(True)
    for name in args.target or list(TARGETS):
        prompt = compose("mnist", TARGETS[name], args.out / name, train=TrainConfig(seed=args.seed), overwrite=True,
                         progress=False, preview=64)
        ebm = prompt_ebm(prompt)
        rows = []
        flow_sample(prompt, 100, seed=args.seed)  # warm-up
        rows.append(row("flow", prompt, *flow_sample(prompt, args.flow_n, seed=args.seed + 1)))
        rejection_sample(ebm, 4, accept="attribute", seed=args.seed, progress=False)  # warm-up
        rows.append(row("rejection", prompt, *rejection_sample(ebm, args.rejection_n, accept="attribute", seed=args.seed + 2,
                                                               max_draws=10_000_000, progress=False)))
        if name == "digit=3":
            for steps in args.langevin_steps:
                rows.append(row("langevin", prompt, *langevin_sample(ebm, args.langevin_n, steps=steps, seed=args.seed + 3,
                                                                     progress=False)))
        flow = rows[0]
        rejection = rows[1]
        out = {"target": name, "energies": TARGETS[name], "seed": args.seed, "rows": rows,
               "flow_over_rejection": round(flow["useful_per_second"] / rejection["useful_per_second"], 1)}
        langevin = [r for r in rows if r["method"] == "langevin"]
        if langevin:
            matched = [r for r in langevin if r["evaluator_accuracy"] >= flow["evaluator_accuracy"]]
            # The fewest steps that match the flow's accuracy; without a match, the most steps tried, and then
            # the ratio is a lower bound (matching would take more steps, so more time per sample).
            best = matched[0] if matched else max(langevin, key=lambda r: r["steps"])
            out["langevin_matched_steps"] = best["steps"] if matched else None
            out["flow_over_langevin"] = round(flow["samples_per_second"] / best["samples_per_second"], 1)
            out["flow_over_langevin_is_lower_bound"] = not matched
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
