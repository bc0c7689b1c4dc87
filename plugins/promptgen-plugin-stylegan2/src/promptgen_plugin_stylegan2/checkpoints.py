"""Reading official StyleGAN2 and StyleGAN3 checkpoints without running code from them.

Two formats:

* **NVIDIA network pickles** (stylegan2-ada-pytorch, stylegan3): a plain
  ``pickle`` of ``{"G": ..., "D": ..., "G_ema": ..., "training_set_kwargs": ...,
  "augment_pipe": ...}`` whose networks are ``torch_utils.persistence`` objects,
  read by :func:`~.stored.load_nvidia_pickle` (an allow-listed unpickler that
  never runs the source stored with them). ``G_ema`` is a StyleGAN2 generator
  (synthesis blocks ``b4`` ... ``b1024``; read here) or a StyleGAN3 one (a
  Fourier ``input`` and layers ``L0_...``; read by :mod:`.checkpoints_stylegan3`).
* **rosinality's ``.pt``** (github.com/rosinality/stylegan2-pytorch, used by
  the PromptGen paper): ``torch.save({"g_ema": state_dict, "latent_avg": w,
  ...})``, read with ``torch.load(weights_only=True)`` (``argparse.Namespace``,
  which its training script stores as ``args``, is the one extra class allowed),
  and its names mapped onto the official ones.

They return a :class:`~promptgen_plugin_stylegan2.network.StyleGAN2` or a
:class:`~promptgen_plugin_stylegan2.stylegan3.StyleGAN3` with the file's
weights, checked key by key and shape by shape.

A file is data from anyone, so what it costs is bounded by the file itself:
the architecture it describes (stored attributes such as ``z_dim``,
``img_resolution`` and the mapping's ``num_layers``, or rosinality's key names)
is checked against declared bounds (:data:`~.network.MAX_MAPPING_LAYERS`,
:data:`~.network.MAX_RESOLUTION`) before anything is built; every tensor must
be numbers the file holds (not a stride-0 view claiming a billion, not one
array under many names); the network is then built on the ``meta`` device and
compared with the stored shapes (:func:`promptgen.plugin.build_matching`)
before it is built for real. A zip that unpacks to more than twice its size is
refused before ``torch.load`` inflates it. Every refusal is one line naming the
file.
"""
from __future__ import annotations

import argparse
import io
import math
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import ValidationError
from torch import Tensor

from promptgen_plugin_stylegan2 import checkpoints_stylegan3
from promptgen_plugin_stylegan2.network import (
    MAX_MAPPING_LAYERS,
    MAX_RESOLUTION,
    MAX_WIDTH,
    MappingConfig,
    StyleGAN2,
    StyleGAN2Config,
)
from promptgen_plugin_stylegan2.ops import fir_filter
from promptgen_plugin_stylegan2.stored import (
    ALLOWED_GLOBALS,
    READ_ERRORS,
    CheckpointError,
    CheckpointSizeError,
    PersistentObject,
    SafeUnpickler,
    as_bool,
    as_float,
    as_int,
    as_text,
    build_checked,
    check_gains,
    check_stored,
    first_line,
    load_nvidia_pickle,
    read_checkpoint,
    show,
    validation_line,
)
from promptgen_plugin_stylegan2.stylegan3 import StyleGAN3

__all__ = [
    "ALLOWED_GLOBALS",
    "BATCH_ELEMENTS",
    "CheckpointError",
    "CheckpointSizeError",
    "Family",
    "Generator",
    "PersistentObject",
    "SafeUnpickler",
    "load_generator",
    "load_nvidia_pickle",
    "mapping_width",
    "mean_w",
]

#: The two generator families this plugin runs, as their ``--gen`` names start.
Family = Literal["stylegan2", "stylegan3"]
#: What :func:`load_generator` returns.
Generator = StyleGAN2 | StyleGAN3

#: What a legacy (non-zip) ``torch.save`` file unpickles to first.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


#: What the mean of w is computed in pieces of: at most this many numbers per activation (published models: one piece).
BATCH_ELEMENTS = 2**24


def config_from_persistent(g: PersistentObject) -> StyleGAN2Config:
    """The architecture of an official ``Generator``, read from its stored attributes and shapes.

    Every stored number that decides how many modules are built, or how wide, is checked first.
    """
    if g.class_name != "Generator":
        raise CheckpointError(f"G_ema is a {g.class_name!r}, not a Generator")
    syn, mapping = g.module("synthesis"), g.module("mapping")
    if syn is None or mapping is None:
        raise CheckpointError("the Generator has no synthesis or mapping network; the file is damaged")
    res = as_int(g.attr("img_resolution"), "img_resolution", 4, MAX_RESOLUTION, "published StyleGAN2 models have at most 1024")
    if res & (res - 1):
        raise CheckpointError(f"img_resolution is {res:,}, not a power of two; the file is damaged")
    layers = as_int(mapping.attr("num_layers"), "mapping.num_layers", 1, MAX_MAPPING_LAYERS, "published StyleGAN2 models have at most 8")
    z_dim = as_int(g.attr("z_dim"), "z_dim", 1, MAX_WIDTH)
    c_dim = as_int(g.attr("c_dim", 0), "c_dim", 0, MAX_WIDTH)
    w_dim = as_int(g.attr("w_dim"), "w_dim", 1, MAX_WIDTH)
    img_channels = as_int(g.attr("img_channels"), "img_channels", 1, MAX_WIDTH)
    if syn.module("b4") is None:
        names = sorted(str(k)[:40] for k in (syn.state.get("_modules") or {}))[:3]
        raise CheckpointError(
            f"this generator's synthesis network has layers {names}..., neither StyleGAN2 blocks (b4, b8...) "
            "nor StyleGAN3's input and layers (input, L0_...); it is not a StyleGAN network promptgen knows"
        )
    tensors = syn.tensors()
    if "b4.const" not in tensors or tensors["b4.const"].ndim != 3:
        raise CheckpointError("synthesis has no b4.const of 3 dimensions; the file is damaged")
    channels = {4: int(tensors["b4.const"].shape[0])}
    for r in (2**i for i in range(3, int(math.log2(res)) + 1)):
        key = f"b{r}.conv1.weight"
        if key not in tensors or tensors[key].ndim != 4:
            raise CheckpointError(f"synthesis has no {key} (of 4 dimensions) for resolution {res}; the file is damaged")
        channels[r] = int(tensors[key].shape[0])
    b4 = syn.module("b4")
    conv = b4.module("conv1")
    if conv is None:
        raise CheckpointError("synthesis.b4 has no conv1; the file is damaged")
    fcs = [mapping.module(f"fc{i}") for i in range(layers)]
    if None in fcs:
        raise CheckpointError(f"mapping.num_layers is {layers} but the mapping network has no fc{fcs.index(None)}; the file is damaged")
    acts = {show(a) if not isinstance(a, str) else a for a in (fc.attr("activation") for fc in fcs)}
    if acts != {"lrelu"} or conv.attr("activation", "lrelu") != "lrelu":
        raise CheckpointError(f"unsupported activations {sorted(acts)}; only StyleGAN2's leaky ReLU generators are supported")
    clamp = conv.attr("conv_clamp")
    mtensors = mapping.tensors()
    if layers > 1 and ("fc0.weight" not in mtensors or mtensors["fc0.weight"].ndim != 2):
        raise CheckpointError("mapping has no fc0.weight of 2 dimensions; the file is damaged")
    if c_dim and ("embed.weight" not in mtensors or mtensors["embed.weight"].ndim != 2):
        raise CheckpointError(f"c_dim is {c_dim:,} but the mapping network has no label embedding (embed.weight); the file is damaged")
    filt = tensors.get("b4.resample_filter")
    if filt is None or filt.ndim != 2 or filt.shape[0] != filt.shape[1] or not filt.shape[0] or not filt.is_floating_point():
        raise CheckpointError(f"unsupported resampling filter {'(none)' if filt is None else f'of shape {tuple(filt.shape)}'}")
    taps = filt[0] / filt[0].sum()  # rank one: any row is the 1-D taps up to scale
    try:
        return StyleGAN2Config(
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=w_dim,
            resolution=res,
            img_channels=img_channels,
            mapping_layers=layers,
            mapping_features=int(mtensors["fc0.weight"].shape[0]) if layers > 1 else None,
            embed_features=int(mtensors["embed.weight"].shape[0]) if c_dim else None,
            mapping_lr=as_float(fcs[0].attr("bias_gain", 0.01), "mapping.fc0.bias_gain"),
            channels=channels,
            architecture=as_text(b4.attr("architecture", "skip"), "synthesis.b4.architecture"),
            conv_clamp=as_float(clamp, "conv_clamp") if clamp is not None else None,
            fp16_resolutions=sum(as_bool(syn.module(f"b{r}").attr("use_fp16", False), f"synthesis.b{r}.use_fp16") for r in channels),
            use_noise=as_bool(conv.attr("use_noise", True), "use_noise"),
            fir=tuple(float(t) for t in taps),
        )
    except ValidationError as e:
        raise CheckpointError(f"the stored configuration {validation_line(e)}; the file is damaged or not StyleGAN2") from None



def _build(cfg: StyleGAN2Config, state: Mapping[str, Tensor], source: str) -> StyleGAN2:
    """The network ``cfg`` describes, with ``state`` loaded: built for real only once the file's tensors fill it."""
    return build_checked(lambda: StyleGAN2(cfg), state, source, "a StyleGAN2 generator")


def generator_from_nvidia(data: Mapping[str, Any], source: str = "the pickle") -> Generator:
    """The ``G_ema`` network of an unpickled NVIDIA pickle: a :class:`StyleGAN2` or a :class:`StyleGAN3`."""
    if not isinstance(data, Mapping) or "G_ema" not in data:
        raise CheckpointError(
            f"{source} has no G_ema network; it is not a StyleGAN training snapshot or release pickle"
        )
    g = data["G_ema"]
    if not isinstance(g, PersistentObject):
        raise CheckpointError(f"{source}: G_ema is a {type(g).__name__}, not a network")
    state = g.tensors()
    check_stored(state, source)  # before any stored number is read (a stride-0 filter row could claim gigabytes)
    family = "StyleGAN3" if checkpoints_stylegan3.is_stylegan3(g) else "StyleGAN2"
    try:
        if family == "StyleGAN3":
            return checkpoints_stylegan3.generator_from_persistent(g, state, source)
        cfg = config_from_persistent(g)
    except CheckpointError as e:
        if source in str(e):
            raise
        raise type(e)(f"{source}: {e}") from None
    except KeyError as e:
        raise CheckpointError(f"{source}: G_ema lacks {e}; the file is damaged or not {family}") from None
    except READ_ERRORS as e:
        raise CheckpointError(f"{source}: G_ema's stored configuration is damaged ({first_line(e)})") from None
    model = _build(cfg, state, source)
    check_gains(g, model, "StyleGAN2")
    return model


# rosinality/stylegan2-pytorch names -> the official ones, and how many dimensions the official tensor has.
_ROS_PER_LAYER = {
    "conv.weight": ("weight", 4),
    "conv.modulation.weight": ("affine.weight", 2),
    "conv.modulation.bias": ("affine.bias", 1),
    "noise.weight": ("noise_strength", 0),
    "activate.bias": ("bias", 1),
}
_ROS_RGB = {
    "conv.weight": ("weight", 4),
    "conv.modulation.weight": ("affine.weight", 2),
    "conv.modulation.bias": ("affine.bias", 1),
    "bias": ("bias", 1),
}


def _squeeze_to(t: Tensor, ndim: int) -> Tensor:
    """Drop leading, then trailing, size-1 dimensions down to ``ndim`` (rosinality's (1, O, I, k, k), (1, 3, 1, 1)...).

    A tensor that cannot get there keeps its shape, and the shape check names it.
    """
    while t.ndim > ndim and t.shape[0] == 1:
        t = t[0]
    while t.ndim > ndim and t.shape[-1] == 1:
        t = t[..., 0]
    return t


def convert_rosinality(g_ema: Mapping[str, Tensor], latent_avg: Tensor | None, *, lr_mlp: float = 0.01) -> tuple[StyleGAN2Config, dict[str, Tensor]]:
    """Map a rosinality ``g_ema`` state dict onto the official names and shapes, with its architecture."""
    keys = {k for k in g_ema if isinstance(k, str)}
    style = sorted(int(m.group(1)) for k in keys if (m := re.fullmatch(r"style\.(\d{1,9})\.weight", k)))
    n_rgb = len({m.group(1) for k in keys if (m := re.fullmatch(r"to_rgbs\.(\d{1,9})\..*", k))})
    if not style or "input.input" not in keys or "conv1.conv.weight" not in keys:
        raise CheckpointError("g_ema is not a rosinality StyleGAN2 generator (no style.N, input.input or conv1 weights)")
    # The architecture is what the names say: as many mapping layers as style.N, one block per to_rgbs.N.
    if len(style) > MAX_MAPPING_LAYERS:
        raise CheckpointSizeError(
            f"g_ema has {len(style):,} mapping layers (style.N), more than {MAX_MAPPING_LAYERS}, the most promptgen builds "
            "(published StyleGAN2 models have at most 8); the file is damaged or not a StyleGAN2 network"
        )
    if 2 ** (n_rgb + 2) > MAX_RESOLUTION:
        raise CheckpointSizeError(
            f"g_ema has {n_rgb:,} RGB outputs (to_rgbs.N), a generator of resolution 2^{n_rgb + 2}, more than {MAX_RESOLUTION:,}, "
            "the most promptgen builds (published StyleGAN2 models have at most 1024); the file is damaged or not a StyleGAN2 network"
        )
    res = 2 ** (n_rgb + 2)
    out: dict[str, Tensor] = {}
    for i, k in enumerate(style):
        out[f"mapping.fc{i}.weight"] = g_ema[f"style.{k}.weight"]
        out[f"mapping.fc{i}.bias"] = g_ema[f"style.{k}.bias"]
    w_dim = int(g_ema[f"style.{style[-1]}.weight"].shape[0])
    out["mapping.w_avg"] = _squeeze_to(latent_avg, 1) if latent_avg is not None else torch.zeros(w_dim)
    out["synthesis.b4.const"] = _squeeze_to(g_ema["input.input"], 3)

    def copy(table: dict[str, tuple[str, int]], src: str, dst: str) -> None:
        for a, (b, ndim) in table.items():
            out[f"{dst}.{b}"] = _squeeze_to(g_ema[f"{src}.{a}"], ndim)

    def layer(src: str, dst: str, noise: str) -> None:
        copy(_ROS_PER_LAYER, src, dst)
        out[f"{dst}.noise_const"] = _squeeze_to(g_ema[noise], 2)

    def rgb(src: str, dst: str) -> None:
        copy(_ROS_RGB, src, dst)

    try:
        layer("conv1", "synthesis.b4.conv1", "noises.noise_0")
        rgb("to_rgb1", "synthesis.b4.torgb")
        channels = {4: int(out["synthesis.b4.const"].shape[0])}
        for i in range(n_rgb):
            r = 2 ** (i + 3)
            layer(f"convs.{2 * i}", f"synthesis.b{r}.conv0", f"noises.noise_{2 * i + 1}")
            layer(f"convs.{2 * i + 1}", f"synthesis.b{r}.conv1", f"noises.noise_{2 * i + 2}")
            rgb(f"to_rgbs.{i}", f"synthesis.b{r}.torgb")
            channels[r] = int(out[f"synthesis.b{r}.conv1.weight"].shape[0])
    except KeyError as e:
        raise CheckpointError(f"g_ema lacks {e.args[0]!r}; the file is damaged or not a rosinality StyleGAN2 generator") from None
    # The blur kernels are stored too: they must be the filter this implementation uses (×4 for the up-sampling ones).
    f = fir_filter((1, 3, 3, 1))
    for k in keys:
        if k.endswith((".blur.kernel", ".upsample.kernel")) and (
            tuple(g_ema[k].shape) != (4, 4) or not torch.allclose(g_ema[k].float(), f * 4)
        ):
            raise CheckpointError(f"g_ema {k} is not the [1, 3, 3, 1] filter; this StyleGAN2 variant is not supported")
    for r in [4] + [2 ** (i + 3) for i in range(n_rgb)]:
        out[f"synthesis.b{r}.resample_filter"] = f.clone()
        for conv in ("conv0", "conv1"):
            if f"synthesis.b{r}.{conv}.weight" in out:
                out[f"synthesis.b{r}.{conv}.resample_filter"] = f.clone()
    cfg = StyleGAN2Config(
        z_dim=int(g_ema[f"style.{style[0]}.weight"].shape[1]),
        w_dim=w_dim,
        resolution=res,
        img_channels=int(out["synthesis.b4.torgb.weight"].shape[0]),
        mapping_layers=len(style),
        mapping_lr=lr_mlp,
        channels=channels,
    )
    return cfg, out


def generator_from_rosinality(ckpt: Any, source: str = "the checkpoint") -> tuple[StyleGAN2, bool]:
    """A :class:`StyleGAN2` from a loaded rosinality checkpoint, and whether it carried the mean latent."""
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("g_ema"), Mapping):
        raise CheckpointError(f"{source} has no 'g_ema' state dict; it is not a rosinality StyleGAN2 checkpoint")
    latent = ckpt.get("latent_avg")
    latent = latent if isinstance(latent, Tensor) else None
    check_stored({**ckpt["g_ema"], **({"latent_avg": latent} if latent is not None else {})}, source)
    try:
        cfg, state = convert_rosinality(ckpt["g_ema"], latent)
    except CheckpointError as e:
        raise type(e)(f"{source}: {e}") from None
    except ValidationError as e:
        raise CheckpointError(f"{source}: the architecture its names and shapes describe {validation_line(e)}; the file is damaged") from None
    except READ_ERRORS as e:
        raise CheckpointError(f"{source}: g_ema is damaged or not a rosinality StyleGAN2 generator ({first_line(e)})") from None
    return _build(cfg, state, source), latent is not None


def load_generator(path: str | Path, family: Family | None = None) -> Generator:
    """Load a StyleGAN2 or StyleGAN3 generator from an NVIDIA ``.pkl`` or a rosinality ``.pt``, running no code from it.

    ``family``: the family the caller runs (``--gen stylegan2...`` or ``stylegan3...``); a file of the other one is
    refused in one line that says which name to use. None: whichever the file holds.

    Without a stored mean latent (rosinality training snapshots), ``mapping.w_avg``
    is set to the mean of w over 4,096 latents drawn with seed 0, as rosinality's
    ``mean_latent`` does, so truncation works.
    """
    raw, source = read_checkpoint(path)
    try:
        model, has_avg = _read(raw, source)
    except CheckpointError as e:  # every refusal names the file
        if source in str(e):
            raise
        raise type(e)(f"{source}: {e}") from None
    if family is not None:
        check_family(model, family, source)
    if not has_avg and isinstance(model, StyleGAN2):  # rosinality generators are unconditional
        model.mapping.w_avg.copy_(mean_w(model))
    return model


def check_family(model: Generator, family: Family, source: str) -> None:
    """A StyleGAN3 file given to a StyleGAN2 name, or the other way round, is refused with the name to use."""
    if isinstance(model, StyleGAN3) and family == "stylegan2":
        raise CheckpointError(
            f"{source} is a StyleGAN3 (config {model.cfg.kind}) network pickle, not StyleGAN2; "
            f"load it with --gen stylegan3-{(model.cfg.kind or 't').lower()}:path=FILE"
        )
    if isinstance(model, StyleGAN2) and family == "stylegan3":
        raise CheckpointError(f"{source} is a StyleGAN2 network, not StyleGAN3; load it with --gen stylegan2:path=FILE")


def _read(raw: bytes, source: str) -> tuple[Generator, bool]:
    if raw[:4] == b"PK\x03\x04" or zipfile.is_zipfile(io.BytesIO(raw)):  # torch.save's zip format (rosinality)
        check_archive(raw, source)
        return generator_from_rosinality(_torch_load(raw, source), source)
    data = load_nvidia_pickle(raw)
    if data == TORCH_LEGACY_MAGIC:  # an old-style torch.save file
        return generator_from_rosinality(_torch_load(raw, source), source)
    return generator_from_nvidia(data, source), True


def check_archive(raw: bytes, source: str) -> None:
    """A zip must not unpack to more than twice its size: torch.save stores its records uncompressed, and a
    deflated record of a few kilobytes can unpack to gigabytes when torch.load reads it."""
    try:
        unpacked = sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(raw)).infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a readable zip: torch.load says it is damaged
    if unpacked > 2 * len(raw) + 2**20:
        raise CheckpointSizeError(
            f"{source} unpacks to {unpacked:,} bytes from {len(raw):,}; torch.save never compresses, so the file is damaged or crafted"
        )


@torch.no_grad()
def mean_w(model: Generator, n: int = 4096, seed: int = 0) -> Tensor:
    """The mean of w over ``n`` standard normal z drawn with ``seed`` (rosinality's ``mean_latent``).

    In pieces of at most :data:`BATCH_ELEMENTS` numbers per activation, so that a file whose (consistent)
    mapping network is very wide costs time, not memory; one piece for every published model.
    """
    cfg = model.cfg
    gen = torch.Generator().manual_seed(seed)
    step = max(1, min(n, BATCH_ELEMENTS // mapping_width(cfg)))
    if step == n:
        return model.mapping.w(torch.randn(n, cfg.z_dim, generator=gen)).mean(0)
    total = torch.zeros(cfg.w_dim, dtype=torch.float64)
    for start in range(0, n, step):
        z = torch.randn(min(step, n - start), cfg.z_dim, generator=gen)
        total += model.mapping.w(z).sum(0, dtype=torch.float64)
    return (total / n).to(torch.float32)


def mapping_width(cfg: MappingConfig) -> int:
    """The widest activation of the mapping network, per sample."""
    embed = (cfg.embed_features or cfg.w_dim) if cfg.c_dim else 0
    return max(cfg.z_dim + embed, cfg.mapping_features or cfg.w_dim, cfg.w_dim, cfg.c_dim)


def _torch_load(raw: bytes, source: str) -> Any:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()
        hint = next((ln for ln in first if "GLOBAL" in ln), first[0] if first else "")
        raise CheckpointError(f"{source} holds objects that are not weights ({hint.strip()[:160]}); refusing to load it") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, KeyError, MemoryError, OverflowError) as e:
        raise CheckpointError(f"{source} is damaged or truncated ({type(e).__name__}); download it again") from None
