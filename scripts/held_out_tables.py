"""Render the markdown tables of docs/benchmarks.md's issue 24 section from benchmarks/held_out.py's JSON lines.

    python scripts/held_out_tables.py RESULTS.jsonl [RESULTS.jsonl ...] [--exact benchmarks/results/issue24-exact-junk.jsonl]

Several result files (runs of the benchmark on different generators) make one table; each row's training seconds
are set beside the yardstick of its own run, and a later file's row of the same generator and case replaces an
earlier one (a re-run). With ``--exact`` (``benchmarks/exact_junk.py``), each junk figure has
beside it the junk an exact sampler of the asked distribution would show (the generator's own junk among the asked
digits, by the evaluator).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def mark(ok: bool, text: str) -> str:
    return text if ok else f"**{text}** ✗"


def printed_as_met(r: dict) -> bool:
    """compose printed "met" while a target compose judges (the figure, the junk) was missed."""
    return bool(r["compose_met"]) and not all(v for k, v in r["targets"].items() if k in ("kl", "share", "junk"))


#: As benchmarks/held_out.py: the yardstick's seconds on the machine issue 24 was written on, and its 3 minutes.
ISSUE_YARDSTICK, MAX_SECONDS = 25.0, 180.0


def allowed(yardstick: dict) -> float:
    """Issue 24's 3 minutes in the seconds of a run whose yardstick is ``yardstick``."""
    return MAX_SECONDS * yardstick["train_seconds"] / ISSUE_YARDSTICK


def read_rows(paths: list[str]) -> list[dict]:
    """Every row of every file; each benchmark row gets its run's yardstick (``_yardstick``), if the run timed one."""
    rows = []
    for path in paths:
        yardstick = None
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("case") == "yardstick":
                yardstick = row
            row["_yardstick"] = yardstick
            rows.append(row)
    # A later row of the same generator and case (a re-run) replaces the earlier one, in its place.
    last = {(r.get("generator"), r["case"]): i for i, r in enumerate(rows) if r.get("case") in ("debias", "classifier")}
    return [r for i, r in enumerate(rows) if r.get("case") not in ("debias", "classifier") or last[(r.get("generator"), r["case"])] == i]


def main(paths: list[str], exact_path: str | None = None) -> None:
    rows = read_rows(paths)
    exact = {}
    if exact_path:
        exact = {r["generator"]: r for r in (json.loads(x) for x in Path(exact_path).read_text().splitlines() if x.strip())}

    def exact_junk(gen: str, digit: int | None = None) -> str:
        if gen not in exact:
            return ""
        e = exact[gen]
        value = e["junk_if_uniform_by_evaluator"] if digit is None else e["junk_by_evaluator_digit"][digit]
        return f"; exact {pct(value)}"

    for y in (r for r in rows if r.get("case") == "yardstick"):
        print(f"Yardstick (`classifier:digit=3` on `mnist`, the README's demo, timed in the run): {y['train_seconds']} s of "
              f"training, against {ISSUE_YARDSTICK:.0f} s on the machine issue 24 was written on: its 3 minutes are "
              f"{allowed(y):.0f} s in this run.\n")

    def seconds(r: dict) -> str:
        y = r["_yardstick"]
        text = f"{r['train_seconds']:.0f} s"
        if y:
            text += f" ({r['train_seconds'] / y['train_seconds']:.1f}× the yardstick; ≤ {allowed(y):.0f} s)"
        return text

    print("| generator | the generator alone: KL, junk, LeNet KL, LeNet unsure | mode kept | KL (target ≤ 0.02, ≤ the generator's) | "
          "junk (≤ the generator's + 2 points) | LeNet KL, unsure | training (≤ 3 minutes of the issue's machine) | compose said |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if r.get("case") != "debias":
            continue
        b, t = r["base"], r["targets"]
        gen = f"`{r['generator']}`" + (" (held out)" if r["held_out"] else "")
        modes = " then ".join(f"{x['mode']}" + (" ✓" if x["chosen"] else "") for x in r["trials"]) or r["mode"]
        said = "met" if r["compose_met"] else "not met"
        kl = f"{r['kl']:.4f}"
        print(f"| {gen} | {b['kl']:.4f}, {pct(b['junk'])}, {b['lenet_kl']:.4f}, {pct(b['lenet_unsure'])} | {modes} | "
              f"{mark(t['kl'] and t['kl_not_above_base'], kl)} | {mark(t['junk'], pct(r['junk']))}{exact_junk(r['generator'])} | "
              f"{r['lenet_kl']:.4f}, {pct(r['lenet_unsure'])} | {mark(t['seconds'], seconds(r))} | {said} |")
    print()
    print("| generator | rarest digit K: the generator's share | share of K (≥ 95 %) | counting junk as not K | LeNet's share of K | junk (≤ the generator's + 2 points) | training | compose said |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if r.get("case") != "classifier":
            continue
        t = r["targets"]
        gen = f"`{r['generator']}`" + (" (held out)" if r["held_out"] else "")
        said = "met" if r["compose_met"] else "not met"
        print(f"| {gen} | {r['digit']}: {pct(r['base_share'])} | {mark(t['share'], pct(r['share']))} | {pct(r['share_counting_junk_as_missed'])} | "
              f"{pct(r['lenet_share'])} | {mark(t['junk'], pct(r['junk']))} (generator {pct(r['base']['junk'])}{exact_junk(r['generator'], r['digit'])}) | {seconds(r)} | {said} |")
    cases = [r for r in rows if r.get("case") in ("debias", "classifier")]
    wrong = [f"{r['generator']} {r['case']}" for r in cases if printed_as_met(r)]
    print(f"\nTargets met on {sum(r['met'] for r in cases)} of {len(cases)} rows; printed as met while a judged target was missed: "
          f"{', '.join(wrong) or 'none'}.")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="benchmarks/held_out.py output (JSON lines)")
    ap.add_argument("--exact", help="benchmarks/exact_junk.py output")
    args = ap.parse_args()
    main(args.results, args.exact)
