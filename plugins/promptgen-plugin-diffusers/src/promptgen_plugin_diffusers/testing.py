"""Random-weight pipelines in the exact diffusers format, for tests and the conformance script.

They are written by diffusers' own ``save_pretrained``, so the files are what a downloaded pipeline holds
(``model_index.json``, ``unet/config.json``, ``unet/diffusion_pytorch_model.safetensors``,
``scheduler/scheduler_config.json``), only small.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def tiny_unet(*, size: int = 8, channels: int = 3, seed: int = 0, attention: bool = True, scale: float = 0.05) -> Any:
    """A small random ``UNet2DModel`` (8 and 16 channels, attention at the lower level), its zero-initialised
    layers perturbed by ``scale`` so that every weight matters."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D" if attention else "DownBlock2D"),
        up_block_types=("AttnUpBlock2D" if attention else "UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    )
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return unet.eval()


def write_pipeline(folder: str | Path, *, size: int = 8, channels: int = 3, seed: int = 0, scheduler: str = "DDPMScheduler",
                   train_steps: int = 1000, prediction: str = "epsilon", kind: str = "DDPMPipeline", attention: bool | None = None) -> Path:
    """Save a random-weight unconditional pipeline at ``folder`` with diffusers' ``save_pretrained``.

    ``attention`` (default: up to 32 pixels) puts self-attention at the lower level, as the published DDPMs
    have; above that its cost grows with the square of the pixels, so large test pipelines leave it out."""
    import diffusers

    sched = getattr(diffusers, scheduler)(num_train_timesteps=train_steps, prediction_type=prediction)
    attention = size <= 32 if attention is None else attention
    pipe = getattr(diffusers, kind)(unet=tiny_unet(size=size, channels=channels, seed=seed, attention=attention), scheduler=sched)
    pipe.save_pretrained(folder, safe_serialization=True)
    return Path(folder)


def write_conditional_pipeline(folder: str | Path) -> Path:
    """A folder whose model_index.json names a text-conditional ``UNet2DConditionModel`` (what promptgen refuses)."""
    import json

    from diffusers import DDPMScheduler, UNet2DConditionModel

    folder = Path(folder)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=8, norm_num_groups=4, attention_head_dim=2)
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    DDPMScheduler().save_pretrained(folder / "scheduler")
    index = {"_class_name": "DDPMPipeline", "_diffusers_version": diffusers_version(), "scheduler": ["diffusers", "DDPMScheduler"],
             "unet": ["diffusers", "UNet2DConditionModel"]}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder


def diffusers_version() -> str:
    import diffusers

    return str(diffusers.__version__)


def ddim_pipeline_images(folder: str | Path, x_t: torch.Tensor, steps: int) -> torch.Tensor:
    """diffusers' own ``DDIMPipeline`` (η = 0) from the pipeline at ``folder``, fed exactly ``x_t``: images (B, C, H, W) in [0, 1]."""
    from unittest import mock

    import numpy as np
    from diffusers import DDIMPipeline
    from diffusers.pipelines.ddim import pipeline_ddim
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    pipe = DDIMPipeline.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    with mock.patch.object(pipeline_ddim, "randn_tensor", lambda *a, **k: x_t.clone()):
        images = pipe(batch_size=x_t.shape[0], num_inference_steps=steps, eta=0.0, output_type="np").images
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
