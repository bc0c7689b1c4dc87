"""The sweep behind docs/flow.md and docs/specs.md: classifier:digit=K under other settings.

Each argument is a JSON object of TrainConfig fields plus ``w`` (the energy
weight) and optionally ``flow`` (FlowConfig overrides). For each, a prompt is
trained and 1,000 samples are judged by the independent evaluator: share of Ks
and the Fréchet distance to held-out real Ks divided by that of exact
rejection samples (``--gen``, default the built-in ``mnist``; ``--digit``,
default 3). Prints one JSON line per setting.

    python benchmarks/sweep_compose.py --data ../shared/data/mnist \\
        '{"w": 30, "seed": 1, "flow": {"transforms": 4}}' '{"w": 100, "steps": 600}'
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from promptgen.artifacts.prompt import build_generator, sample_images
from promptgen.builtin.mnist.models import load_pretrained
from promptgen.composing import compose
from promptgen.core.metrics import frechet_distance
from promptgen.datasets.mnist import load_split
from promptgen.training.trainer import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("settings", nargs="+")
    ap.add_argument("--gen", default="mnist", help="generator spec (default: the built-in mnist)")
    ap.add_argument("--digit", type=int, default=3, choices=range(10))
    args = ap.parse_args()
    k = args.digit
    evaluator = load_pretrained("evaluator")
    real, labels = load_split(args.data, "heldout")
    with torch.no_grad():
        real_feat = evaluator.features(real[labels == k])
        accepted = []
        base = build_generator(args.gen)
        s = 0
        while sum(len(a) for a in accepted) < 1000 and s < 40:  # up to 200,000 draws for a rare digit
            images = sample_images(base, 5000, seed=100 + s)
            accepted.append(evaluator.features(images[evaluator(images).argmax(1) == k]))
            s += 1
        fd_rejection = frechet_distance(torch.cat(accepted)[:1000], real_feat)
    tmp = Path(tempfile.mkdtemp(prefix="promptgen-sweep-"))
    for text in args.settings:
        setting = json.loads(text)
        weight = setting.pop("w")
        flow = setting.pop("flow", None)
        out = tmp / "prompt"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        prompt = compose(args.gen, [f"classifier:digit={k}@{weight}"], out, train=TrainConfig(**setting), flow=flow,
                         progress=False, preview=0)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            images = sample_images(prompt, 1000, seed=5)
            share = float((evaluator(images).argmax(1) == k).double().mean())
            fd = frechet_distance(evaluator.features(images), real_feat)
        print(json.dumps({"gen": args.gen, "digit": k, "w": weight, **setting, "flow": flow, "seconds": round(seconds, 1), "share": share,
                          "fd": round(fd, 2), "fd_ratio": round(fd / fd_rejection, 3)}), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
