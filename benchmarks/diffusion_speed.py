"""Issue 27 targets at 256: one training step through a diffusers DDPM's DDIM, or a DiffAE's two DDIMs, with random weights.

The UNet has the configuration of Google's published 256-pixel DDPMs (``google/ddpm-celebahq-256``,
``-church-256``, ``-cat-256``, ``-bedroom-256``: 128-128-256-256-512-512 channels, two ResNet blocks per
level, attention at 16×16; 114 M parameters) and random weights, saved and loaded through
promptgen-plugin-diffusers like a downloaded pipeline. A training step is what compose runs: the flow (affine
couplings, promptgen's default) on the controlled latent (``latent=auto``: the means of x_T's 8×8 squares,
3×32×32), x_T, the DDIM's training steps with gradients, a cheap stand-in energy, backward through all of it,
and the Adam update. Cases: batch 1 and 4, with and without activation checkpointing; and the flow's own
forward, backward and update timed alone, as a share of the step.

``--model diffae``: the published FFHQ 256 DiffAE's configuration (phizaz/diffae ``ffhq256_autoenc_latent``:
U-Net 128 channels × (1, 1, 2, 2, 4, 4), attention at 16, the 10-layer 2,048-wide latent MLP) with random
weights, built through promptgen-plugin-diffae; the flow controls the latent DDIM's 512-d noise, and the
training step runs ``--steps`` latent and ``--steps`` image DDIM steps (the paper's 5 and 5).

Each case runs in a fresh process so its peak resident memory is its own; a case whose process fails (killed
for memory, say) prints a JSON object with its ``error``.

    python benchmarks/diffusion_speed.py [--model diffusers|diffae] [--steps 5] [--batches 1 4] [--repeats 1] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from timing import best_of, flow_step, limit_address_space, rss_mb, run_case, training_update

#: Google's 256-pixel DDPM UNet (the hub's unet/config.json of google/ddpm-celebahq-256 and its siblings).
PUBLISHED_256 = {
    "sample_size": 256, "in_channels": 3, "out_channels": 3, "layers_per_block": 2,
    "block_out_channels": (128, 128, 256, 256, 512, 512),
    "down_block_types": ("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    "attention_head_dim": None, "norm_num_groups": 32, "norm_eps": 1e-6, "downsample_padding": 0,
    "flip_sin_to_cos": False, "freq_shift": 1, "center_input_sample": False, "time_embedding_type": "positional",
    "act_fn": "silu", "mid_block_scale_factor": 1,
}  # fmt: skip


def write_published(folder: Path) -> Path:
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(**PUBLISHED_256)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)).save_pretrained(folder)
    return folder


def diffae_generator(steps: int, checkpointing: bool):
    """The FFHQ 256 DiffAE with random weights, built from its files' contents in memory (no 1 GB file written)."""
    from promptgen_plugin_diffae import DiffAEOptions
    from promptgen_plugin_diffae.checkpoints import FFHQ256, DiffAEFiles
    from promptgen_plugin_diffae.generator import build
    from promptgen_plugin_diffae.testing import random_networks, random_stats

    from promptgen.core.latents import bind
    from promptgen.plugin import GeneratorInfo

    unet, mlp = random_networks(FFHQ256)
    files = DiffAEFiles(unet.state_dict(), mlp.state_dict(), *random_stats(512), FFHQ256)
    del unet, mlp
    options = DiffAEOptions(steps=steps, latent_steps=steps, checkpointing=checkpointing)
    info = GeneratorInfo(name="diffae-ffhq-256", resolution=(256, 256), channels=3, licence="random weights", source="", description="")
    return bind(build(files, options, info, "diffae-ffhq-256"))


def case(model: str, batch: int, checkpointing: bool, steps: int, repeats: int) -> dict:
    from promptgen.core.registry import get_registry
    from promptgen.training.flow import CouplingFlow, FlowConfig

    if model == "diffae":
        base = rss_mb()
        bound = diffae_generator(steps, checkpointing)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            folder = write_published(Path(tmp) / "ddpm-256")
            base = rss_mb()
            bound = get_registry().build_generator(f"diffusers:path={folder},steps={steps},checkpointing={str(checkpointing).lower()}")
    g = bound.inner
    d = bound.controlled_size
    flow = CouplingFlow(FlowConfig(features=d))
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    params = sum(p.numel() for p in g.module.parameters())

    def full_step() -> None:
        eps = torch.randn(batch, d)
        z, log_det = flow(eps)
        noise = {"noise_seed": torch.randn(batch, 1)}
        x = g.decode(z, noise)
        energy = (x.mean(dim=(1, 2, 3)) - 0.3).square()  # cheap stand-in: the cost is the DDIM's
        training_update(opt, z, log_det, energy)

    flow_only = flow_step(flow, opt, batch, d)

    step, flow_seconds = best_of(full_step, repeats), best_of(flow_only, 5)
    config = "phizaz/diffae ffhq256_autoenc_latent, random weights" if model == "diffae" else "google/ddpm-*-256 UNet, random weights"
    return {
        "case": "training step", "model": model, "config": config, "parameters_millions": round(params / 1e6, 1),
        "batch": batch, "checkpointing": checkpointing, "ddim_steps": steps, "controlled": list(g.latent_shape), "flow_features": d,
        "step_seconds": round(step, 2), "flow_seconds": round(flow_seconds, 4), "flow_share_percent": round(100 * flow_seconds / step, 3),
        "baseline_rss_mb": round(base), "peak_rss_mb": round(rss_mb()), "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["diffusers", "diffae"], default="diffusers")
    ap.add_argument("--steps", type=int, default=5, help="DDIM steps with gradients (the paper's 5)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--limit-gb", type=float, default=20.0,
                    help="address-space limit of each case's process, so a case too large for the machine fails alone "
                    "instead of waking the OOM killer (0: none)")
    ap.add_argument("--child", nargs=2, metavar=("BATCH", "CHECKPOINTING"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        limit_address_space(args.limit_gb)
        print(json.dumps(case(args.model, int(args.child[0]), args.child[1] == "1", args.steps, args.repeats)), flush=True)
        return
    for batch in args.batches:
        for checkpointing in (True, False):
            cmd = [sys.executable, __file__, "--child", str(batch), "1" if checkpointing else "0", "--model", args.model, "--steps", str(args.steps),
                   "--repeats", str(args.repeats), "--threads", str(args.threads), "--limit-gb", str(args.limit_gb)]
            run_case(cmd, {"case": "training step", "model": args.model, "batch": batch, "checkpointing": checkpointing}, args.limit_gb)

if __name__ == "__main__":
    main()
