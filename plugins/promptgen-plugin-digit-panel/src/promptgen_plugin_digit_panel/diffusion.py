"""The panel's digit diffusion model: a small diffusers ``UNet2DModel`` trained as a DDPM on the "models" split.

It is saved in the diffusers format (``DDPMPipeline.save_pretrained``: ``model_index.json``, ``unet/`` with
safetensors weights, ``scheduler/``), the layout ``google/ddpm-cifar10-32`` has, and sampled through
promptgen-plugin-diffusers like any pipeline a user downloads: a deterministic DDIM (η = 0) from x_T.

The network is small on purpose (16, 32, 32 channels, one ResNet block per level, no attention: 267k
parameters), so that a prompt, which runs the DDIM steps forward and backward at every training step, trains in
minutes on two CPU cores. diffusers is imported here only: the panel's other generators do not need it.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from promptgen.builtin.mnist.training import ProgressFactory

#: The UNet's configuration (diffusers ``UNet2DModel`` keyword arguments).
UNET_CONFIG: dict[str, Any] = {
    "sample_size": 28,
    "in_channels": 1,
    "out_channels": 1,
    "layers_per_block": 1,
    "block_out_channels": (16, 32, 32),
    "down_block_types": ("DownBlock2D", "DownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "UpBlock2D", "UpBlock2D"),
    "norm_num_groups": 8,
}
#: The noise schedule (diffusers ``DDPMScheduler`` keyword arguments): the cosine schedule suits small images.
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "epsilon",
    "clip_sample": True,
}
#: The folder, inside the panel's weights, that holds the pipeline.
FOLDER = "diffusion"


def train_diffusion(images: torch.Tensor, steps: int, progress: ProgressFactory | None = None, *,
                    batch_size: int = 64, lr: float = 2e-3, ema: float = 0.999) -> tuple[Any, dict[str, Any]]:
    """Train the DDPM on ``images`` (N, 1, 28, 28) in [0, 1], no labels; returns (a ``DDPMPipeline`` of the EMA
    weights, a summary). Adam with a linear warm-up of 200 steps and cosine decay; the EMA is what ships."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    from promptgen.builtin.mnist.training import _NullProgress

    unet = UNet2DModel(**UNET_CONFIG)
    scheduler = DDPMScheduler(**SCHEDULER_CONFIG)
    average = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.Adam(unet.parameters(), lr=lr)
    warm = min(200, steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    alphas = scheduler.alphas_cumprod
    bar = (progress or _NullProgress)("diffusion", steps)
    t0 = time.perf_counter()
    avg = None
    unet.train()
    for _step in range(steps):
        x0 = images[torch.randint(0, len(images), (batch_size,))] * 2 - 1
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,))
        noise = torch.randn_like(x0)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(unet(xt, t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            for p_avg, p in zip(average.parameters(), unet.parameters(), strict=True):
                p_avg.lerp_(p, 1 - ema)
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        bar.advance(1, info=f"loss {avg:.4f}")
    bar.close()
    pipeline = DDPMPipeline(unet=average.eval(), scheduler=scheduler)
    summary = {"family": "DDPM (diffusers UNet2DModel)", "steps": steps, "batch_size": batch_size, "lr": lr, "ema": ema,
               "parameters": sum(p.numel() for p in average.parameters()), "final_loss": round(avg or math.nan, 4),
               "train_seconds": round(time.perf_counter() - t0, 1)}
    return pipeline, summary


def save_pipeline(pipeline: Any, folder: str | Path) -> Path:
    """Write ``pipeline`` in the diffusers format (safetensors weights) to ``folder``, replacing it whole:
    written beside it first, then renamed, so a failed save leaves the old model in place."""
    import shutil
    import tempfile

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        pipeline.save_pretrained(tmp, safe_serialization=True)
        old = folder.with_name(f".{folder.name}.old")
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
