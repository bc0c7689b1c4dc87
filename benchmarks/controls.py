"""Issue 13: which way of saying "this is not a digit" keeps a flow from fooling its control.

The control classifier is trained four ways by ``scripts/train_builtin.py``'s
code (``--variant``, each written to ``--weights`` and loaded through the
classifier's ``path=`` option), then each controls the same hard cases:

- ``plain``: no augmentation, no "not a digit" class (how the control was before issue 13);
- ``augmented``: affine, elastic, stroke-width, blur, gain and noise augmentation, no "not a digit" class;
- ``junk-class``: augmented, with the "not a digit" class trained but not used by the energies (``realism=0``);
- ``shipped``: augmented, "not a digit" class used by the energies (``realism=1``, the default).

The mixture's own smoothing at energy time (its control probabilities
averaged over random shifts of the image) and the sharpness of its component
energies are varied with ``--shifts N`` and ``--sharpness S`` (default: the
shipped 4 shifts and 10 per nat), which apply to the ``debias`` case.

Cases (``--case``), on each ``--gen`` (default: the MLP GAN, whose rare digits
blobs once passed for, and the built-in generator):

- ``rare``: ``classifier:digit=K`` for the generator's rarest digit K;
- ``debias``: ``debias:digit,mode=mixture``, the mode that once made blobs.

Each prompt is judged on ``-n`` samples by the independent evaluator (share of
the asked digit, or KL to uniform) and the realism check (junk rate), against
the generator alone.

    python benchmarks/controls.py --data ../shared/data/mnist [--gen panel-mlp-gan] [--case rare] [--weights runs/controls]

Prints one JSON object per generator, case and variant.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from panel import Judges, base_sample, histogram, rarest, train, uniform_kl

from promptgen.artifacts.prompt import sample_images
from promptgen.builtin.mnist.models import WEIGHTS_DIR
from promptgen.builtin.mnist.training import train_classifier_model
from promptgen.core.metrics import frechet_distance

VARIANTS = {
    # name: (augment strength, junk class trained, realism weight in the energies)
    "plain": (0.0, False, 0.0),
    "augmented": (1.0, False, 0.0),
    "junk-class": (1.0, True, 0.0),
    "shipped": (1.0, True, 1.0),
}


def weights_for(variant: str, folder: Path, data: Path) -> Path:
    """The control classifier of ``variant``: the shipped file, or one trained into ``folder`` once."""
    augment, junk, _ = VARIANTS[variant]
    if (augment, junk) == (1.0, True):
        return WEIGHTS_DIR / "classifier.safetensors"
    path = folder / variant / "classifier.safetensors"
    if not path.is_file():
        train_classifier_model("classifier", data, path.parent, augment=augment, junk=junk)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--gen", action="append")
    ap.add_argument("--case", action="append", choices=("rare", "debias"))
    ap.add_argument("--variant", action="append", choices=list(VARIANTS))
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights", type=Path, default=Path("runs/controls"))
    ap.add_argument("--out", type=Path, default=Path("runs/bench-controls"))
    ap.add_argument("--shifts", type=int, default=None, help="debias case: shifts= of the mixture (default: the spec's 4)")
    ap.add_argument("--sharpness", type=float, default=None, help="debias case: the mixture components' energy per nat (default 10)")
    args = ap.parse_args()
    if args.sharpness is not None:
        from promptgen.energies import debias_energy as debias

        debias.SHARPNESS = args.sharpness
    torch.set_num_threads(2)
    judges = Judges()
    from promptgen.datasets.mnist import load_split

    real = judges(load_split(args.data, "heldout")[0])["features"]
    for gen in args.gen or ["panel-mlp-gan", "mnist"]:
        base = judges(base_sample(gen, args.n, args.seed))
        k = rarest(base)
        for case in args.case or ["rare", "debias"]:
            for variant in args.variant or list(VARIANTS):
                path = weights_for(variant, args.weights, args.data)
                realism = VARIANTS[variant][2]
                options = f",path={path},realism={realism:g}"
                shifts = f",shifts={args.shifts}" if args.shifts is not None else ""
                spec = f"classifier:digit={k}{options}" if case == "rare" else f"debias:digit,mode=mixture{shifts}{options}"
                tag = "".join(f"-{k}{v:g}" for k, v in (("shifts", args.shifts), ("sharpness", args.sharpness)) if v is not None)
                t = time.perf_counter()
                prompt, _, _ = train(gen, [spec], args.out / f"{gen}-{case}-{variant}{tag}", args.seed)
                j = judges(sample_images(prompt, args.n, seed=args.seed + 1))
                row = {
                    "generator": gen, "case": case, "variant": variant, "spec": spec.replace(str(path), "…"),
                    "sharpness": args.sharpness, "shifts": args.shifts,
                    "junk_rate_base": round(1 - float(base["real"].double().mean()), 4),
                    "junk_rate": round(1 - float(j["real"].double().mean()), 4),
                    "control_not_a_digit": round(float((j["control_in"] < 0.5).double().mean()), 4),
                    "frechet_to_real": round(frechet_distance(j["features"], real), 3),
                    "seconds": round(time.perf_counter() - t, 1),
                }
                if case == "rare":
                    row.update({"digit": k, "base_share": round(float((base["digit"] == k).double().mean()), 4),
                                "share": round(float((j["digit"] == k).double().mean()), 4)})
                else:
                    row.update({"kl_uniform_base": round(uniform_kl(base["digit"]), 4), "kl_uniform": round(uniform_kl(j["digit"]), 4),
                                "histogram": [round(h, 4) for h in histogram(j["digit"])]})
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
