"""promptgen's DiffAE against phizaz/diffae's own networks and samplers, on the same random-weight checkpoint.

For each case: build phizaz/diffae's ``BeatGANsAutoencModel`` (with its latent ``MLPSkipNet``) at a given
configuration, give it random weights, save them as the Lightning ``last.ckpt`` the official training writes
(``promptgen_plugin_diffae.testing``), load that file through promptgen (``diffae:path=...``), and run both
two-stage samplers from the same latent noise and x_T: the official ``latent_sampler.sample`` (DDIM over
``const0.008``, no clipping), de-normalisation, then ``sampler.sample(model, noise=x_T, cond=...)`` (DDIM over
the linear schedule, x̂_0 clipped), exactly as phizaz/diffae's ``render_uncondition``. Prints one JSON object.

    git clone https://github.com/phizaz/diffae /tmp/diffae   # or any checkout of it
    python plugins/promptgen-plugin-diffae/scripts/conformance.py --official /tmp/diffae [--full]

The official modules need only torch and numpy (``model/``, ``diffusion/``, ``choices.py``, ``config_base.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def official_model(preset, seed: int):
    from choices import Activation
    from model import BeatGANsAutoencConfig
    from model.latentnet import MLPSkipNetConfig

    u, lat = preset.unet, preset.latent
    latent = MLPSkipNetConfig(num_channels=lat.channels, skip_layers=tuple(lat.skip), num_hid_channels=lat.hidden, num_layers=lat.layers,
                              num_time_emb_channels=lat.time_channels, activation=Activation.silu, use_norm=lat.norm,
                              condition_bias=lat.condition_bias)
    conf = BeatGANsAutoencConfig(
        image_size=u.image_size, in_channels=3, model_channels=u.channels, out_channels=3, num_res_blocks=u.res_blocks,
        embed_channels=u.embed, attention_resolutions=tuple(u.attention), channel_mult=tuple(u.channel_mult), dropout=0.1,
        num_heads=u.heads, resblock_updown=True, resnet_two_cond=True, enc_out_channels=u.style,
        enc_channel_mult=tuple(u.channel_mult) + (u.channel_mult[-1],), enc_pool="adaptivenonzero", latent_net_conf=latent,
    )
    torch.manual_seed(seed)
    model = conf.make_model()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():  # the zero-initialised layers too, so every weight matters
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def official_sampler(schedule: str, n: int, autoencoder: bool):
    from choices import ModelType
    from diffusion.base import GenerativeType, LossType, ModelMeanType, ModelVarType, get_named_beta_schedule
    from diffusion.diffusion import SpacedDiffusionBeatGansConfig, space_timesteps

    return SpacedDiffusionBeatGansConfig(
        gen_type=GenerativeType.ddim, model_type=ModelType.autoencoder if autoencoder else ModelType.ddpm,
        betas=get_named_beta_schedule(schedule, 1000), model_mean_type=ModelMeanType.eps, model_var_type=ModelVarType.fixed_large,
        loss_type=LossType.mse, rescale_timesteps=False, use_timesteps=space_timesteps(1000, f"ddim{n}"), fp16=False,
    ).make_sampler()


def run_case(name: str, preset, latent_steps: int, steps: int, batch: int, seed: int, folder: Path) -> dict:
    from promptgen_plugin_diffae import DiffAEOptions, _build
    from promptgen_plugin_diffae.testing import lightning_checkpoint, random_stats, save_lightning

    from promptgen.plugin import parse_spec

    model = official_model(preset, seed)
    mean, std = random_stats(preset.latent.channels, seed)
    path = save_lightning(lightning_checkpoint(model.state_dict(), preset, stats=(mean, std), seed=seed), folder / f"{name}.ckpt")
    spec = f"diffae:path={path},sample_steps={steps},sample_latent_steps={latent_steps}"
    options = DiffAEOptions(path=str(path), sample_steps=steps, sample_latent_steps=latent_steps)
    ours = _build(parse_spec(spec), options, None)

    g = torch.Generator().manual_seed(seed + 100)
    size = preset.unet.image_size
    z = torch.randn(batch, preset.latent.channels, generator=g)
    x_t = torch.randn(batch, 3, size, size, generator=g)
    with torch.no_grad():
        start = time.perf_counter()
        cond = official_sampler("const0.008", latent_steps, False).sample(model=model.latent_net, noise=z, clip_denoised=False)
        cond = cond * std[None] + mean[None]
        theirs = (official_sampler("linear", steps, True).sample(model=model, noise=x_t, cond=cond) + 1) / 2
        official_s = time.perf_counter() - start
        start = time.perf_counter()
        mine = ours.module(z, x_t)
        ours_s = time.perf_counter() - start
        code = ours.module.semantic(z, latent_steps)
    return {
        "case": name, "image_size": size, "channels": preset.unet.channels, "channel_mult": list(preset.unet.channel_mult),
        "latent_steps": latent_steps, "steps": steps, "batch": batch,
        "max_abs_diff_semantic_code": float((code - cond).abs().max()), "max_abs_diff_image": float((mine - theirs).abs().max()),
        "image_std": float(theirs.std()), "official_s": round(official_s, 3), "promptgen_s": round(ours_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, type=Path, help="a checkout of phizaz/diffae")
    parser.add_argument("--full", action="store_true", help="also the published FFHQ 128 and 256 architectures (minutes on a CPU)")
    args = parser.parse_args()
    sys.path.insert(0, str(args.official.resolve()))
    from promptgen_plugin_diffae.checkpoints import FFHQ128, FFHQ256, Preset
    from promptgen_plugin_diffae.network import LatentConfig, UNetConfig
    from promptgen_plugin_diffae.testing import TINY

    three_levels = Preset(UNetConfig(32, 32, (1, 2, 2), 2, (16, 8), 2, 32, 32), LatentConfig(32, 64, 6, (1, 2, 3, 4, 5), 16))
    cases = [("tiny", TINY, 5, 5, 3), ("tiny", TINY, 20, 10, 3), ("tiny", TINY, 100, 100, 2),
             ("three-levels-two-heads", three_levels, 5, 5, 2), ("three-levels-two-heads", three_levels, 10, 20, 2)]
    if args.full:
        cases += [("ffhq128", FFHQ128, 5, 5, 1), ("ffhq256", FFHQ256, 5, 2, 1)]
    torch.set_grad_enabled(False)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, preset, latent_steps, steps, batch) in enumerate(cases):
            results.append(run_case(name, preset, latent_steps, steps, batch, seed=i, folder=Path(tmp)))
            print(json.dumps(results[-1]), file=sys.stderr)
    worst = max(max(r["max_abs_diff_image"], r["max_abs_diff_semantic_code"]) for r in results)
    print(json.dumps({"official": "phizaz/diffae", "torch": torch.__version__, "cases": results, "max_abs_diff": worst}, indent=1))


if __name__ == "__main__":
    main()
