"""Random-weight DiffAE checkpoints in phizaz/diffae's file format, for tests and benchmarks.

:func:`write_checkpoint` writes what PyTorch Lightning 1.4 saves for phizaz/diffae's ``LitModel``: a torch zip
file whose top-level dict holds ``epoch``, ``global_step``, ``pytorch-lightning_version``, ``state_dict``
(``model.*``, ``ema_model.*`` with the semantic encoder's ``encoder.*`` and ``latent_net.*``, ``x_T``,
``conds_mean``/``conds_std``), ``callbacks`` keyed by the ``ModelCheckpoint`` class, ``optimizer_states``,
``lr_schedulers`` and ``hyper_parameters``. Only the sizes are small.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .checkpoints import ModelCheckpoint, Preset
from .network import ConditionalUNet, LatentConfig, LatentMLP, UNetConfig

#: A DiffAE small enough for tests: 16 pixels, two levels, attention at 8, a 16-d semantic code (and time embedding:
#: phizaz/diffae's residual blocks read the code with layers sized for the time embedding).
TINY = Preset(UNetConfig(16, 8, (1, 2), 1, (8,), 1, 16, 16), LatentConfig(16, 32, 4, (1, 2, 3), 8))


def hyper_parameters(preset: Preset) -> dict[str, Any]:
    """The JSON-able fields of phizaz/diffae's ``TrainConfig`` that describe the networks, as a checkpoint stores them."""
    u, lat = preset.unet, preset.latent
    return {
        "img_size": u.image_size, "net_ch": u.channels, "net_ch_mult": list(u.channel_mult), "net_num_res_blocks": u.res_blocks,
        "net_num_input_res_blocks": None, "net_attn": list(u.attention), "net_beatgans_attn_head": u.heads,
        "net_beatgans_embed_channels": u.embed, "net_resblock_updown": True, "net_beatgans_resnet_two_cond": True, "style_ch": u.style,
        "net_latent_layers": lat.layers, "net_latent_skip_layers": list(lat.skip), "net_latent_num_hid_channels": lat.hidden,
        "net_latent_time_emb_channels": lat.time_channels, "net_latent_use_norm": lat.norm, "net_latent_condition_bias": lat.condition_bias,
        "beta_scheduler": preset.image_schedule, "latent_beta_scheduler": preset.latent_schedule, "T": preset.total,
        "latent_znormalize": True, "latent_clip_sample": False, "T_eval": 20, "latent_T_eval": 20, "name": "tiny_autoenc_latent",
    }


def random_networks(preset: Preset = TINY, seed: int = 0, scale: float = 0.05) -> tuple[ConditionalUNet, LatentMLP]:
    """The two networks with random weights; the zero-initialised layers are perturbed by ``scale`` so every weight matters."""
    torch.manual_seed(seed)
    unet, latent = ConditionalUNet(preset.unet), LatentMLP(preset.latent)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in [*unet.parameters(), *latent.parameters()]:
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return unet.eval(), latent.eval()


@contextmanager
def _lightning_names() -> Iterator[None]:
    """Makes ``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint`` name the placeholder while a file is saved."""
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    saved = {n: sys.modules.get(n) for n in names}
    try:
        for n in names:
            sys.modules[n] = types.ModuleType(n)
        sys.modules[names[-1]].ModelCheckpoint = ModelCheckpoint  # type: ignore[attr-defined]
        yield
    finally:
        for n, module in saved.items():
            if module is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = module


def lightning_checkpoint(ema: dict[str, torch.Tensor], preset: Preset, *, stats: tuple[torch.Tensor, torch.Tensor] | None,
                         seed: int = 0) -> dict[str, Any]:
    """A Lightning 1.4 checkpoint dict around an ``ema_model`` state dict (``model.*`` holds a copy, as after training)."""
    g = torch.Generator().manual_seed(seed + 7)
    state: dict[str, torch.Tensor] = {}
    state.update({f"model.{k}": v.clone() for k, v in ema.items()})
    state.update({f"ema_model.{k}": v.clone() for k, v in ema.items()})
    size = preset.unet.image_size
    state["x_T"] = torch.randn(4, 3, size, size, generator=g)
    if stats is not None:
        state["conds_mean"], state["conds_std"] = stats[0].reshape(1, -1), stats[1].reshape(1, -1)
    return {
        "epoch": 3, "global_step": 1200, "pytorch-lightning_version": "1.4.5", "state_dict": state,
        "callbacks": {ModelCheckpoint: {"monitor": None, "best_model_score": None, "best_model_path": "", "current_score": None,
                                        "dirpath": "checkpoints/tiny_autoenc_latent"}},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01,
                                                              "amsgrad": False, "params": [0, 1]}]}],
        "lr_schedulers": [{"base_lrs": [1e-4], "last_epoch": 1200, "_step_count": 1201, "verbose": False, "_get_lr_called_within_step": False,
                           "_last_lr": [1e-4], "lr_lambdas": [{"warmup": 0}]}],
        "hparams_name": "kwargs", "hyper_parameters": hyper_parameters(preset),
    }


def save_lightning(ckpt: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lightning_names():
        torch.save(ckpt, path)
    return path


def random_stats(channels: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 3)
    return torch.randn(channels, generator=g) * 0.3, torch.rand(channels, generator=g) + 0.5


def encoder_state(preset: Preset, seed: int = 0) -> dict[str, torch.Tensor]:
    """A stand-in for the semantic encoder's weights (``encoder.*``): sampling never reads them, the file has them."""
    g = torch.Generator().manual_seed(seed + 5)
    ch = preset.unet.channels
    return {"encoder.input_blocks.0.0.weight": torch.randn(ch, 3, 3, 3, generator=g), "encoder.input_blocks.0.0.bias": torch.zeros(ch),
            "encoder.out.2.weight": torch.randn(preset.unet.style, ch, 1, 1, generator=g), "encoder.out.2.bias": torch.zeros(preset.unet.style)}


def write_checkpoint(path: str | Path, preset: Preset = TINY, *, seed: int = 0, latent: bool = True, stats: bool = True) -> Path:
    """A ``last.ckpt`` of random weights: with ``latent`` and ``stats`` the latent model's file (everything sampling
    needs); without them the autoencoder's alone (``<name>_autoenc/last.ckpt``)."""
    unet, mlp = random_networks(preset, seed)
    ema = {**unet.state_dict(), **encoder_state(preset, seed)}
    if latent:
        ema.update({f"latent_net.{k}": v for k, v in mlp.state_dict().items()})
    return save_lightning(lightning_checkpoint(ema, preset, stats=random_stats(preset.latent.channels, seed) if stats else None, seed=seed), path)


def write_stats(path: str | Path, preset: Preset = TINY, *, seed: int = 0, count: int = 10) -> Path:
    """A ``latent.pkl``: ``{"conds", "conds_mean", "conds_std"}`` as phizaz/diffae's ``infer`` saves it (torch.save)."""
    g = torch.Generator().manual_seed(seed + 11)
    conds = torch.randn(count, preset.latent.channels, generator=g)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"conds": conds, "conds_mean": conds.mean(0), "conds_std": conds.std(0)}, path)
    return path


__all__ = ["TINY", "hyper_parameters", "lightning_checkpoint", "random_networks", "save_lightning", "write_checkpoint", "write_stats"]
