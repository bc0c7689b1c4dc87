"""BigGAN-deep as a promptgen generator: the latent parts, truncation, a fixed class, the download."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from promptgen import plugin
from promptgen_plugin_biggan.checkpoints import checkpoint_files, load_biggan
from promptgen_plugin_biggan.classes import class_index, imagenet_classes
from promptgen_plugin_biggan.network import BigGAN
from promptgen_plugin_biggan.zoo import ZooModel

CACHE_SUBDIR = "biggan"
#: z is clamped to ±Z_CLAMP before it is scaled by the truncation (the PromptGen authors' code).
Z_CLAMP = 2.0


def truncate(eps: Tensor, truncation: float) -> Tensor:
    """A standard normal latent as BigGAN's truncated z: ``truncation · clamp(eps, -2, 2)``."""
    return truncation * eps.clamp(-Z_CLAMP, Z_CLAMP)


class BigGANDecoder(nn.Module):
    """Standard normal latents -> images (B, 3, size, size) in [0, 1], with the spec's options baked in.

    ``z``: (B, z_dim), mapped by :func:`truncate`. ``class_eps``: (B, z_dim),
    the class embedding in units of ``class_scale`` (the RMS of the embedding
    matrix), so a standard normal latent is an embedding of the same spread as
    the classes' own; None with a fixed class (``label``).
    """

    def __init__(self, net: BigGAN, *, truncation: float, label: int | None = None, size: int | None = None) -> None:
        super().__init__()
        self.net, self.truncation, self.label, self.size = net, truncation, label, size
        w = net.embeddings.weight  # (z_dim, num_classes): column i is class i's embedding
        self.register_buffer("class_scale", w.detach().pow(2).mean().sqrt().reshape(()))
        fixed = w.detach()[:, label].clone() if label is not None else torch.zeros(w.shape[0])
        self.register_buffer("fixed_embedding", fixed)

    def forward(self, z: Tensor, class_eps: Tensor | None = None) -> Tensor:
        if class_eps is None:
            if self.label is None:
                raise ValueError("no class: give class_eps, or build the decoder with a label")
            embedding = self.fixed_embedding.expand(z.shape[0], -1)
        else:
            embedding = self.class_scale * class_eps
        img = self.net.synthesise(truncate(z, self.truncation), embedding, self.truncation)
        x = ((img + 1) / 2).clamp(0, 1)
        if self.size is not None and self.size != x.shape[-1]:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=self.size < x.shape[-1])
        return x


class BigGANGenerator(plugin.ModuleGenerator):
    """BigGAN-deep with the class embedding in the latent: parts ``z`` and ``class``, each (z_dim,)."""

    def __init__(self, module: BigGANDecoder, info: plugin.GeneratorInfo) -> None:
        d = module.net.cfg.z_dim
        super().__init__(module, (2 * d,), info)
        self.latent_parts = {"z": (d,), "class": (d,)}

    def decode(self, z: dict[str, Tensor] | Tensor) -> Tensor:  # type: ignore[override]
        if isinstance(z, Tensor):  # called unbound, with the flat latent
            z = plugin.split_latent(z, self.latent_parts)
        return self.module(z["z"], z["class"])


def model_files(model: ZooModel | None, path: str | None, spec: plugin.Spec, *, progress: bool = True) -> tuple[Path, Path]:
    """``(config.json, pytorch_model.bin)`` of a ``path=`` option or a zoo model, downloading into the cache once."""
    if path is not None:
        try:
            return checkpoint_files(path)
        except plugin.PromptgenError as e:
            raise plugin.SpecError(f"{spec.format()!r}: {e}") from None
    if model is None:
        raise plugin.SpecError(f"{spec.format()!r}: give the model, e.g. biggan:path=biggan-deep-128/, or a named one (biggan-deep-128)")
    config = plugin.local_file(
        model.config, path=None, subdir=CACHE_SUBDIR, spec=spec, what="its config.json", progress=False
    )
    weights = plugin.local_file(
        model.weights, path=None, subdir=CACHE_SUBDIR, spec=spec, what="its pytorch_model.bin", progress=progress
    )
    return config, weights


def build_generator(spec: plugin.Spec, options: plugin.Options, model: ZooModel | None = None, *, progress: bool = True) -> plugin.ModuleGenerator:
    """A promptgen generator for ``biggan:path=...`` or a zoo name, with the spec's (core-checked) options."""
    config_path, weights_path = model_files(model, options.path, spec, progress=progress)
    net = load_biggan(config_path, weights_path)
    cfg = net.cfg
    label = class_index(spec, options.label, cfg.num_classes) if options.label is not None else None
    decoder = BigGANDecoder(net, truncation=options.truncation, label=label, size=options.size)
    res = options.size or cfg.output_dim
    what = model.description if model is not None else f"BigGAN-deep {cfg.output_dim}×{cfg.output_dim} from {weights_path.name}"
    latent = f"z ({cfg.z_dim}, clamped to ±2 × truncation {options.truncation:g})"
    if label is not None:
        named = imagenet_classes()[label] if cfg.num_classes == len(imagenet_classes()) else str(label)
        latent += f", class fixed to {label} ({named})"
    else:
        latent += f" + class embedding ({cfg.z_dim}, N(0, s²), s = {float(decoder.class_scale):.4g} the RMS of the embedding matrix)"
    info = plugin.GeneratorInfo(
        name=spec.name,
        resolution=(res, res),
        channels=3,
        licence=model.licence if model is not None and options.path is None else "see the model's source (the official BigGAN-deep weights are Apache-2.0)",
        source=model.source if model is not None and options.path is None else str(weights_path),
        description=f"{what}; latent {latent}",
    )
    if label is not None:
        return plugin.ModuleGenerator(decoder, (cfg.z_dim,), info)
    return BigGANGenerator(decoder, info)
