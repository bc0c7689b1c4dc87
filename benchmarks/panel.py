"""Issue 13: every control target on the built-in generator and on each generator of the digit panel.

Needs promptgen-plugin-digit-panel installed (``pip install ./plugins/promptgen-plugin-digit-panel``)
and the MNIST folder (``--data ../shared/data/mnist``) for the real digits the
Fréchet distances compare with (the held-out split, which trained no model).

Cases (``--case``, repeatable; default all), each run on every ``--gen``
(default: ``mnist`` and the five panel generators):

- ``base``: the generator alone on ``-n`` samples: its digit histogram by the
  independent evaluator and KL to uniform, the control classifier's agreement
  with the evaluator (same top digit; also on the samples the realism check
  accepts, and on those the evaluator is at least 90 % sure of), the junk
  rate (share the realism check rejects), the share the evaluator is less than 90 % sure of (a second,
  rougher sign of junk), the control's "not a digit" share, Fréchet distance
  (FD) to real digits, and its rarest digit.
- ``classifier``: ``classifier:digit=K`` for that rarest digit K, default
  settings: share of K by the evaluator, junk rate, FD to the real Ks against
  the FD of rejection samples (base samples the evaluator calls K, as many as
  the prompt's), training seconds.
- ``debias``: ``debias:digit`` with each ``--debias-mode`` (default: the
  spec's own default, then tilt and mixture); KL to uniform by the evaluator,
  junk rate, FD to real digits, training seconds, and compose's closing note.
- ``samplers``: for ``classifier:digit=K``: the flow, rejection sampling by the
  control classifier, and Langevin at several step counts; useful samples per
  second (samples per second × evaluator accuracy) of each.
- ``cost``: compose's training time for ``classifier:digit=K`` and
  ``debias:digit`` against its floor, the same number of steps of just the
  generator's and the energies' forward and backward passes on a batch
  (measured in the same run, so the ratio holds on any machine).

    python benchmarks/panel.py --data ../shared/data/mnist [--gen panel-vae] [--case base] [-n 5000] [--out runs/bench-panel]

Prints one JSON object per generator and case.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

from promptgen.artifacts.prompt import build_generator, sample_images
from promptgen.composing import build_energy, compose, prompt_ebm
from promptgen.core.classifiers import classify
from promptgen.core.metrics import frechet_distance, kl_divergence
from promptgen.core.registry import get_registry
from promptgen.datasets.mnist import load_split
from promptgen.sampling.baselines import flow_sample, langevin_sample, rejection_sample
from promptgen.training.trainer import TrainConfig

GENERATORS = ["mnist", "panel-mlp-gan", "panel-wgan-gp", "panel-vae", "panel-biased-gan", "panel-class-latent"]
# panel-diffusion (issue 27) is asked for by name: its prompts run the DDIM at every step.
CASES = ("base", "classifier", "debias", "samplers", "cost")
DIGITS = [str(d) for d in range(10)]


class Judges:
    """The built-in evaluator (digits, features, realism) and control classifier, run batch by batch."""

    def __init__(self) -> None:
        registry = get_registry()
        self.evaluator = registry.build_classifier("mnist-digit-evaluator", {})
        self.control = registry.build_classifier("mnist-digit", {})

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, list[torch.Tensor]] = {"digit": [], "sure": [], "features": [], "real": [], "control": [], "control_in": []}
        for chunk in images.split(1000):
            logp = self.evaluator.log_probs(chunk)["digit"]
            out["digit"].append(logp.argmax(1))
            out["sure"].append(logp.amax(1).exp() >= 0.9)
            out["features"].append(self.evaluator.features(chunk).double())
            out["real"].append(self.evaluator.realism(chunk) >= 0)
            logp, inside = classify(self.control, chunk)
            out["control"].append(logp["digit"].argmax(1))
            out["control_in"].append(inside.exp())
        return {k: torch.cat(v) for k, v in out.items()}


def rate(flags: torch.Tensor) -> float:
    return round(float(flags.double().mean()), 4)


def histogram(digits: torch.Tensor) -> list[float]:
    return (torch.bincount(digits, minlength=10).double() / len(digits)).tolist()


def uniform_kl(digits: torch.Tensor) -> float:
    return kl_divergence(histogram(digits), [0.1] * 10)


#: Samples per training step (compose's default unless --batch-size).
BATCH: dict[str, int] = {}


def train(gen: str, energies: list[str], out: Path, seed: int, steps: int | None = None) -> tuple[object, float, list[str]]:
    config = TrainConfig(seed=seed, **BATCH) if steps is None else TrainConfig(seed=seed, steps=steps, **BATCH)
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        prompt = compose(gen, energies, out, train=config, overwrite=True, progress=False, preview=64)
    return prompt, time.perf_counter() - t, [str(w.message) for w in notes]


def base_sample(gen: str, n: int, seed: int) -> torch.Tensor:
    return sample_images(build_generator(gen), n, seed=seed)


def rarest(judged: dict[str, torch.Tensor]) -> int:
    return int(torch.tensor(histogram(judged["digit"])).argmin())


def case_base(gen: str, judges: Judges, real: torch.Tensor, n: int, seed: int) -> dict:
    images = base_sample(gen, n, seed)
    j = judges(images)
    return {
        "digit_histogram": [round(h, 4) for h in histogram(j["digit"])],
        "kl_uniform": round(uniform_kl(j["digit"]), 4),
        "rarest_digit": rarest(j),
        "agreement": round(float((j["digit"] == j["control"]).double().mean()), 4),
        "agreement_on_real_looking": round(float((j["digit"] == j["control"])[j["real"]].double().mean()), 4),
        "agreement_when_evaluator_sure": round(float((j["digit"] == j["control"])[j["sure"]].double().mean()), 4),
        "junk_rate": round(1 - float(j["real"].double().mean()), 4),
        "evaluator_unsure": rate(~j["sure"]),
        "control_not_a_digit": round(float((j["control_in"] < 0.5).double().mean()), 4),
        "frechet_to_real": round(frechet_distance(j["features"], real), 3),
    }


def rejection_reference(gen: str, judges: Judges, k: int, want: int, seed: int, max_draws: int = 200_000) -> torch.Tensor:
    """Features of up to ``want`` base samples the evaluator calls ``k`` (exact samples of the generator's Ks)."""
    kept, drawn = [], 0
    while sum(len(f) for f in kept) < want and drawn < max_draws:
        j = judges(base_sample(gen, 20_000, seed + drawn))
        kept.append(j["features"][j["digit"] == k])
        drawn += 20_000
    return torch.cat(kept)[:want]


def case_classifier(gen: str, judges: Judges, real: torch.Tensor, labels: torch.Tensor, n: int, seed: int, out: Path) -> dict:
    base = judges(base_sample(gen, n, seed))
    k = rarest(base)
    prompt, seconds, notes = train(gen, [f"classifier:digit={k}"], out / f"{gen}-digit{k}", seed)
    j = judges(sample_images(prompt, n, seed=seed + 1))
    # Both sides the same size (the FD's bias depends on it): up to 2,000, fewer where the digit is rare.
    reference = rejection_reference(gen, judges, k, min(n, 2000), seed + 2)
    m = len(reference)
    real_k = real[labels == k]
    fd_prompt = frechet_distance(j["features"][:m], real_k)
    fd_rejection = frechet_distance(reference[:m], real_k)
    return {
        "digit": k,
        "base_share": round(float((base["digit"] == k).double().mean()), 4),
        "share": round(float((j["digit"] == k).double().mean()), 4),
        "junk_rate_base": round(1 - float(base["real"].double().mean()), 4),
        "junk_rate": round(1 - float(j["real"].double().mean()), 4),
        "evaluator_unsure_base": rate(~base["sure"]),
        "evaluator_unsure": rate(~j["sure"]),
        "frechet_prompt": round(fd_prompt, 3),
        "frechet_rejection": round(fd_rejection, 3),
        "frechet_ratio": round(fd_prompt / fd_rejection, 3),
        "frechet_samples": m,
        "real_ks": len(real_k),
        "train_seconds": round(prompt.manifest.training.seconds, 1),
        "compose_seconds": round(seconds, 1),
        "notes": notes,
    }


def case_debias(gen: str, judges: Judges, real: torch.Tensor, n: int, seed: int, out: Path, modes: list[str],
                steps: int | None) -> dict:
    base = judges(base_sample(gen, n, seed))
    rows = []
    for mode in modes:
        spec = "debias:digit" + (f",mode={mode}" if mode != "default" else "")
        prompt, seconds, notes = train(gen, [spec], out / f"{gen}-debias-{mode}", seed, steps)
        j = judges(sample_images(prompt, n, seed=seed + 1))
        rows.append({
            "spec": spec,
            "mode": prompt.manifest.mixture and "mixture" or "tilt",
            "kl_uniform": round(uniform_kl(j["digit"]), 4),
            "digit_histogram": [round(h, 4) for h in histogram(j["digit"])],
            "junk_rate": round(1 - float(j["real"].double().mean()), 4),
            "evaluator_unsure": rate(~j["sure"]),
            "frechet_to_real": round(frechet_distance(j["features"], real), 3),
            "train_seconds": round(prompt.manifest.training.seconds, 1),
            "compose_seconds": round(seconds, 1),
            "steps": prompt.manifest.training.config.steps,
            "notes": notes,
        })
    return {
        "kl_uniform_base": round(uniform_kl(base["digit"]), 4),
        "junk_rate_base": round(1 - float(base["real"].double().mean()), 4),
        "evaluator_unsure_base": rate(~base["sure"]),
        "frechet_to_real_base": round(frechet_distance(base["features"], real), 3),
        "rows": rows,
    }


def sampler_row(name: str, judges: Judges, k: int, images: torch.Tensor, cost) -> dict:
    j = judges(images)
    accuracy = float((j["digit"] == k).double().mean())
    return {
        "method": name, "n": cost.accepted, "seconds": round(cost.seconds, 3),
        "samples_per_second": round(cost.samples_per_second, 2), "evaluator_accuracy": round(accuracy, 4),
        "junk_rate": round(1 - float(j["real"].double().mean()), 4),
        "useful_per_second": round(cost.samples_per_second * accuracy, 3), "steps": cost.steps,
        "acceptance_rate": None if cost.acceptance_rate is None else round(cost.acceptance_rate, 5),
        "mh_acceptance": None if cost.mh_acceptance is None else round(cost.mh_acceptance, 3),
    }


def case_samplers(gen: str, judges: Judges, n: int, seed: int, out: Path, langevin_steps: list[int]) -> dict:
    k = rarest(judges(base_sample(gen, n, seed)))
    prompt, _, _ = train(gen, [f"classifier:digit={k}"], out / f"{gen}-digit{k}", seed)
    ebm = prompt_ebm(prompt)
    flow_sample(prompt, 100, seed=seed)  # warm-up
    rows = [sampler_row("flow", judges, k, *flow_sample(prompt, 2000, seed=seed + 1))]
    rejection_sample(ebm, 4, accept="attribute", seed=seed, progress=False)  # warm-up
    rows.append(sampler_row("rejection", judges, k, *rejection_sample(ebm, 200, accept="attribute", seed=seed + 2,
                                                                     max_draws=10_000_000, progress=False)))
    for steps in langevin_steps:
        rows.append(sampler_row("langevin", judges, k, *langevin_sample(ebm, 64, steps=steps, seed=seed + 3, progress=False)))
    flow, rejection = rows[0], rows[1]
    langevin = [r for r in rows if r["method"] == "langevin"]
    matched = [r for r in langevin if r["evaluator_accuracy"] >= flow["evaluator_accuracy"]]
    best = max(langevin, key=lambda r: r["useful_per_second"])
    return {
        "digit": k,
        "rows": rows,
        "flow_over_rejection": round(flow["useful_per_second"] / max(rejection["useful_per_second"], 1e-12), 2),
        # At equal accuracy where some step count reaches the flow's; else against Langevin's best useful rate.
        "langevin_matched_steps": matched[0]["steps"] if matched else None,
        "flow_over_langevin": round(flow["samples_per_second"] / matched[0]["samples_per_second"], 1) if matched else None,
        "flow_over_langevin_best_useful": round(flow["useful_per_second"] / max(best["useful_per_second"], 1e-12), 1),
    }


def floor_seconds(gen: str, energies: list[str], config: TrainConfig, repeats: int = 2) -> float:
    """Seconds for ``config.steps`` forward and backward passes of the generator and the energies alone on a
    batch, as training calls them (fitted first; a mixture's components by their own energies); the best of
    ``repeats`` timings, since noise only ever adds time."""
    from promptgen.training.ebm import EnergyBasedModel, mixture_term
    from promptgen.training.trainer import prefit, training_classes

    g = build_generator(gen)
    ebm = EnergyBasedModel(g, [build_energy(e) for e in energies])
    prefit(ebm, config, torch.device("cpu"))
    mixture = mixture_term(ebm.terms)
    components = mixture.energy.mixture_components if mixture is not None else 0

    def step(i: int) -> None:
        z = torch.randn(config.batch_size, *g.latent_shape, requires_grad=True)
        classes = training_classes(components, config.batch_size, i * config.batch_size)
        ebm.potential(z, 1.0, classes).total.sum().backward()

    for i in range(5):  # warm-up
        step(i)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(config.steps):
            step(i)
        best = min(best, time.perf_counter() - t0)
    return best


def case_cost(gen: str, judges: Judges, n: int, seed: int, out: Path) -> dict:
    k = rarest(judges(base_sample(gen, n, seed)))
    rows = []
    for energies in ([f"classifier:digit={k}"], ["debias:digit"]):
        config = TrainConfig(seed=seed)
        floor = floor_seconds(gen, energies, config)
        prompt, seconds, _ = train(gen, energies, out / f"{gen}-cost-{len(rows)}", seed)
        training = prompt.manifest.training.seconds
        rows.append({
            "energies": energies, "mixture": prompt.manifest.mixture is not None, "steps": config.steps,
            "floor_seconds": round(floor, 2),
            "train_seconds": round(training, 2), "compose_seconds": round(seconds, 2),
            "ratio": round(training / floor, 3), "compose_ratio": round(seconds / floor, 3),
        })
    return {"rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gen", action="append", help=f"generators (default: {', '.join(GENERATORS)})")
    ap.add_argument("--case", action="append", choices=CASES)
    ap.add_argument("--data", required=True, type=Path, help="the MNIST folder, ../shared/data/mnist from the project root")
    ap.add_argument("-n", type=int, default=5000, help="samples judged per side")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--debias-mode", action="append", choices=("default", "tilt", "mixture"))
    ap.add_argument("--debias-steps", type=int, default=None, help="training steps of the debias prompts (default: compose's)")
    ap.add_argument("--langevin-steps", type=int, nargs="+", default=[25, 100, 400])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-panel"))
    ap.add_argument("--batch-size", type=int, default=None, help="samples per training step (default: compose's)")
    args = ap.parse_args()
    if args.batch_size:
        BATCH["batch_size"] = args.batch_size
    torch.set_num_threads(2)
    judges = Judges()
    real, labels = load_split(args.data, "heldout")
    real_features = judges(real)["features"]
    for gen in args.gen or GENERATORS:
        for case in args.case or CASES:
            t = time.perf_counter()
            if case == "base":
                result = case_base(gen, judges, real_features, args.n, args.seed)
            elif case == "classifier":
                result = case_classifier(gen, judges, real_features, labels, args.n, args.seed, args.out)
            elif case == "debias":
                modes = args.debias_mode or ["default", "tilt", "mixture"]
                result = case_debias(gen, judges, real_features, args.n, args.seed, args.out, modes, args.debias_steps)
            elif case == "samplers":
                result = case_samplers(gen, judges, args.n, args.seed, args.out, args.langevin_steps)
            else:
                result = case_cost(gen, judges, args.n, args.seed, args.out)
            print(json.dumps({"generator": gen, "case": case, "seed": args.seed, "n": args.n, **result,
                              "bench_seconds": round(time.perf_counter() - t, 1)}), flush=True)


if __name__ == "__main__":
    main()
