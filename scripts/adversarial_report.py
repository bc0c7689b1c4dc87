"""Run the adversarial catalog (tests/adversarial.py) through the installed ``promptgen`` command; print JSON.

Each case runs as its own process in a fresh workspace, as a user or an
attacker would run it, and is judged as ``tests/test_adversarial.py`` judges
it in-process: exit 2, one line on stderr, no traceback, no changed file, no
payload run. About 2 s a case here (a process start each), so the whole
catalog takes about 25 minutes; ``--sample N`` runs N cases drawn at random.

    python scripts/adversarial_report.py [--sample 100] [--seed 0] [--out report.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from adversarial import RESULTS, all_cases, build_pristine, check, make_workspace, snapshot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=None, help="run this many cases, drawn at random (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    command = shutil.which("promptgen") or str(Path(sys.executable).parent / "promptgen")
    cases = all_cases()
    if args.sample is not None:
        cases = random.Random(args.seed).sample(cases, min(args.sample, len(cases)))
    # A NUL byte cannot be passed in a command line (exec refuses it): such cases run only in-process.
    skipped = [c.name for c in cases if any("\x00" in a for a in c.args)]
    cases = [c for c in cases if c.name not in skipped]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        pristine = build_pristine(Path(tmp) / "pristine")
        for i, case in enumerate(cases):
            ws = make_workspace(pristine, Path(tmp) / f"ws{i}")
            if case.setup is not None:
                case.setup(ws)
            before = snapshot(ws)
            try:
                done = subprocess.run([command, *case.argv(ws)], cwd=ws, env={**os.environ, **case.env},
                                      capture_output=True, text=True, timeout=300, check=False)
                code, out, err = done.returncode, done.stdout, done.stderr
            except subprocess.TimeoutExpired:
                code, out, err = -1, "", "timed out after 300 s"
            RESULTS.append((case.name, check(case, ws, code, out, err, before, snapshot(ws))))
            shutil.rmtree(ws, ignore_errors=True)
            print(f"\r{i + 1}/{len(cases)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    from adversarial import summary

    report = {**summary(RESULTS), "seconds": round(time.perf_counter() - t0, 1), "through": "the promptgen command",
              "sample": args.sample, "seed": args.seed, "in_process_only": skipped}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
