"""Reading phizaz/diffae's files without running code from them.

The files (phizaz/diffae README, "Checkpoints"):

- ``<name>_autoenc_latent/last.ckpt``: a PyTorch Lightning checkpoint of the whole sampler. Its
  ``state_dict`` holds ``ema_model.*`` (the image U-Net, its semantic encoder and ``latent_net.*``, the latent
  DDIM's MLP), the same without EMA under ``model.*``, ``x_T``, and ``conds_mean``/``conds_std`` (1, 512): the
  statistics the latent DDIM's output is de-normalised with. ``hyper_parameters`` holds the training
  configuration's JSON-able fields (``img_size``, ``net_ch``, ``net_ch_mult``...).
- ``<name>_autoenc/last.ckpt``: the autoencoder alone (no ``latent_net.*``, no statistics), and
  ``<name>_autoenc/latent.pkl``: ``{"conds", "conds_mean", "conds_std"}`` (a torch file despite its name).

Lightning 1.4 stores its ``ModelCheckpoint`` callback's state under the callback's class, so the pickle names
that class. It is allow-listed as an inert placeholder (a class with no code, used only as a dict key):
nothing from pytorch_lightning is imported or run, and every other global is refused as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from promptgen import plugin

from .network import LatentConfig, UNetConfig


class CheckpointError(plugin.PromptgenError):
    """A DiffAE file that cannot be used as asked."""


class ModelCheckpoint:
    """Stands in for ``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint``: a dict key in the file."""


ModelCheckpoint.__module__ = "pytorch_lightning.callbacks.model_checkpoint"

WHAT = "a DiffAE last.ckpt (phizaz/diffae, e.g. ffhq256_autoenc_latent/last.ckpt)"
STATS = "a DiffAE latent.pkl (conds_mean, conds_std)"


@dataclass(frozen=True)
class Preset:
    """A published model's configuration (phizaz/diffae ``templates.py``/``templates_latent.py``)."""

    unet: UNetConfig
    latent: LatentConfig
    image_schedule: str = "linear"
    latent_schedule: str = "const0.008"
    total: int = 1000


FFHQ256 = Preset(UNetConfig(256, 128, (1, 1, 2, 2, 4, 4)), LatentConfig())
FFHQ128 = Preset(UNetConfig(128, 128, (1, 1, 2, 3, 4)), LatentConfig())
LSUN128 = Preset(UNetConfig(128, 128, (1, 1, 2, 3, 4)), LatentConfig(layers=20, skip=tuple(range(1, 20))))


@dataclass
class DiffAEFiles:
    """What sampling needs, read and checked: the two networks' weights, the statistics and the configuration."""

    unet: dict[str, torch.Tensor]
    latent: dict[str, torch.Tensor]
    mean: torch.Tensor
    std: torch.Tensor
    preset: Preset
    source: str = "the checkpoint"
    latent_source: str = "the checkpoint"


def read_lightning(path: Path, what: str = WHAT) -> dict[str, Any]:
    """A Lightning checkpoint's top-level dict, read with ``weights_only`` (one line on any problem)."""
    ckpt = plugin.load_torch_file(path, what=what, allow=[ModelCheckpoint])
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path.name!r} has no Lightning 'state_dict'; it is not {what}")
    return ckpt


def _ema(state: dict[str, Any], path: Path) -> dict[str, Any]:
    ema = {k[len("ema_model.") :]: v for k, v in state.items() if isinstance(k, str) and k.startswith("ema_model.")}
    if not ema:
        raise CheckpointError(f"{path.name!r} holds no 'ema_model.*' weights; it is not {WHAT}")
    return ema


def _stats(source: dict[str, Any], keys: tuple[str, str], name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    mean, std = source.get(keys[0]), source.get(keys[1])
    if mean is None and std is None:
        return None
    if not isinstance(mean, torch.Tensor) or not isinstance(std, torch.Tensor) or mean.numel() != std.numel():
        raise CheckpointError(f"{name}: {keys[0]} and {keys[1]} must be tensors of the same size; the file is damaged or not {STATS}")
    mean, std = mean.reshape(-1).float(), std.reshape(-1).float()
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
        raise CheckpointError(f"{name}: the latent statistics are not finite and positive; the file is damaged: download it again")
    return mean, std


def preset_of(hp: object, fallback: Preset) -> Preset:
    """The configuration from a checkpoint's ``hyper_parameters`` (phizaz/diffae's field names), else ``fallback``."""
    if not isinstance(hp, dict) or "net_ch" not in hp:
        return fallback
    u, lat = fallback.unet, fallback.latent

    def get(key: str, default: Any) -> Any:
        value = hp.get(key)
        return default if value is None else value

    if hp.get("net_num_input_res_blocks") is not None or get("net_resblock_updown", True) is not True:
        raise CheckpointError("the checkpoint's network is not a DiffAE autoencoder this plugin reads (net_num_input_res_blocks or "
                              "net_resblock_updown differ from the published models')")
    style = int(get("style_ch", u.style))
    cond_channels = int(get("net_beatgans_resnet_cond_channels", get("net_beatgans_embed_channels", u.embed)))
    if cond_channels != style:
        raise CheckpointError(f"the checkpoint's residual blocks read a {cond_channels}-d code but its semantic code is {style}-d "
                              "(style_ch); it is not a DiffAE this plugin reads")
    layers = int(get("net_latent_layers", lat.layers))
    unet = UNetConfig(
        image_size=int(get("img_size", u.image_size)), channels=int(get("net_ch", u.channels)),
        channel_mult=tuple(int(m) for m in get("net_ch_mult", u.channel_mult)), res_blocks=int(get("net_num_res_blocks", u.res_blocks)),
        attention=tuple(int(a) for a in get("net_attn", u.attention)), heads=int(get("net_beatgans_attn_head", u.heads)),
        embed=int(get("net_beatgans_embed_channels", u.embed)), style=style,
    )
    latent = LatentConfig(
        channels=style, hidden=int(get("net_latent_num_hid_channels", lat.hidden)), layers=layers,
        skip=tuple(int(s) for s in get("net_latent_skip_layers", range(1, layers))),
        time_channels=int(get("net_latent_time_emb_channels", lat.time_channels)), norm=bool(get("net_latent_use_norm", lat.norm)),
        condition_bias=float(get("net_latent_condition_bias", lat.condition_bias)),
    )
    return Preset(unet, latent, str(get("beta_scheduler", "linear")), str(get("latent_beta_scheduler", "const0.008")), int(get("T", 1000)))


def read_files(path: Path, *, latent_path: Path | None, stats_path: Path | None, fallback: Preset) -> DiffAEFiles:
    """Everything sampling needs from ``path`` (and, for an autoencoder saved alone, ``latent_path``/``stats_path``).

    Raises:
        CheckpointError, plugin.WeightsFileError: one line naming the file and what to give instead.
    """
    ckpt = read_lightning(path)
    ema = _ema(ckpt["state_dict"], path)
    preset = preset_of(ckpt.get("hyper_parameters"), fallback)
    latent = {k[len("latent_net.") :]: v for k, v in ema.items() if k.startswith("latent_net.")}
    stats = _stats(ckpt["state_dict"], ("conds_mean", "conds_std"), repr(path.name))
    if latent_path is not None:
        other = read_lightning(latent_path, "a DiffAE latent DPM last.ckpt (e.g. ffhq256_autoenc_latent/last.ckpt)")
        other_ema = _ema(other["state_dict"], latent_path)
        latent = {k[len("latent_net.") :]: v for k, v in other_ema.items() if k.startswith("latent_net.")}
        if not latent:
            raise CheckpointError(f"latent_path={latent_path.name!r} holds no latent DDIM ('latent_net.*'); give the *_autoenc_latent/last.ckpt")
        stats = _stats(other["state_dict"], ("conds_mean", "conds_std"), repr(latent_path.name)) or stats
        preset = Preset(preset.unet, preset_of(other.get("hyper_parameters"), preset).latent, preset.image_schedule,
                        preset_of(other.get("hyper_parameters"), preset).latent_schedule, preset.total)
    if stats_path is not None:
        raw = plugin.load_torch_file(stats_path, what=STATS)
        stats = _stats(raw if isinstance(raw, dict) else {}, ("conds_mean", "conds_std"), repr(stats_path.name))
        if stats is None:
            raise CheckpointError(f"stats={stats_path.name!r} holds no conds_mean and conds_std; give {STATS}")
    if not latent:
        raise CheckpointError(
            f"{path.name!r} is a DiffAE autoencoder without its latent DDIM, which sampling needs: give the latent model's checkpoint "
            "(path=<name>_autoenc_latent/last.ckpt), or add latent_path=<name>_autoenc_latent/last.ckpt"
        )
    if stats is None:
        raise CheckpointError(
            f"{path.name!r} has no latent statistics (conds_mean, conds_std), which sampling needs: add stats=<name>_autoenc/latent.pkl"
        )
    unet = {k: v for k, v in ema.items() if not k.startswith(("latent_net.", "encoder."))}
    latent_source = repr((latent_path or path).name)
    return DiffAEFiles(unet, latent, stats[0], stats[1], preset, repr(path.name), latent_source)


__all__ = ["FFHQ128", "FFHQ256", "LSUN128", "CheckpointError", "DiffAEFiles", "ModelCheckpoint", "Preset", "preset_of", "read_files", "read_lightning"]
