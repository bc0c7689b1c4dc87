"""Issue 17 targets: a conditional digit prompt whose slant is set by the condition, judged by the evaluators.

Trains ``promptgen compose --gen mnist --energy slant --energy digit-id --energy debias:digit,mode=mixture
--cond slant=-0.3:0.3 --steps 1600 --transforms 8`` (unless told otherwise), then decodes ``--eps`` noises ε at each of ``--columns`` slants evenly over the
training range (1,000 × 7 by default) and measures, with models that define no energy:

- ``spearman``: rank correlation between the condition and the evaluator's slant (the shear of the
  *binarised* image, not the control's soft shear), pooled over all ε × slants; also the median of the
  per-ε correlations;
- ``same_digit``: the share of ε whose digit, by the independent evaluator classifier, is the same in
  every column;
- ``digit_shares``, ``digit_kl_to_base``: the evaluator's digit histogram over all samples against the base's
  (a prompt that keeps the digit by drawing only zeros shows here);
- ``junk_rate``: the share of samples the evaluator's realism check calls "not a digit", beside the
  base generator's on as many samples;
- ``train_seconds``: compose's training time (fits included).

    python benchmarks/conditional_mnist.py [--out runs/bench-slant] [--steps 1600] [--eps 1000] [--columns 7]
        [--energy slant --energy digit-id ...] [--range -0.3:0.3] [--grid docs/images/slant-sweep.png]
        [--transforms 8 --hidden N --flow KIND] [--lenet ../shared/foreign/lenet/lenet_epoch=12_test_acc=0.991.pth]

``debias:digit,mode=mixture`` is in the default because without it the flow keeps "the same digit" by
drawing only the digits that are easiest to keep (``digit_shares`` shows it; docs/benchmarks.md).

``--gen panel-vae`` (any digit generator, e.g. the panel's) runs the same on a generator the demo was not tuned on.

Prints one JSON object. ``--grid`` also writes a sweep picture (8 ε × the columns).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from promptgen.artifacts.prompt import sample_images, sweep_images
from promptgen.builtin.mnist.strokes import shear
from promptgen.composing import compose
from promptgen.core.images import save_images
from promptgen.core.registry import get_registry
from promptgen.training.trainer import TrainConfig


def ranks(x: torch.Tensor) -> torch.Tensor:
    r = torch.empty_like(x)
    r[x.argsort()] = torch.arange(len(x), dtype=x.dtype)
    return r


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation (ties broken by order; the conditions' ties only shift ranks within a column)."""
    ra, rb = ranks(a.double() + 1e-9 * torch.arange(len(a), dtype=torch.float64)), ranks(b.double())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def evaluator_slant(images: torch.Tensor) -> torch.Tensor:
    return shear((images > 0.5).to(images.dtype))


@torch.no_grad()
def measure(prompt, eps: int, columns: int, seed: int, lenet: Path | None = None) -> dict:
    cond = prompt.conditions[0]
    values = [cond.low + (cond.high - cond.low) * i / (columns - 1) for i in range(columns)]
    grid = torch.cat([sweep_images(prompt, min(500, eps - s), cond.name, values, seed=seed + s) for s in range(0, eps, 500)])
    registry = get_registry()
    judge = registry.build_classifier("mnist-digit-evaluator")
    flat = grid.flatten(0, 1)
    digits = torch.cat([judge.log_probs(x)["digit"].argmax(1) for x in flat.split(1000)]).view(eps, columns)
    junk = torch.cat([judge.realism(x) < 0 for x in flat.split(1000)])
    base = sample_images(prompt.base, eps * columns, seed=seed + 10_000)
    base_junk = torch.cat([judge.realism(x) < 0 for x in base.split(1000)])
    base_digits = torch.cat([judge.log_probs(x)["digit"].argmax(1) for x in base.split(1000)])
    share = torch.bincount(digits.flatten(), minlength=10).double() / digits.numel()
    base_share = torch.bincount(base_digits, minlength=10).double() / base_digits.numel()
    slant = evaluator_slant(flat).view(eps, columns)
    asked = torch.tensor(values).expand(eps, columns)
    per_eps = [spearman(asked[i], slant[i]) for i in range(eps)]
    third_party = {}
    if lenet is not None:  # a judge trained elsewhere, on the 60,000 MNIST training images
        from promptgen_plugin_foreign_digits.judge import LeNetJudge

        lenet_digits, _ = LeNetJudge(lenet).judge(flat)
        lenet_digits = lenet_digits.view(eps, columns)
        third_party = {
            "lenet_same_digit": float((lenet_digits == lenet_digits[:, :1]).all(1).double().mean()),
            "lenet_digit_shares": [round(float(v), 4) for v in torch.bincount(lenet_digits.flatten(), minlength=10).double() / lenet_digits.numel()],
        }
    return {
        "condition": cond.name,
        "values": values,
        "eps": eps,
        "spearman": spearman(asked.flatten(), slant.flatten()),
        "spearman_median_per_eps": float(torch.tensor(per_eps).nan_to_num(0.0).median()),
        "evaluator_slant_mean_by_column": [float(v) for v in slant.mean(0)],
        "same_digit": float((digits == digits[:, :1]).all(1).double().mean()),
        "junk_rate": float(junk.double().mean()),
        "base_junk_rate": float(base_junk.double().mean()),
        "base_slant_spread": float(evaluator_slant(base).std()),
        # Diversity: a prompt that keeps "the same digit" by drawing only zeros must show here.
        "digit_shares": [round(float(v), 4) for v in share],
        "base_digit_shares": [round(float(v), 4) for v in base_share],
        "digit_kl_to_base": float((share * (share.clamp_min(1e-12) / base_share.clamp_min(1e-12)).log()).sum()),
        **third_party,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/bench-slant"))
    p.add_argument("--gen", default="mnist", help="the generator (e.g. a panel one: panel-vae, panel-wgan-gp)")
    p.add_argument("--energy", action="append", default=None)
    p.add_argument("--range", default="-0.3:0.3")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eps", type=int, default=1000)
    p.add_argument("--columns", type=int, default=7)
    p.add_argument("--grid", type=Path, default=None)
    p.add_argument("--transforms", type=int, default=8, help="coupling layers")
    p.add_argument("--hidden", type=int, default=None, help="hidden width (default: compose's)")
    p.add_argument("--flow", default=None, help="affine-coupling or spline-coupling (default: compose's auto)")
    p.add_argument("--reuse", action="store_true", help="measure the prompt already in --out")
    p.add_argument("--lenet", type=Path, default=None,
                   help="also judge by the third-party LeNet-5 (../shared/foreign/lenet/lenet_epoch=12_test_acc=0.991.pth)")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("PROMPTGEN_THREADS", "2")))
    energies = args.energy or ["slant", "digit-id", "debias:digit,mode=mixture"]
    settings = {"steps": 1600 if args.steps is None else args.steps}
    t = time.perf_counter()
    if args.reuse:
        from promptgen.artifacts.prompt import load_prompt

        prompt = load_prompt(args.out)
    else:
        prompt = compose(
            args.gen, energies, args.out, train=TrainConfig(seed=args.seed, **settings), conditions=[f"slant={args.range}"],
            flow={k: v for k, v in {"transforms": args.transforms, "hidden": args.hidden, "kind": args.flow}.items() if v is not None},
            overwrite=True, progress=False, preview=0,
        )
    wall = time.perf_counter() - t
    result = {
        "benchmark": "conditional_mnist",
        "generator": args.gen,
        "energies": energies,
        "range": args.range,
        "steps": prompt.manifest.training.config.steps,
        "flow": prompt.manifest.flow.model_dump(include={"kind", "transforms", "hidden"}),
        "train_seconds": prompt.manifest.training.seconds,
        "compose_wall_seconds": wall,
        "threads": torch.get_num_threads(),
        **measure(prompt, args.eps, args.columns, args.seed + 1, args.lenet),
    }
    if args.grid is not None:
        cond = prompt.conditions[0]
        values = [cond.low + (cond.high - cond.low) * i / (args.columns - 1) for i in range(args.columns)]
        save_images(sweep_images(prompt, 8, cond.name, values, seed=args.seed + 2).flatten(0, 1), args.grid, nrow=args.columns)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
