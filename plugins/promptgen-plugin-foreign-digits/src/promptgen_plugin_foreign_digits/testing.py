"""Random-weight files in the exact format of csinva/gan-vae-pretrained-pytorch's, for tests and the conformance
script: a ``state_dict()`` saved by ``torch.save`` in the legacy (non-zip) serialisation the published files use,
with the keys and shapes of the published networks. The published ``G--300.ckpt`` was saved from a GPU: its
tensors are tagged ``cuda:0``, which a machine without CUDA must map to the CPU; :func:`write_mlp_gan` tags them
the same way, without needing a GPU."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from promptgen_plugin_foreign_digits.networks import LeNet5, VAEDecoder, VAEEncoder, mlp_gan


def _randomise(module: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5 if p.dim() > 1 else 0.1 * torch.randn(p.shape, generator=g))
    return module


def _save(state: dict, path: Path, location: str = "cpu") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = torch.serialization.location_tag
    torch.serialization.location_tag = lambda storage: location  # where the storages say they were saved from
    try:
        torch.save(state, path, _use_new_zipfile_serialization=False)  # the published files are legacy pickles
    finally:
        torch.serialization.location_tag = tag
    return path


def write_mlp_gan(path: str | Path, seed: int = 0) -> Path:
    """``G--300.ckpt``: the MLP GAN's ``nn.Sequential`` state dict (keys ``0.*``, ``2.*``, ``4.*``), tagged ``cuda:0``."""
    return _save(_randomise(mlp_gan(), seed).state_dict(), Path(path), location="cuda:0")


def write_mlp_vae(path: str | Path, seed: int = 0) -> Path:
    """``vae_epoch_25.pth``: the whole VAE's state dict (``fc1``, ``fc21``, ``fc22``, ``fc3``, ``fc4``)."""
    encoder, decoder = _randomise(VAEEncoder(), seed), _randomise(VAEDecoder(), seed + 1)
    return _save({**encoder.state_dict(), **decoder.state_dict()}, Path(path))


def write_lenet(path: str | Path, seed: int = 0) -> Path:
    """``lenet_epoch=12_test_acc=0.991.pth``: the LeNet-5's state dict (``convnet.c1/c3/c5``, ``fc.f6/f7``)."""
    return _save(_randomise(LeNet5(), seed).state_dict(), Path(path))


__all__ = ["write_lenet", "write_mlp_gan", "write_mlp_vae"]
