"""Render the markdown tables of docs/benchmarks.md's issue 24 section from benchmarks/held_out.py's JSON lines.

    python scripts/held_out_tables.py benchmarks/results/issue24-held-out.jsonl [benchmarks/results/issue24-exact-junk.jsonl]

With the second file (``benchmarks/exact_junk.py``), each junk figure has beside it the junk an exact sampler of
the asked distribution would show (the generator's own junk among the asked digits, by the evaluator).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def mark(ok: bool, text: str) -> str:
    return text if ok else f"**{text}** ✗"


def printed_as_met(r: dict) -> bool:
    """compose printed "met" while a target compose judges (the figure, the junk) was missed."""
    return bool(r["compose_met"]) and not all(v for k, v in r["targets"].items() if k in ("kl", "share", "junk"))


def main(path: str, exact_path: str | None = None) -> None:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    exact = {}
    if exact_path:
        exact = {r["generator"]: r for r in (json.loads(x) for x in Path(exact_path).read_text().splitlines() if x.strip())}

    def exact_junk(gen: str, digit: int | None = None) -> str:
        if gen not in exact:
            return ""
        e = exact[gen]
        value = e["junk_if_uniform_by_evaluator"] if digit is None else e["junk_by_evaluator_digit"][digit]
        return f"; exact {pct(value)}"

    yardstick = next((r for r in rows if r.get("case") == "yardstick"), None)
    if yardstick:
        print(f"Yardstick (`classifier:digit=3` on `mnist`, the README's demo, same run): {yardstick['train_seconds']} s of training.\n")
    print("| generator | the generator alone: KL, junk, LeNet KL, LeNet unsure | mode kept | KL (target ≤ 0.02, ≤ the generator's) | junk (≤ the generator's + 2 points) | LeNet KL, unsure | training (≤ 180 s) | compose said |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if r.get("case") != "debias":
            continue
        b, t = r["base"], r["targets"]
        gen = f"`{r['generator']}`" + (" (held out)" if r["held_out"] else "")
        modes = " then ".join(f"{x['mode']}" + (" ✓" if x["chosen"] else "") for x in r["trials"]) or r["mode"]
        said = "met" if r["compose_met"] else "not met"
        kl, seconds = f"{r['kl']:.4f}", f"{r['train_seconds']:.0f} s"
        print(f"| {gen} | {b['kl']:.4f}, {pct(b['junk'])}, {b['lenet_kl']:.4f}, {pct(b['lenet_unsure'])} | {modes} | "
              f"{mark(t['kl'] and t['kl_not_above_base'], kl)} | {mark(t['junk'], pct(r['junk']))}{exact_junk(r['generator'])} | "
              f"{r['lenet_kl']:.4f}, {pct(r['lenet_unsure'])} | {mark(t['seconds'], seconds)} | {said} |")
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
              f"{pct(r['lenet_share'])} | {mark(t['junk'], pct(r['junk']))} (generator {pct(r['base']['junk'])}{exact_junk(r['generator'], r['digit'])}) | {r['train_seconds']:.0f} s | {said} |")
    cases = [r for r in rows if r.get("case") in ("debias", "classifier")]
    wrong = [f"{r['generator']} {r['case']}" for r in cases if printed_as_met(r)]
    print(f"\nTargets met on {sum(r['met'] for r in cases)} of {len(cases)} rows; printed as met while a judged target was missed: "
          f"{', '.join(wrong) or 'none'}.")


if __name__ == "__main__":
    main(*sys.argv[1:3])
