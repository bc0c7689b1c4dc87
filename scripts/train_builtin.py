#!/usr/bin/env python
"""Retrain promptgen's built-in MNIST digit models from the MNIST test-set folder.

Usage (from the project root):

    python scripts/train_builtin.py {generator,classifier,evaluator,realism,all}
        --data ../shared/data/mnist [--out promptgen/builtin/mnist/weights]
        [--seed N] [--epochs N] [--steps N] [--grid samples.png]

The evaluator and the realism check train on the "evaluator" split, the
control classifier on the "models" split, and the unconditional generator on
the images of the "models" split (its labels file is never opened); accuracy
is measured on the "heldout" split. With ``all`` the evaluator and classifier
are trained first so the generator's samples can be judged by them. Prints one
JSON line with the measured quality at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rich.markup import escape

from promptgen.builtin.mnist import training
from promptgen.builtin.mnist.models import WEIGHTS_DIR


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=["generator", "classifier", "evaluator", "realism", "all"])
    p.add_argument("--data", required=True, help="folder with the MNIST t10k-*.gz files")
    p.add_argument("--out", default=str(WEIGHTS_DIR), help="folder for the .safetensors files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="classifiers: override the default epoch count")
    p.add_argument("--steps", type=int, default=None, help="generator: override the default number of updates")
    p.add_argument("--grid", default=None, help="also save a 10x10 PNG grid of generator samples here")
    args = p.parse_args(argv)

    names = list(training.MODEL_NAMES) if args.model == "all" else [args.model]
    results: dict[str, object] = {}
    with training.RichBars() as bars:
        try:
            for name in names:
                if name == "generator":
                    results[name] = training.train_generator(
                        args.data, args.out, seed=args.seed, steps=args.steps, progress=bars, grid_path=args.grid
                    )
                elif name == "realism":
                    results[name] = training.train_realism(args.data, args.out, seed=args.seed, epochs=args.epochs, progress=bars)
                else:
                    results[name] = training.train_classifier_model(
                        name, args.data, args.out, seed=args.seed, epochs=args.epochs, progress=bars
                    )
                bars.console.print(f"[green]{name}[/green] done: {escape(json.dumps(results[name]))}", soft_wrap=True)
        except ValueError as exc:  # bad data folder / files
            bars.console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
            return 2
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
