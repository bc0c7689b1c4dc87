"""Issue 24: every control target on the default, the digit panel and the two foreign generators, judged twice.

Generators (``--gen``, repeatable; default all eight), and which were used to choose promptgen's rules:

- chosen on: ``mnist`` (the default) and the five panel generators (``promptgen-plugin-digit-panel``);
- held out: ``foreign-mlp-gan`` and ``foreign-mlp-vae`` (``promptgen-plugin-foreign-digits``; their files
  from ``--foreign``, default ``../shared/foreign``), trained by a stranger on the 60,000 MNIST training images.

Judges, neither of which defines an energy:

- promptgen's independent evaluator and its realism check (4,000 digits of the MNIST test set's "evaluator"
  split): the digit histogram of the samples that pass the check, its KL to uniform, and the *junk* rate;
- a third-party LeNet-5 (csinva's, trained on the 60,000 MNIST training images; ``--lenet``, else downloaded): its
  histogram and KL, and the share it is less than 90 % sure of (*unsure*), a second, independent sign of junk.

Cases (``--case``, repeatable; default both), each with all defaults as a user would type them:

- ``debias``: ``debias:digit``. Targets: KL to uniform at most 0.02 and never above the generator's; junk at
  most the generator's plus 2 points; training (fit, mode trials and flow) at most 3 minutes.
- ``classifier``: ``classifier:digit=K`` for the generator's rarest digit K (by the evaluator). Targets: at least
  95 % K; junk at most the generator's plus 2 points.

Each row records compose's own closing check and whether it said the target was met: a row that misses a target
by this benchmark's judges while compose printed "met" is the failure issue 24 forbids (``printed_as_met``).
The seconds of a ``classifier:digit=3`` prompt on ``mnist`` (the README's demo), measured in the same run, give
a yardstick for the machine (``--yardstick``).

    python benchmarks/held_out.py --data ../shared/data/mnist [--gen foreign-mlp-gan] [--case debias] [-n 5000]

Prints one JSON object per generator and case, and a summary line.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

from promptgen.artifacts.prompt import build_generator, sample_images
from promptgen.composing import compose
from promptgen.composing.watch import verdict
from promptgen.core.metrics import kl_divergence
from promptgen.core.registry import get_registry
from promptgen.evaluation.closing import check_flags
from promptgen.training.trainer import TrainConfig

CHOSEN_ON = ["mnist", "panel-mlp-gan", "panel-wgan-gp", "panel-vae", "panel-biased-gan", "panel-class-latent"]
HELD_OUT = ["foreign-mlp-gan", "foreign-mlp-vae"]
FOREIGN_FILES = {"foreign-mlp-gan": "mlp-gan/G--300.ckpt", "foreign-mlp-vae": "mlp-vae/vae_epoch_25.pth"}
LENET = "lenet/lenet_epoch=12_test_acc=0.991.pth"
CASES = ("debias", "classifier")
#: Issue 24's targets.
MAX_KL, JUNK_POINTS, MAX_SECONDS, MIN_SHARE = 0.02, 0.02, 180.0, 0.95
#: The yardstick's training seconds on the machine issue 24 was written on (the README's demo trained in 21–25 s
#: there, commit 98035bc); the slowest is taken, so the allowance scaled from it is the smaller one. With
#: ``--yardstick`` the 3 minutes are read as that machine's: ``MAX_SECONDS · yardstick / ISSUE_YARDSTICK`` here.
ISSUE_YARDSTICK = 25.0


class Judges:
    """promptgen's evaluator and realism check, and the third-party LeNet, run batch by batch."""

    def __init__(self, lenet: Path | None) -> None:
        from promptgen_plugin_foreign_digits.judge import LeNetJudge

        self.evaluator = get_registry().build_classifier("mnist-digit-evaluator", {})
        self.lenet = LeNetJudge(lenet)  # None: the plugin's cached download at the pinned commit

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        digit, real = [], []
        for chunk in images.split(1000):
            digit.append(self.evaluator.log_probs(chunk)["digit"].argmax(1))
            real.append(self.evaluator.realism(chunk) >= 0)
        lenet, sure = self.lenet.judge(images)
        return {"digit": torch.cat(digit), "real": torch.cat(real), "lenet": lenet, "sure": sure}


def histogram(digits: torch.Tensor) -> list[float]:
    return (torch.bincount(digits, minlength=10).double() / max(len(digits), 1)).tolist()


def figures(j: dict[str, torch.Tensor]) -> dict:
    """KL to uniform of the evaluator's digits among the samples that pass the realism check, the junk rate, and
    the LeNet's KL and unsure share (of all samples)."""
    passing = j["digit"][j["real"]]
    return {
        "kl": round(kl_divergence(histogram(passing), [0.1] * 10), 4) if len(passing) else float("inf"),  # all junk: no figure
        "histogram": [round(h, 4) for h in histogram(passing)],
        "junk": round(1 - float(j["real"].double().mean()), 4),
        "lenet_kl": round(kl_divergence(histogram(j["lenet"]), [0.1] * 10), 4),
        "lenet_histogram": [round(h, 4) for h in histogram(j["lenet"])],
        "lenet_unsure": round(1 - float(j["sure"].double().mean()), 4),
    }


def spec_of(gen: str, foreign: Path) -> str:
    return f"{gen}:path={foreign / FOREIGN_FILES[gen]}" if gen in FOREIGN_FILES else gen


#: Training settings of every prompt (``--train KEY=VALUE``, e.g. ``until_met=true``): none, the defaults.
SETTINGS: dict[str, str] = {}


def train(gen: str, energy: str, out: Path, seed: int) -> tuple[object, float, list[str]]:
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        config = TrainConfig.model_validate({"seed": seed, **SETTINGS})
        prompt = compose(gen, [energy], out, train=config, overwrite=True, progress=False, preview=64)
    return prompt, time.perf_counter() - t, [str(w.message) for w in notes]


def compose_said(prompt) -> dict:
    check = prompt.manifest.check
    if check is None:
        return {"compose_met": None, "compose_lines": []}
    met, lines = verdict(check)
    return {"compose_met": met, "compose_lines": lines, "compose_junk": check.junk, "compose_base_junk": check.base_junk,
            "flags": [str(f) for f in check_flags(check)]}


def with_options(energy: str, options: str | None) -> str:
    return f"{energy},{options}" if options else energy


def case_debias(
    gen: str, spec: str, judges: Judges, base: dict, n: int, seed: int, out: Path, options: str | None = None,
    max_seconds: float = MAX_SECONDS,
) -> dict:
    prompt, seconds, notes = train(spec, with_options("debias:digit", options), out / f"{gen}-debias", seed)
    got = figures(judges(sample_images(prompt, n, seed=seed + 1)))
    t = prompt.manifest.training
    targets = {
        "kl": got["kl"] <= MAX_KL,
        "kl_not_above_base": got["kl"] <= base["kl"],
        "junk": got["junk"] <= base["junk"] + JUNK_POINTS,
        "seconds": t.seconds <= max_seconds,
    }
    return {
        **got, "base": base, "targets": targets, "met": all(targets.values()),
        "mode": "mixture" if prompt.manifest.mixture is not None else "tilt",
        "trials": [{"mode": r.mode, "chosen": r.chosen, "score": round(r.reading.score, 4), "junk": r.reading.junk,
                    "healthy": r.reading.healthy, "seconds": round(r.seconds, 1)} for r in prompt.manifest.trials],
        "kept_step": t.kept_step, "stopped_at": t.stopped_at, "realism_factor": t.realism_factor, "train_seconds": round(t.seconds, 1), "seconds_allowed": round(max_seconds, 1),
        "compose_seconds": round(seconds, 1), **compose_said(prompt), "notes": notes,
    }


def case_classifier(
    gen: str, spec: str, judges: Judges, base: dict, base_j: dict, n: int, seed: int, out: Path, options: str | None = None,
) -> dict:
    passing = base_j["digit"][base_j["real"]]
    k = int(torch.tensor(histogram(passing)).argmin())
    prompt, seconds, notes = train(spec, with_options(f"classifier:digit={k}", options), out / f"{gen}-digit{k}", seed)
    j = judges(sample_images(prompt, n, seed=seed + 1))
    got = figures(j)
    share = float((j["digit"][j["real"]] == k).double().mean()) if bool(j["real"].any()) else 0.0
    share_all = float(((j["digit"] == k) & j["real"]).double().mean())  # junk counted as not-K
    lenet_share = float((j["lenet"] == k).double().mean())
    targets = {"share": share >= MIN_SHARE, "junk": got["junk"] <= base["junk"] + JUNK_POINTS}
    return {
        "digit": k, "base_share": base["histogram"][k], "share": round(share, 4), "share_counting_junk_as_missed": round(share_all, 4),
        "lenet_share": round(lenet_share, 4), "junk": got["junk"], "lenet_unsure": got["lenet_unsure"], "base": base,
        "targets": targets, "met": all(targets.values()), "kept_step": prompt.manifest.training.kept_step,
        "stopped_at": prompt.manifest.training.stopped_at, "realism_factor": prompt.manifest.training.realism_factor,
        "train_seconds": round(prompt.manifest.training.seconds, 1), "compose_seconds": round(seconds, 1), **compose_said(prompt),
        "notes": notes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gen", action="append", help=f"generators (default: {', '.join(CHOSEN_ON + HELD_OUT)})")
    ap.add_argument("--case", action="append", choices=CASES)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mnist"), help="unused beyond a check that it exists")
    ap.add_argument("--foreign", type=Path, default=Path("../shared/foreign"), help="the foreign generators' files")
    ap.add_argument("--lenet", type=Path, default=None, help=f"the LeNet's file (default: {LENET} under --foreign if there, else downloaded)")
    ap.add_argument("-n", type=int, default=5000, help="samples judged per prompt and generator")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-held-out"))
    ap.add_argument("--options", help="spec options added to both energies, e.g. realism=3 (default: none, the defaults)")
    ap.add_argument("--train", action="append", default=[], metavar="KEY=VALUE",
                    help="a training setting of every prompt but the yardstick, e.g. until_met=true, steps=2400, guard=realism")
    ap.add_argument("--yardstick", action="store_true", help="also time classifier:digit=3 on mnist (the README's demo)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    judges = Judges(args.lenet or (args.foreign / LENET if (args.foreign / LENET).exists() else None))
    rows = []
    max_seconds = MAX_SECONDS
    if args.yardstick:  # at the defaults: it times the machine
        prompt, seconds, _ = train("mnist", "classifier:digit=3", args.out / "yardstick", args.seed)
        yardstick = prompt.manifest.training.seconds
        max_seconds = MAX_SECONDS * yardstick / ISSUE_YARDSTICK
        print(json.dumps({"case": "yardstick", "train_seconds": round(yardstick, 1), "compose_seconds": round(seconds, 1),
                          "issue_yardstick": ISSUE_YARDSTICK, "seconds_allowed": round(max_seconds, 1)}), flush=True)
    SETTINGS.update(dict(kv.split("=", 1) for kv in args.train))
    for gen in args.gen or CHOSEN_ON + HELD_OUT:
        spec = spec_of(gen, args.foreign)
        base_j = judges(sample_images(build_generator(spec), args.n, seed=args.seed + 1))
        base = figures(base_j)
        for case in args.case or CASES:
            t = time.perf_counter()
            if case == "debias":
                result = case_debias(gen, spec, judges, base, args.n, args.seed, args.out, args.options, max_seconds)
            else:
                result = case_classifier(gen, spec, judges, base, base_j, args.n, args.seed, args.out, args.options)
            # The failure issue 24 forbids: a missed target printed as met.
            # (compose judges the figure and the junk; the seconds and "not above the generator's" are this benchmark's)
            judged = {k: v for k, v in result["targets"].items() if k in ("kl", "share", "junk")}
            result["printed_as_met"] = bool(result["compose_met"]) and not all(judged.values())
            row = {"generator": gen, "held_out": gen in HELD_OUT, "case": case, "seed": args.seed, "n": args.n,
                   **({"options": args.options} if args.options else {}), **({"train": SETTINGS} if SETTINGS else {}), **result,
                   "bench_seconds": round(time.perf_counter() - t, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps({"summary": {
        "rows": len(rows), "met": sum(r["met"] for r in rows),
        "missed": [f"{r['generator']} {r['case']}: {', '.join(k for k, v in r['targets'].items() if not v)}" for r in rows if not r["met"]],
        "printed_as_met": [f"{r['generator']} {r['case']}" for r in rows if r["printed_as_met"]],
    }}), flush=True)


if __name__ == "__main__":
    main()
