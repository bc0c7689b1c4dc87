"""Issue 26: does every prompt of the issue 24 benchmark that missed a target get a warning, and no other?

Reads the rows of ``benchmarks/held_out.py`` (JSON lines) and the prompt folders that run wrote (``--out`` there),
and for each row compares the judges' verdict (KL or share, and junk, by the evaluator on 5,000 samples) with the
warnings promptgen prints for that prompt from compose's closing check: its flags
(:func:`promptgen.evaluation.closing.check_flags`, printed as ``warning:`` by compose, ``info``, ``eval`` and
``report``) and its verdict's "not met" lines (:func:`promptgen.composing.watch.verdict`).

    python benchmarks/flags_held_out.py benchmarks/results/issue24-held-out.jsonl runs/bench-held-out

A row is right when it was warned exactly if a judged target was missed. Training seconds are not a judged
target here (no flag reads time). Prints one JSON object per row and a summary.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from promptgen.artifacts.prompt import load_prompt
from promptgen.composing.watch import verdict
from promptgen.evaluation.closing import check_flags

JUDGED = ("kl", "share", "junk")


def folder(runs: Path, row: dict) -> Path:
    name = f"{row['generator']}-debias" if row["case"] == "debias" else f"{row['generator']}-digit{row['digit']}"
    return runs / name


def main(rows_path: str, runs: str) -> None:
    rows = [json.loads(x) for x in Path(rows_path).read_text().splitlines() if x.strip()]
    results = []
    for row in rows:
        if row.get("case") not in ("debias", "classifier"):
            continue
        prompt = load_prompt(folder(Path(runs), row))
        check = prompt.manifest.check
        flags = check_flags(check)
        met, lines = verdict(check) if check is not None else (None, [])
        missed = [k for k, v in row["targets"].items() if k in JUDGED and not v]
        warned = bool(flags) or met is False
        result = {
            "generator": row["generator"], "held_out": row["held_out"], "case": row["case"], "missed": missed,
            "flags": [f.kind for f in flags], "compose_met": met, "warned": warned, "right": warned == bool(missed),
            "lines": [str(f) for f in flags] + [x for x in lines if x.startswith("not met")],
        }
        results.append(result)
        print(json.dumps(result), flush=True)
    print(json.dumps({"summary": {
        "rows": len(results),
        "missed_and_warned": sum(bool(r["missed"]) and r["warned"] for r in results),
        "missed_not_warned": [f"{r['generator']} {r['case']}" for r in results if r["missed"] and not r["warned"]],
        "met_but_warned": [f"{r['generator']} {r['case']}: {'; '.join(r['lines'])}" for r in results if not r["missed"] and r["warned"]],
    }}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
