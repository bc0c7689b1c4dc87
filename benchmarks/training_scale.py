"""Issue 6 targets: training steps per second with 1 and 2 processes, and what checkpointing costs.

Trains the built-in default (``classifier:digit=3``, batch 64) through the CLI:

- one process with 2 threads, one with 1 thread, and two processes
  (``--nproc 2``, torchrun, gloo) with 1 thread each, on this 2-core machine;
  steps per second from the manifest's training time (the fit and the preview
  excluded);
- the default run (800 steps, a checkpoint every 200 steps): the share of the
  training time spent writing checkpoints (``training.checkpoint_seconds``).

    python benchmarks/training_scale.py [--steps 300] [--out runs/bench-scale]

Prints one JSON object per case.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def compose(out: Path, steps: int, threads: int, nproc: int = 1, extra: tuple[str, ...] = ()) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "promptgen", "compose", "--gen", "mnist", "--energy", "classifier:digit=3",
           "--steps", str(steps), "--out", str(out), "--overwrite", "-q", *extra]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads((out / "manifest.json").read_text())["training"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-scale"))
    args = ap.parse_args()
    for name, threads, nproc in (("1 process, 2 threads", 2, 1), ("1 process, 1 thread", 1, 1), ("2 processes, 1 thread each", 1, 2)):
        t = compose(args.out / name.replace(" ", "-").replace(",", ""), args.steps, threads, nproc)
        print(json.dumps({"case": name, "steps": args.steps, "batch": t["config"]["batch_size"], "processes": t["processes"],
                          "train_seconds": round(t["seconds"], 2), "steps_per_second": round(args.steps / t["seconds"], 2)}), flush=True)
    t = compose(args.out / "default", 800, 2)
    print(json.dumps({"case": "checkpoint overhead, default run", "steps": 800, "checkpoint_every": t["config"]["checkpoint_every"],
                      "checkpoints": 800 // t["config"]["checkpoint_every"], "train_seconds": round(t["seconds"], 2),
                      "checkpoint_seconds": round(t["checkpoint_seconds"], 3),
                      "checkpoint_share_percent": round(100 * t["checkpoint_seconds"] / t["seconds"], 2)}), flush=True)


if __name__ == "__main__":
    main()
