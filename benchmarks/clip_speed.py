"""Issue 5 target: CLIP energy evaluations per second, ViT-B-32 with random weights, at 1, 8 and 32 augmentations.

An evaluation is the energy of one generated image: its augmented copies
through CLIP's preprocessing and image tower, against the text features. Timed
without gradients and with the backward pass to the images (what training
does). The text tower's calls are counted over the whole run: once, when the
energy is built.

    python benchmarks/clip_speed.py [--batch 4] [--size 256] [--repeats 3]

Prints one JSON object per number of augmentations.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from timing import best_of

from promptgen.core.registry import get_registry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4, help="images per energy call")
    ap.add_argument("--size", type=int, default=256, help="generated image size in pixels")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--augs", type=int, nargs="*", default=[1, 8, 32])
    args = ap.parse_args()
    torch.manual_seed(0)
    for n in args.augs:
        t = time.perf_counter()
        energy = get_registry().build_energy(f'clip:"a smiling face",pretrained=none,augs={n}' + (",aug=none" if n == 1 else ""))
        build = time.perf_counter() - t
        images = torch.rand(args.batch, 3, args.size, args.size)

        def forward(energy=energy, images=images) -> None:
            with torch.no_grad():
                energy(images, None)

        def backward(energy=energy, images=images) -> None:
            x = images.clone().requires_grad_(True)
            energy(x, None).sum().backward()

        f, b = best_of(forward, args.repeats), best_of(backward, args.repeats)
        print(json.dumps({
            "model": "ViT-B-32 (random weights)", "augmentations": n, "policy": "none" if n == 1 else "color,translation,resize,cutout",
            "batch": args.batch, "image_size": args.size,
            "evaluations_per_second": round(args.batch / f, 3), "evaluations_per_second_with_backward": round(args.batch / b, 3),
            "clip_images_per_second": round(args.batch * n / f, 2), "build_seconds": round(build, 2),
            "text_encoder_calls": energy.text_encoder_calls, "threads": torch.get_num_threads(),
        }), flush=True)


if __name__ == "__main__":
    main()
