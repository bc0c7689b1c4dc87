"""How long `promptgen --help` and `promptgen list` take, here and in an older checkout, interleaved.

    python benchmarks/cli_startup.py --before ../promptgen-0.1 --repeats 15

Each command runs as a fresh process (``python -m promptgen ...``, so Python's
own start-up is included) with ``PYTHONPATH`` pointing at one checkout; the
two checkouts alternate so background load hits both alike. ``--before`` is a
git worktree of the older commit (``git worktree add ../promptgen-0.1 94abfbb``);
both use the plugins installed in this Python. Prints JSON: the median and
best seconds of each command in each checkout, and the ratio now / before.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {"--help": ["--help"], "list": ["list"]}


def python_path(root: Path) -> str:
    """The checkout and its own plugins' sources: each checkout runs with the plugins of its time.

    The installed distributions' entry points name the same modules in both
    (``promptgen_plugin_stylegan2``...), so the path decides which code loads.
    Only the core's ``prompts`` entry point differs (``promptgen.artifacts.prompt_plugin``
    now, ``promptgen.chaining`` before): the older checkout reports it as failed
    to import, which if anything makes it a little faster.
    """
    sources = sorted(str(p) for p in root.glob("plugins/*/src")) + sorted(str(p) for p in root.glob("examples/*/src"))
    return os.pathsep.join([str(root), *sources])


def run_once(root: Path, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": python_path(root), "COLUMNS": "100", "PYTHONWARNINGS": "ignore"}
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "promptgen", *args], cwd=root, env=env, capture_output=True, check=False)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"`promptgen {' '.join(args)}` failed in {root}: {done.stderr.decode()[-400:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="checkout of the older commit to compare with")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    now = Path(__file__).resolve().parents[1]
    roots = {"now": now, "before": args.before.resolve()}
    times: dict[str, dict[str, list[float]]] = {c: {k: [] for k in roots} for c in COMMANDS}
    for command, argv in COMMANDS.items():
        for root in roots.values():
            run_once(root, argv)  # warm the file cache
        for _ in range(args.repeats):
            for key, root in roots.items():
                times[command][key].append(run_once(root, argv))
    out = {"repeats": args.repeats, "python": sys.version.split()[0], "cpus": os.cpu_count()}
    for command, by_root in times.items():
        row = {k: {"median_s": round(statistics.median(v), 4), "best_s": round(min(v), 4)} for k, v in by_root.items()}
        row["ratio_median"] = round(row["now"]["median_s"] / row["before"]["median_s"], 3)
        out[command] = row
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
