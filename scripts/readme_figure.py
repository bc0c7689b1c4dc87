"""Draw docs/images/base-vs-prompt.png: the generator alone beside a prompt, same seeds.

    python scripts/readme_figure.py runs/digit-3 -o docs/images/base-vs-prompt.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from promptgen.artifacts.prompt import load_prompt, sample_images
from promptgen.core.atomic import write_atomic
from promptgen.core.images import make_grid


def draw_grids(panels: list[tuple[str, object]], out: str | Path, *, cols: int, figsize: tuple[float, float],
               dpi: int, fontsize: int, nrow: int | None = None) -> None:
    """One titled image grid per (title, images) in ``panels``, ``cols`` to a row, written to ``out`` (PNG).

    The file is written to a temporary name and renamed, so an earlier figure is never left half-written.
    """
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=figsize, squeeze=False)
    for ax, (title, images) in zip(axes.flat, panels):
        ax.imshow((make_grid(images) if nrow is None else make_grid(images, nrow=nrow))[..., 0], cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=fontsize)
        ax.axis("off")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("prompt")
    ap.add_argument("-o", "--out", default="docs/images/base-vs-prompt.png")
    ap.add_argument("-n", type=int, default=64)
    args = ap.parse_args()
    prompt = load_prompt(args.prompt)
    base = sample_images(prompt.generator, args.n, seed=0)
    ctrl = sample_images(prompt, args.n, seed=0)
    titles = [f"generator alone ({prompt.manifest.generator.spec})", " + ".join(e.spec for e in prompt.manifest.energies)]
    draw_grids(list(zip(titles, (base, ctrl))), args.out, cols=2, figsize=(8, 4.3), dpi=110, fontsize=10)

if __name__ == "__main__":
    main()
