"""Draw docs/images/panel.png: samples of the built-in generator and of each digit-panel generator, and
optionally, beside each, a prompt trained on it (same noise).

    python scripts/panel_figure.py -o docs/images/panel.png
    python scripts/panel_figure.py --prompts runs/bench-panel/{gen}-debias-default -o docs/images/panel-debias.png

``--prompts`` is a folder pattern with ``{gen}`` standing for each generator's name.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from promptgen.images import make_grid
from promptgen.prompt import build_generator, load_prompt, sample_images

GENERATORS = ["mnist", "panel-mlp-gan", "panel-wgan-gp", "panel-vae", "panel-biased-gan", "panel-class-latent"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--out", default="docs/images/panel.png")
    ap.add_argument("-n", type=int, default=36)
    ap.add_argument("--prompts", default=None, help="prompt folder pattern with {gen}, drawn beside each generator")
    args = ap.parse_args()
    rows = math.ceil(len(GENERATORS) * (2 if args.prompts else 1) / 3)
    fig, axes = plt.subplots(rows, 3, figsize=(9, 3.3 * rows))
    panels = []
    for gen in GENERATORS:
        panels.append((gen, sample_images(build_generator(gen), args.n, seed=0)))
        if args.prompts:
            prompt = load_prompt(args.prompts.format(gen=gen))
            label = " + ".join(e.spec for e in prompt.manifest.energies)
            panels.append((f"{gen}: {label}", sample_images(prompt, args.n, seed=0)))
    for ax, (title, images) in zip(axes.flat, panels):
        ax.imshow(make_grid(images, nrow=6)[..., 0], cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)


if __name__ == "__main__":
    main()
