"""Issue 26: how often `promptgen eval`'s 95 % intervals of 2,000 samples cover the figure of 5,000.

A ``debias:digit`` prompt on the built-in ``mnist`` generator (composed into ``--out`` unless ``--prompt`` names
one) is judged once on ``--reference-n`` samples (5,000; seed 1000): the reference figures. Then ``--repeats``
times (20) on ``-n`` fresh samples (2,000; seeds 1..20), each with its intervals. For every figure (each class
share of base and prompt, their KL to the target, their junk rates, each Fréchet distance to the real digits of
``--data``) it counts the repeats whose interval holds the reference figure. Target: at least 19 of 20.

The reference figure is itself measured on finite samples: an exact 95 % interval of 2,000 samples covers an
independent 5,000-sample figure only about 90 % of the time (the difference has 1 + 2000/5000 times the
variance), so ``expected_coverage`` is printed beside the counts; and, for the shares and KL, the coverage of the
figure of all samples pooled (5,000 + 20 × 2,000), a closer stand-in for the truth.

With ``--nested``, each repeat's reference is instead the 5,000-sample figure *at the same seed*, as `promptgen eval
-n 5000` and `promptgen report -n 2000` of one prompt give it by default: eval and report draw the same noise, batch
by batch, so the report's 2,000 samples are the first 2,000 of the eval's. Then an exact 95 % interval covers the
5,000-sample figure about 98.9 % of the time (the difference has 1 − 2000/5000 times the variance).

    python benchmarks/ci_coverage.py [--prompt PATH] [--data ../shared/data/mnist] [--steps 800] [--out runs/bench-ci-coverage] [--nested]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from promptgen.composing import compose
from promptgen.core.metrics import kl_divergence
from promptgen.evaluation.evaluate import EvalReport, evaluate_prompt
from promptgen.training.trainer import TrainConfig

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"


def figures(report: EvalReport) -> dict[str, tuple[float | None, tuple[float, float] | None]]:
    """name -> (figure, its interval) of every share, KL and Fréchet distance in ``report``."""
    out: dict[str, tuple[float | None, tuple[float, float] | None]] = {}
    for side in ("base", "prompt"):
        s = report.side(side)
        out[f"{side} junk rate"] = (s.junk_rate, s.junk_rate_ci)
        out[f"{side} Fréchet distance"] = (s.frechet, s.frechet_ci)
        for a in report.attributes:
            r = getattr(a, side)
            if r is None:
                continue
            for label, h, ci in zip(a.labels, r.histogram, r.histogram_ci or [None] * len(a.labels)):
                out[f"{side} {a.attribute} {label} share"] = (h, ci)
            if r.kl is not None:
                out[f"{side} {a.attribute} KL"] = (r.kl, r.kl_ci)
            if r.share is not None:
                out[f"{side} {a.attribute} asked share"] = (r.share, r.share_ci)
    out["Fréchet distance base-prompt"] = (report.frechet_base_prompt, report.frechet_base_prompt_ci)
    out["Fréchet distance of exact samples"] = (report.frechet_exact, report.frechet_exact_ci)
    return {k: v for k, v in out.items() if v[0] is not None and v[1] is not None}


def pooled(reports: list[EvalReport]) -> dict[str, float]:
    """The shares and KL of all the reports' samples together (histograms weighted by the samples they count)."""
    out: dict[str, float] = {}
    first = reports[0]
    for side in ("base", "prompt"):
        for i, a in enumerate(first.attributes):
            rows = [getattr(r.attributes[i], side) for r in reports]
            total = sum(r.counted or 0 for r in rows)
            hist = [sum((r.counted or 0) * r.histogram[j] for r in rows) / total for j in range(len(a.labels))]
            for label, h in zip(a.labels, hist):
                out[f"{side} {a.attribute} {label} share"] = h
            if a.target is not None:
                out[f"{side} {a.attribute} KL"] = kl_divergence(hist, a.target)
        junk = [r.side(side).junk_rate for r in reports]
        if all(j is not None for j in junk):
            out[f"{side} junk rate"] = sum(j * r.n for j, r in zip(junk, reports)) / sum(r.n for r in reports)  # type: ignore[operator]
    return out


def kind(name: str) -> str:
    return "KL" if name.endswith("KL") else ("Fréchet" if "Fréchet" in name else "share")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt", type=Path, help="a prompt folder (default: compose debias:digit on mnist into --out)")
    ap.add_argument("--spec", default="debias:digit", help="the energy composed when --prompt is not given")
    ap.add_argument("--steps", type=int, default=800, help="training steps of the composed prompt")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-ci-coverage"))
    ap.add_argument("--data", type=Path, default=DATA, help="real digits for the Fréchet distances")
    ap.add_argument("--reference-n", type=int, default=5000)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--progress", type=Path, help="append each report's JSON here as it is made (the reference first)")
    ap.add_argument("--nested", action="store_true", help="each repeat against the reference-n figure at its own seed (eval and report's case)")
    ap.add_argument("--no-data", action="store_true", help="no Fréchet distances (faster)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    prompt = args.prompt
    if prompt is None:
        prompt = args.out / args.spec.replace(":", "-").replace(",", "-")
        if not (prompt / "manifest.json").is_file():
            compose("mnist", [args.spec], prompt, train=TrainConfig(seed=0, steps=args.steps), overwrite=True, progress=False, preview=64)
    train_seconds = time.perf_counter() - t0
    data = args.data if args.data.exists() and not args.no_data else None

    reference = evaluate_prompt(prompt, n=args.reference_n, seed=1000, data=data).report
    truth = figures(reference)
    repeats, references = [], []
    for seed in range(1, args.repeats + 1):
        repeats.append(evaluate_prompt(prompt, n=args.n, seed=seed, data=data).report)
        if args.nested:
            references.append(figures(evaluate_prompt(prompt, n=args.reference_n, seed=seed, data=data).report))
        if args.progress is not None:  # each repeat's report as it comes, so a long run can be read before it ends
            with args.progress.open("a", encoding="utf-8") as f:
                f.write((reference if seed == 1 else repeats[-1]).model_dump_json() + "\n")
                if seed == 1:
                    f.write(repeats[-1].model_dump_json() + "\n")
    pool = pooled([reference, *repeats])

    rows = {}
    for name, (value, _) in truth.items():
        seen = [figures(r).get(name) for r in repeats]
        if args.nested:  # each interval against the figure of its own seed's 5,000 samples
            pairs = [(s[1], ref[name][0]) for s, ref in zip(seen, references) if s is not None and s[1] is not None and name in ref]
        else:
            pairs = [(s[1], value) for s in seen if s is not None and s[1] is not None]
        intervals = [ci for ci, _ in pairs]
        covered = sum(lo <= v <= hi for (lo, hi), v in pairs)
        row: dict[str, object] = {
            "kind": kind(name), "reference": round(value, 6), "covered": covered, "of": len(intervals),
            "mean_width": round(sum(hi - lo for lo, hi in intervals) / max(len(intervals), 1), 6),
        }
        if name in pool:
            row["covered_pooled"] = sum(lo <= pool[name] <= hi for lo, hi in intervals)
            row["pooled"] = round(pool[name], 6)
        rows[name] = row
    by_kind: dict[str, dict[str, float]] = {}
    for k in ("share", "KL", "Fréchet"):
        chosen = [r for r in rows.values() if r["kind"] == k]
        if chosen:
            by_kind[k] = {
                "figures": len(chosen),
                "meeting_19_of_20": sum(int(r["covered"]) >= 19 for r in chosen),  # type: ignore[call-overload]
                "coverage": round(sum(int(r["covered"]) for r in chosen) / sum(int(r["of"]) for r in chosen), 4),  # type: ignore[call-overload]
            }
            pooled_rows = [r for r in chosen if "covered_pooled" in r]
            if pooled_rows:
                by_kind[k]["coverage_pooled"] = round(
                    sum(int(r["covered_pooled"]) for r in pooled_rows) / sum(int(r["of"]) for r in pooled_rows), 4  # type: ignore[call-overload]
                )
    ratio = (-1 if args.nested else 1) * args.n / args.reference_n
    print(json.dumps({
        "benchmark": "ci_coverage", "nested": args.nested, "prompt": str(prompt), "generator": reference.generator,
        "energies": [e.spec for e in reference.energies], "reference_n": args.reference_n, "n": args.n, "repeats": args.repeats,
        "intervals": reference.intervals.model_dump() if reference.intervals else None,
        "expected_coverage": round(math.erf(1.959964 / math.sqrt(1 + ratio) / math.sqrt(2)), 4),
        "by_kind": by_kind, "figures": rows,
        "train_seconds": round(train_seconds, 1), "seconds": round(time.perf_counter() - t0, 1),
    }, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
