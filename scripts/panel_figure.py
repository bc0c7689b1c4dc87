"""Draw docs/images/panel.png: samples of the built-in generator and of each digit-panel generator, and
optionally, beside each, a prompt trained on it (same noise).

    python scripts/panel_figure.py -o docs/images/panel.png
    python scripts/panel_figure.py --prompts runs/bench-panel/{gen}-debias-default -o docs/images/panel-debias.png

``--prompts`` is a folder pattern with ``{gen}`` standing for each generator's name.
"""

from __future__ import annotations

import argparse
import math

from readme_figure import draw_grids

from promptgen.artifacts.prompt import build_generator, load_prompt, sample_images

GENERATORS = ["mnist", "panel-mlp-gan", "panel-wgan-gp", "panel-vae", "panel-biased-gan", "panel-class-latent"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--out", default="docs/images/panel.png")
    ap.add_argument("-n", type=int, default=36)
    ap.add_argument("--prompts", default=None, help="prompt folder pattern with {gen}, drawn beside each generator")
    args = ap.parse_args()
    rows = math.ceil(len(GENERATORS) * (2 if args.prompts else 1) / 3)
    panels = []
    for gen in GENERATORS:
        panels.append((gen, sample_images(build_generator(gen), args.n, seed=0)))
        if args.prompts:
            prompt = load_prompt(args.prompts.format(gen=gen))
            label = " + ".join(e.spec for e in prompt.manifest.energies)
            panels.append((f"{gen}: {label}", sample_images(prompt, args.n, seed=0)))
    draw_grids(panels, args.out, cols=3, figsize=(9, 3.3 * rows), dpi=100, fontsize=8, nrow=6)


if __name__ == "__main__":
    main()
