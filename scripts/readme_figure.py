"""Draw docs/images/base-vs-prompt.png: the generator alone beside a prompt, same seeds.

    python scripts/readme_figure.py runs/digit-3 -o docs/images/base-vs-prompt.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from promptgen.images import make_grid
from promptgen.prompt import load_prompt, sample_images


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("prompt")
    ap.add_argument("-o", "--out", default="docs/images/base-vs-prompt.png")
    ap.add_argument("-n", type=int, default=64)
    args = ap.parse_args()
    prompt = load_prompt(args.prompt)
    base = sample_images(prompt.generator, args.n, seed=0)
    ctrl = sample_images(prompt, args.n, seed=0)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
    titles = [f"generator alone ({prompt.manifest.generator.spec})", " + ".join(e.spec for e in prompt.manifest.energies)]
    for ax, images, title in zip(axes, (base, ctrl), titles):
        ax.imshow(make_grid(images)[..., 0], cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
