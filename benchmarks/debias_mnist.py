"""Issue 3 de-biasing targets on the built-in digits, judged by the independent evaluators.

Cases (``--case``, repeatable; default all):

- ``marginal``: ``debias:digit,thickness``; KL to uniform of each attribute on
  5,000 samples, the generator's own KL, the KL the fitted β reaches on paper
  (on the base sample it was fitted on), and training seconds.
- ``loop``: the same control trained four ways: one flow on the tilt with β
  fitted once on the base sample (``refit=0``, the paper's way), that β with
  the paper's hand-set weight 2 (``refit=0@2``), the tilt with the loop closed
  (``mode=tilt``, the default for plain attributes), and the mixture
  (``mode=mixture``, the default for joint ones).
- ``joint``: ``debias:digit*thickness``; KL over the 30 combinations.
- ``iterative``: ``classifier:thickness=thick``, then on that prompt
  (``--gen prompt:PATH``) ``debias:digit`` (the tilt) and
  ``debias:digit,mode=mixture``, each plain and with ``--keep-parent`` (the
  parent's ``classifier:thickness=thick`` asked again); digits' KL and the
  share that stays thick. Also *on paper*: the exact tilt of the thick
  prompt's own distribution (β fitted on ``--paper-samples`` of its images,
  which are then weighted by it), the distribution a plain ``debias:digit``
  child is asked to sample, judged by the same evaluators.

Every case also reports Fréchet distances in the evaluator's features
(``quality``): base and prompt to the real digits of ``../shared/data/mnist``,
and base to prompt.

    python benchmarks/debias_mnist.py [--case marginal] [--seed 0] [--steps 1500] [--mode tilt|mixture] [--out runs/bench-debias]

``--mode`` adds ``,mode=...`` to the debias specs of the marginal, joint and
iterative cases (default: the spec's default mode).

The debias prompts train for 1,500 steps (``promptgen compose ... --steps 1500``),
the joint one for 3,000; the first prompt of the iterative case uses the defaults.

Prints one JSON object per case. Every KL is ``KL(histogram ‖ target)`` in
nats, the histogram by the evaluator role classifiers (``mnist-digit-evaluator``,
``mnist-stroke-evaluator``), which never define an energy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from promptgen.artifacts.prompt import sample_images
from promptgen.composing import compose
from promptgen.core.metrics import kl_divergence
from promptgen.core.registry import get_registry
from promptgen.energies.debias import fit_moment_constraint
from promptgen.evaluation.evaluate import evaluate_prompt
from promptgen.training.trainer import TrainConfig

CASES = ("marginal", "loop", "joint", "iterative")


def train(gen: str, energies: str | list[str], out: Path, seed: int, steps: int | None = None,
          keep_parent: bool = False) -> tuple[object, float]:
    config = TrainConfig(seed=seed) if steps is None else TrainConfig(seed=seed, steps=steps)
    t = time.perf_counter()
    energies = [energies] if isinstance(energies, str) else energies
    prompt = compose(gen, energies, out, train=config, overwrite=True, progress=False, preview=64, keep_parent=keep_parent)
    return prompt, time.perf_counter() - t


DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"


def judge(prompt, attrs: list[str], n: int, seed: int) -> dict[str, dict[str, float]]:
    """Per attribute: KL of base and prompt to uniform, and the prompt's histogram; ``quality``: Fréchet distances."""
    report = evaluate_prompt(prompt, n=n, seed=seed + 1000, attrs=attrs, data=DATA if DATA.is_dir() else None).report
    out: dict[str, dict[str, float]] = {
        "quality": {
            "frechet_to_real_base": report.base.frechet, "frechet_to_real_prompt": report.prompt.frechet,
            "frechet_base_prompt": report.frechet_base_prompt, "diversity_prompt": report.prompt.diversity,
        }
    }
    for a in report.attributes:
        if a.attribute in out or a.base is None:
            continue
        uniform = [1 / len(a.labels)] * len(a.labels)
        out[a.attribute] = {
            "kl_base": round(kl_divergence(a.base.histogram, uniform), 4),
            "kl_prompt": round(kl_divergence(a.prompt.histogram, uniform), 4),
            "prompt_histogram": [round(h, 4) for h in a.prompt.histogram],
        }
    return out


def fit_report(prompt) -> dict[str, float]:
    return {k: round(v, 4) for fits in prompt.manifest.training.fits.values() for k, v in fits.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", action="append", choices=CASES)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-n", type=int, default=5000, help="samples judged per side")
    ap.add_argument("--steps", type=int, default=1500, help="training steps of the debias prompts")
    ap.add_argument("--joint-steps", type=int, default=3000, help="training steps of the joint case")
    ap.add_argument("--paper-samples", type=int, default=200_000, help="images of the thick prompt for the on-paper tilt")
    ap.add_argument("--mode", choices=("tilt", "mixture"), help="debias mode of the marginal, joint and iterative cases")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-debias"))
    args = ap.parse_args()
    mode = f",mode={args.mode}" if args.mode else ""
    cases = args.case or list(CASES)
    seed, n, out = args.seed, args.n, args.out

    if "marginal" in cases:
        spec = f"debias:digit,thickness{mode}"
        p, seconds = train("mnist", spec, out / "marginal", seed, args.steps)
        print(json.dumps({
            "case": "marginal", "spec": spec, "seed": seed, "n": n,
            "train_seconds": round(seconds, 1), "fit": fit_report(p),
            "evaluator": judge(p, ["digit", "thickness"], n, seed),
        }), flush=True)

    if "loop" in cases:
        rows = []
        for name, spec in (("open loop", "debias:digit,thickness,refit=0"),
                           ("open loop, weight 2", "debias:digit,thickness,refit=0@2"),
                           ("closed loop", "debias:digit,thickness,mode=tilt"),
                           ("mixture", "debias:digit,thickness,mode=mixture")):
            p, seconds = train("mnist", spec, out / f"loop-{len(rows)}", seed, args.steps)
            rows.append({"choice": name, "spec": spec, "train_seconds": round(seconds, 1),
                         "evaluator": judge(p, ["digit", "thickness"], n, seed)})
        print(json.dumps({"case": "loop", "seed": seed, "n": n, "rows": rows}), flush=True)

    if "joint" in cases:
        spec = f"debias:digit*thickness{mode}"
        p, seconds = train("mnist", spec, out / "joint", seed, args.joint_steps)
        print(json.dumps({
            "case": "joint", "spec": spec, "seed": seed, "n": n,
            "steps": p.manifest.training.config.steps, "train_seconds": round(seconds, 1), "fit": fit_report(p),
            "evaluator": judge(p, ["digit*thickness", "digit", "thickness"], n, seed),
        }), flush=True)

    if "iterative" in cases:
        thick, s1 = train("mnist", "classifier:thickness=thick", out / "thick", seed)
        first = judge(thick, ["digit", "thickness"], n, seed)
        rows = []
        for spec, keep in ((f"debias:digit{mode}", False), ("debias:digit,mode=mixture", False),
                           (f"debias:digit{mode}", True), ("debias:digit,mode=mixture", True)):
            even, seconds = train(f"prompt:{out / 'thick'}", spec, out / f"thick-even-{len(rows)}", seed, args.steps, keep)
            second = judge(even, ["digit", "thickness"], n, seed)
            rows.append({"second": spec + (" --keep-parent" if keep else ""), "energies": [e.spec for e in even.manifest.energies],
                         "train_seconds": round(seconds, 1),
                         "digit_kl": second["digit"]["kl_prompt"], "thick_share": second["thickness"]["prompt_histogram"][2],
                         "digit_histogram": second["digit"]["prompt_histogram"], "quality": second["quality"]})
        print(json.dumps({
            "case": "iterative", "first": "classifier:thickness=thick", "seed": seed, "n": n,
            "first_train_seconds": round(s1, 1),
            "thick_prompt": {"digit_kl": first["digit"]["kl_prompt"], "thick_share": first["thickness"]["prompt_histogram"][2]},
            "on_paper": on_paper(thick, args.paper_samples, seed),
            "chained": rows,
        }), flush=True)


def on_paper(prompt, n: int, seed: int) -> dict[str, float]:
    """The exact ``debias:digit`` tilt of ``prompt``'s distribution, judged by the evaluators.

    β is fitted to uniform control-digit moments on ``n`` of the prompt's images
    (as ``debias`` fits it on its base sample); the same images, weighted by
    ``exp(β·φ)``, then give the evaluators' digit KL and thick share that a
    perfect sampler of the plain chained target would reach.
    """
    registry = get_registry()
    control = registry.build_classifier("mnist-digit", {})
    digit_eval = registry.build_classifier("mnist-digit-evaluator", {})
    stroke_eval = registry.build_classifier("mnist-stroke-evaluator", {})
    phi, digit, thick = [], [], []
    with torch.no_grad():
        for start in range(0, n, 10_000):
            for chunk in sample_images(prompt, min(10_000, n - start), seed=seed + 2000 + start).split(1000):
                phi.append(control.log_probs(chunk)["digit"].exp())
                digit.append(digit_eval.log_probs(chunk)["digit"].argmax(1))
                thick.append(stroke_eval.log_probs(chunk)["thickness"].argmax(1) == 2)
    phi, digit, thick = torch.cat(phi).double(), torch.cat(digit), torch.cat(thick)
    fit = fit_moment_constraint(phi, torch.full((10,), 0.1, dtype=torch.float64))
    w = torch.softmax(phi @ fit.beta.double(), 0)
    histogram = torch.zeros(10, dtype=torch.float64).index_add_(0, digit, w)
    return {"samples": n, "ess": round(float(1 / (w * w).sum()), 1),
            "digit_kl": round(kl_divergence(histogram.tolist(), [0.1] * 10), 4), "thick_share": round(float(w[thick].sum()), 4),
            "thick_share_unweighted": round(float(thick.double().mean()), 4)}


if __name__ == "__main__":
    main()
