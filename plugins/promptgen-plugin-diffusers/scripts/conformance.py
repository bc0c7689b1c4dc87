#!/usr/bin/env python
"""promptgen's DDIM against diffusers' own ``DDIMPipeline`` (η = 0), fed the same x_T, on random-weight pipelines.

Usage (from the project root):

    python plugins/promptgen-plugin-diffusers/scripts/conformance.py [--sizes 32 256] [--steps 5 50]

For each image size, scheduler kind and step count, it writes a random-weight pipeline with diffusers'
``save_pretrained`` (the official format), samples four images from one seeded x_T both ways, and prints one
JSON line with the largest absolute difference in [0, 1] pixels. Also the blocks latent: the means of
x_T's squares fed through promptgen reproduce the pipeline fed the x_T they were combined into.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 256])
    p.add_argument("--steps", type=int, nargs="+", default=[5, 50])
    args = p.parse_args(argv)

    import diffusers
    from promptgen_plugin_diffusers.testing import ddim_pipeline_images, write_pipeline

    from promptgen.core.registry import get_registry

    torch.set_num_threads(2)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for scheduler, prediction in [("DDPMScheduler", "epsilon"), ("DDIMScheduler", "v_prediction")]:
                folder = write_pipeline(Path(tmp) / f"{size}-{scheduler}", size=size, scheduler=scheduler, prediction=prediction, seed=size)
                for steps in args.steps:
                    for latent in ("full", "blocks"):
                        spec = f"diffusers:path={folder},sample_steps={steps},latent={latent}" + (",block=4" if latent == "blocks" else "")
                        g = get_registry().build_generator(spec)
                        inner = getattr(g, "inner", g)
                        gen = torch.Generator().manual_seed(7)
                        z = torch.randn(4, *inner.latent_shape, generator=gen)
                        noise = {"noise_seed": torch.randn(4, 1, generator=gen)} if latent == "blocks" else None
                        with torch.no_grad():
                            x_t = inner.x_t(z, noise)
                            ours = inner.decode(z, noise)
                        theirs = ddim_pipeline_images(folder, x_t, steps)
                        diff = float((ours - theirs).abs().max())
                        worst = max(worst, diff)
                        print(json.dumps({"size": size, "scheduler": scheduler, "prediction": prediction, "steps": steps, "latent": latent,
                                          "max_abs_diff": diff, "pixel_std": round(float(ours.std()), 4),
                                          "diffusers": diffusers.__version__, "torch": torch.__version__}), flush=True)
    print(json.dumps({"worst_max_abs_diff": worst}))
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
