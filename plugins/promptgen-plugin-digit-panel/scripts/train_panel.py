#!/usr/bin/env python
"""Train the digit panel's generators on the images of the MNIST test set's "models" split.

Usage (from the project root):

    python plugins/promptgen-plugin-digit-panel/scripts/train_panel.py {mlp-gan,wgan-gp,vae,biased-gan,diffusion,all}
        --data ../shared/data/mnist [--out plugins/promptgen-plugin-digit-panel/src/promptgen_plugin_digit_panel/weights]
        [--seed N] [--steps N] [--grid-dir DIR]

Only the images file (t10k-images-idx3-ubyte.gz) is read: no generator sees a
label. ``diffusion`` (needs promptgen-plugin-diffusers) is saved as a diffusers
pipeline folder, ``weights/diffusion/``. Each generator is then judged by promptgen's built-in classifiers
(digit shares by the evaluator, agreement with the control classifier, junk
rate by the realism check). Prints one JSON line per generator.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from promptgen_plugin_digit_panel.training import RECIPES, WEIGHTS_DIR, train
from rich.markup import escape

from promptgen.builtin.mnist.training import RichBars, measure_generator, sample, save_grid


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=[*RECIPES, "diffusion", "all"])
    p.add_argument("--data", required=True, help="folder with t10k-images-idx3-ubyte.gz (the labels file is not needed)")
    p.add_argument("--out", default=str(WEIGHTS_DIR), help="folder for the .safetensors files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="override each recipe's number of generator updates")
    p.add_argument("--grid-dir", default=None, help="also save a 10x10 PNG grid of each generator's samples here")
    p.add_argument("--no-measure", action="store_true", help="skip judging the samples (e.g. without the built-in weights)")
    args = p.parse_args(argv)

    names = [*RECIPES, "diffusion"] if args.name == "all" else [args.name]
    with RichBars() as bars:
        for name in names:
            if name == "diffusion":
                result = train_diffusion_model(args, bars)
                if result is None:
                    return 2
                print(json.dumps(result), flush=True)
                continue
            try:
                result = train(name, args.data, args.out, seed=args.seed, steps=args.steps, progress=bars)
            except ValueError as exc:  # bad data folder / files
                bars.console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
                return 2
            if not args.no_measure or args.grid_dir:
                from promptgen_plugin_digit_panel.training import build_network

                from promptgen.builtin.mnist.models import load_pretrained_module

                generator = load_pretrained_module(build_network(name), result["weights"])
                if args.grid_dir:
                    Path(args.grid_dir).mkdir(parents=True, exist_ok=True)
                    save_grid(sample(generator, 100, seed=7), Path(args.grid_dir) / f"{name}.png")
                if not args.no_measure:
                    result["measured"] = measure_generator(generator)
            print(json.dumps(result), flush=True)
    return 0


def train_diffusion_model(args: argparse.Namespace, bars: RichBars) -> dict | None:
    """The diffusion model: trained, saved as a diffusers folder, judged through promptgen-plugin-diffusers."""
    from promptgen_plugin_digit_panel.diffusion import FOLDER, save_pipeline, train_diffusion

    from promptgen.builtin.mnist.training import setup_torch
    from promptgen.datasets.mnist import load_split_images

    setup_torch(args.seed)
    try:
        images = load_split_images(args.data, "models")
    except ValueError as exc:
        bars.console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        return None
    pipeline, summary = train_diffusion(images, args.steps or 8000, bars)
    folder = save_pipeline(pipeline, Path(args.out) / FOLDER)
    result = {"name": "diffusion", "weights": str(folder), "seed": args.seed, **summary}
    if not args.no_measure or args.grid_dir:
        from promptgen.builtin.mnist.training import measure_generator, save_grid
        from promptgen.core.registry import get_registry

        # Sampled as users sample it: through promptgen-plugin-diffusers, a 20-step DDIM (the panel's default).
        generator = get_registry().build_generator(f"diffusers:path={folder},sample_steps=20").module
        if args.grid_dir:
            Path(args.grid_dir).mkdir(parents=True, exist_ok=True)
            save_grid(sample(generator, 100, seed=7, latent_shape=(1, 28, 28)), Path(args.grid_dir) / "diffusion.png")
        if not args.no_measure:
            result["measured"] = measure_generator(generator, n=2000, latent_shape=(1, 28, 28))
    return result


if __name__ == "__main__":
    sys.exit(main())
