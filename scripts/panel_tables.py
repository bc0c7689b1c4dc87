"""Markdown tables from the JSON lines benchmarks/panel.py prints (the tables in docs/benchmarks.md).

    python benchmarks/panel.py --data ../shared/data/mnist > runs/panel.jsonl
    python scripts/panel_tables.py runs/panel.jsonl [more.jsonl ...]

A later line for the same generator and case replaces an earlier one, so
re-runs of one case can be appended or passed after the first file. Each
table's last column says whether issue 13's target for that row is met.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ORDER = ["mnist", "panel-mlp-gan", "panel-wgan-gp", "panel-vae", "panel-biased-gan", "panel-class-latent"]


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def base(d: dict) -> list[str]:
    h = " ".join(f"{100 * x:.0f}" for x in d["digit_histogram"])
    k = d["rarest_digit"]
    return [f"`{d['generator']}`", h, f"{d['kl_uniform']:.3f}", f"{k} ({pct(d['digit_histogram'][k])})",
            f"{pct(d['agreement'])} / {pct(d['agreement_on_real_looking'])} / "
            + (pct(d["agreement_when_evaluator_sure"]) if "agreement_when_evaluator_sure" in d else "–"),
            yes(d["agreement"] >= 0.95),
            pct(d["junk_rate"]), pct(d["evaluator_unsure"]), f"{d['frechet_to_real']:.1f}"]


def classifier(d: dict) -> list[str]:
    ok = d["share"] >= 0.95 and d["junk_rate"] <= d["junk_rate_base"] + 0.02 and d["frechet_ratio"] <= 1.25
    return [f"`{d['generator']}`", f"{d['digit']}", f"{pct(d['base_share'])} → **{pct(d['share'])}**",
            f"{pct(d['junk_rate_base'])} → {pct(d['junk_rate'])}",
            f"{d['frechet_prompt']:.2f} / {d['frechet_rejection']:.2f} ({d['frechet_ratio']:.2f})",
            f"{d['train_seconds']:.0f} s", yes(ok)]


def debias(d: dict) -> list[list[str]]:
    out = []
    for r in d["rows"]:
        ok = r["kl_uniform"] <= 0.02 and r["junk_rate"] <= d["junk_rate_base"] + 0.02 and r["train_seconds"] <= 180
        out.append([f"`{d['generator']}`", f"`{r['spec']}` ({r['mode']})",
                    f"{d['kl_uniform_base']:.3f} → **{r['kl_uniform']:.4f}**",
                    f"{pct(d['junk_rate_base'])} → {pct(r['junk_rate'])}",
                    f"{d['frechet_to_real_base']:.1f} → {r['frechet_to_real']:.1f}",
                    f"{r['train_seconds']:.0f} s", yes(ok)])
    return out


def samplers(d: dict) -> list[str]:
    f, r = d["rows"][0], d["rows"][1]
    lang = " · ".join(f"{x['steps']}: {x['samples_per_second']:.0f}, {pct(x['evaluator_accuracy'])}" for x in d["rows"][2:])
    matched = d.get("langevin_matched_steps")
    vs_lang = f"{d['flow_over_langevin_best_useful']:.0f}" + ("" if matched else " (no step count reached the flow's accuracy)")
    return [f"`{d['generator']}`", f"{d['digit']}", f"{f['samples_per_second']:.0f}, {pct(f['evaluator_accuracy'])}",
            f"{r['samples_per_second']:.0f}, {pct(r['evaluator_accuracy'])}", lang,
            f"{d['flow_over_rejection']:.1f}", vs_lang]


def cost(d: dict) -> list[list[str]]:
    return [[f"`{d['generator']}`", "`" + " + ".join(r["energies"]) + "`" + (" (mixture)" if r.get("mixture") else ""),
             f"{r['floor_seconds']:.1f} s", f"{r['train_seconds']:.1f} s", f"**{r['ratio']:.2f}**", yes(r["ratio"] <= 1.5)]
            for r in d["rows"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    args = ap.parse_args()
    found: dict[tuple[str, str], dict] = {}
    for f in args.files:
        for line in f.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                found[(d["generator"], d["case"])] = d
    gens = sorted({g for g, _ in found}, key=lambda g: ORDER.index(g) if g in ORDER else len(ORDER))

    def rows(case: str) -> list[dict]:
        return [found[(g, case)] for g in gens if (g, case) in found]

    sections = [
        ("base", ["generator", "digits 0–9 by the evaluator (%)", "KL to uniform", "rarest", "agreement: all / real-looking / evaluator sure",
                  "≥ 95 %", "junk", "evaluator < 90 % sure", "FD to real"], lambda d: [base(d)]),
        ("classifier", ["generator", "K", "share of K (base → prompt)", "junk (base → prompt)",
                        "FD to real Ks: prompt / rejection (ratio)", "training", "met"], lambda d: [classifier(d)]),
        ("debias", ["generator", "spec (mode)", "KL to uniform (base → prompt)", "junk (base → prompt)", "FD to real",
                    "training", "met"], debias),
        ("samplers", ["generator", "K", "flow: /s, accuracy", "rejection: /s, accuracy", "Langevin steps: /s, accuracy",
                      "flow ÷ rejection", "flow ÷ Langevin (useful /s)"], lambda d: [samplers(d)]),
        ("cost", ["generator", "energies", "floor", "training", "ratio", "≤ 1.5"], cost),
    ]
    for case, head, render in sections:
        found_rows = [r for d in rows(case) for r in render(d)]
        if found_rows:
            print(f"### {case}\n\n{table(head, found_rows)}\n")


if __name__ == "__main__":
    main()
