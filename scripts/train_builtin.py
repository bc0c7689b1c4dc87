#!/usr/bin/env python
"""Retrain promptgen's built-in MNIST digit models from the MNIST test-set folder.

Usage (from the project root):

    python scripts/train_builtin.py {generator,classifier,evaluator,all}
        --data ../shared/data/mnist [--out promptgen/builtin/mnist/weights]
        [--seed N] [--epochs N] [--grid samples.png]

The evaluator trains on the "evaluator" split, the classifier and generator on
the "models" split; accuracy is measured on the "heldout" split. With ``all``
the evaluator is trained first so the generator's samples can be judged by it.
Prints one JSON line with the measured quality at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from promptgen.builtin.mnist import training
from promptgen.builtin.mnist.models import WEIGHTS_DIR


class _Bar:
    def __init__(self, progress: Progress, label: str, total: int) -> None:
        self.progress = progress
        self.task = progress.add_task(label, total=total, info="")

    def advance(self, n: int = 1, **fields: object) -> None:
        self.progress.update(self.task, advance=n, **fields)

    def close(self) -> None:
        self.progress.refresh()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=["generator", "classifier", "evaluator", "all"])
    p.add_argument("--data", required=True, help="folder with the MNIST t10k-*.gz files")
    p.add_argument("--out", default=str(WEIGHTS_DIR), help="folder for the .safetensors files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="override the default epoch count")
    p.add_argument("--grid", default=None, help="also save a 10x10 PNG grid of generator samples here")
    args = p.parse_args(argv)

    console = Console(stderr=True)
    names = list(training.MODEL_NAMES) if args.model == "all" else [args.model]
    results: dict[str, object] = {}
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
    )
    try:
        with progress:
            factory = lambda label, total: _Bar(progress, label, total)
            for name in names:
                if name == "generator":
                    results[name] = training.train_generator(
                        args.data, args.out, seed=args.seed, epochs=args.epochs,
                        progress=factory, grid_path=args.grid,
                    )
                else:
                    results[name] = training.train_classifier_model(
                        name, args.data, args.out, seed=args.seed, epochs=args.epochs,
                        progress=factory,
                    )
                console.print(f"[green]{name}[/green] done: {escape(json.dumps(results[name]))}", soft_wrap=True)
    except ValueError as exc:  # bad data folder / files
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        return 2
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
