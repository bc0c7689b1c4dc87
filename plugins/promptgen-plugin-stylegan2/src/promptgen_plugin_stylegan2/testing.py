"""Checkpoint files in the official formats, with random weights, for tests without downloads.

* :func:`write_nvidia_pickle` writes what stylegan2-ada-pytorch's and
  stylegan3's training loops write (``pickle.dump`` of ``{"G", "D", "G_ema",
  "augment_pipe", "training_set_kwargs"}``, every network a
  ``torch_utils.persistence`` object: class name, placeholder module source,
  and the module's ``__dict__``), opcode for opcode the same globals:
  :data:`NVIDIA_PICKLE_GLOBALS`, which is what pickles written by NVIDIA's own
  code contain (checked with ``scripts/check_against_official.py``).
* :func:`write_rosinality_checkpoint` writes what rosinality's ``train.py``
  (``g``, ``d``, ``g_ema``, ``args``...) or ``convert_weight.py`` (``g_ema``,
  ``latent_avg``) writes with ``torch.save``, under rosinality's names.
"""

from __future__ import annotations

import argparse
import contextlib
import pickle
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from promptgen_plugin_stylegan2.network import (
    Block,
    Dense,
    Mapping,
    SkipConv,
    StyleGAN2,
    StyleGAN2Config,
    Synthesis,
    SynthesisLayer,
    ToRGB,
)

#: The globals in a network pickle written by NVIDIA's code (stylegan2-ada-pytorch and stylegan3, torch 2.x, numpy 2.x).
NVIDIA_PICKLE_GLOBALS = frozenset(
    {
        ("collections", "OrderedDict"),
        ("dnnlib.util", "EasyDict"),
        ("numpy", "dtype"),
        ("numpy._core.multiarray", "scalar") if np.__version__ >= "2" else ("numpy.core.multiarray", "scalar"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch.storage", "_load_from_bytes"),
        ("torch_utils.persistence", "_reconstruct_persistent_obj"),
    }
)

OFFICIAL_CLASS = {
    StyleGAN2: "Generator",
    Mapping: "MappingNetwork",
    Dense: "FullyConnectedLayer",
    Synthesis: "SynthesisNetwork",
    Block: "SynthesisBlock",
    SynthesisLayer: "SynthesisLayer",
    ToRGB: "ToRGBLayer",
    SkipConv: "Conv2dLayer",
}
PLACEHOLDER_SOURCE = "# the module's source code is stored here by torch_utils.persistence; promptgen never runs it\n"


def random_generator(seed: int = 0, **config: Any) -> StyleGAN2:
    """A small StyleGAN2 whose every parameter and buffer is random (not the zero initial noise strengths)."""
    defaults: dict[str, Any] = {"z_dim": 16, "w_dim": 16, "resolution": 32, "channel_base": 256, "channel_max": 32, "mapping_layers": 2}
    cfg = StyleGAN2Config(**{**defaults, **config})
    torch.manual_seed(seed)
    g = StyleGAN2(cfg).eval().requires_grad_(False)
    for name, p in list(g.named_parameters()) + [(n, b) for n, b in g.named_buffers() if "noise_const" in n or n.endswith("w_avg")]:
        p.copy_(torch.randn_like(p) * (0.3 if p.ndim <= 1 else 1.0))
    return g


class _Persistent:
    """Pickles like a ``torch_utils.persistence`` object."""

    def __init__(self, class_name: str, state: dict[str, Any], source: str) -> None:
        self.class_name, self.state, self.source = class_name, state, source

    def __reduce__(self) -> tuple[Any, ...]:
        meta = {"type": "class", "version": 6, "module_src": self.source, "class_name": self.class_name, "state": self.state}
        return (sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (meta,))


def _plain(v: Any) -> Any:
    if isinstance(v, float):
        return np.float64(v)  # the official code computes its gains with numpy
    return v


def persistent_state(
    module: nn.Module,
    source: str = PLACEHOLDER_SOURCE,
    extra: dict[str, dict[str, Any]] | None = None,
    prefix: str = "",
    init_kwargs: dict[str, Any] | None = None,
) -> _Persistent:
    """``module`` as the persistence decorator stores it: its ``__dict__`` with sub-modules nested the same way.

    ``init_kwargs``: overrides of the Generator's stored constructor arguments (``_init_kwargs``); a dict value
    for ``mapping_kwargs`` or ``synthesis_kwargs`` is merged into that one (for hostile-file tests).
    """
    extra = extra or {}
    state: dict[str, Any] = {}
    for k, v in module.__dict__.items():
        if k == "_modules":
            state[k] = OrderedDict(
                (n, persistent_state(m, source, extra, f"{prefix}{n}.") if m is not None else None) for n, m in v.items()
            )
        elif k.startswith("_") or isinstance(v, (int, float, str, bool, type(None))) or (isinstance(v, (list, tuple)) and all(isinstance(x, int) for x in v)):
            state[k] = _plain(v)
    if isinstance(module, SynthesisLayer):
        state.update(activation="lrelu", act_gain=np.float64(np.sqrt(2)))
    if isinstance(module, StyleGAN2):
        c = module.cfg
        state.update(z_dim=c.z_dim, c_dim=c.c_dim, w_dim=c.w_dim, img_resolution=c.resolution, img_channels=c.img_channels)
        state["_init_args"] = ()
        state["_init_kwargs"] = {
            "z_dim": c.z_dim, "c_dim": c.c_dim, "w_dim": c.w_dim, "img_resolution": c.resolution, "img_channels": c.img_channels,
            "mapping_kwargs": sys.modules["dnnlib.util"].EasyDict(num_layers=c.mapping_layers),
            "synthesis_kwargs": sys.modules["dnnlib.util"].EasyDict(channel_base=c.channel_base, channel_max=c.channel_max, architecture=c.architecture, conv_clamp=c.conv_clamp),
        }
        for k, v in (init_kwargs or {}).items():
            if k in ("mapping_kwargs", "synthesis_kwargs") and isinstance(v, dict):
                state["_init_kwargs"][k].update(v)
            else:
                state["_init_kwargs"][k] = v
    state.update(extra.get(prefix.rstrip("."), {}))
    return _Persistent(OFFICIAL_CLASS.get(type(module), type(module).__name__), state, source)


def _reconstruct_persistent_obj(meta: Any) -> Any:  # never called: files are read with promptgen's unpickler
    raise RuntimeError("stand-in for torch_utils.persistence._reconstruct_persistent_obj")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
_PERSISTENCE = types.ModuleType("torch_utils.persistence")
_PERSISTENCE._reconstruct_persistent_obj = _reconstruct_persistent_obj
_UTIL = types.ModuleType("dnnlib.util")
_UTIL.EasyDict = type("EasyDict", (dict,), {"__module__": "dnnlib.util", "__qualname__": "EasyDict"})
_STAND_INS = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": _PERSISTENCE, "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": _UTIL}


@contextlib.contextmanager
def official_modules() -> Iterator[None]:
    """Stand-ins for ``torch_utils.persistence`` and ``dnnlib.util`` while pickling, so globals are named as in official files."""
    names = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")
    saved = {n: sys.modules.get(n) for n in names}
    sys.modules.update(_STAND_INS)
    try:
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def write_nvidia_pickle(
    g: StyleGAN2,
    path: str | Path,
    *,
    source: str = PLACEHOLDER_SOURCE,
    extra: dict[str, dict[str, Any]] | None = None,
    g_ema: Any = None,
    init_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Write ``g`` as an NVIDIA training snapshot (``G`` and ``G_ema`` both ``g``; a small stand-in ``D``).

    Args:
        source: the module source stored with every object (never executed by promptgen).
        extra: dotted module path -> attributes to add or override in its stored state ("" is the Generator).
        g_ema: store this object as ``G_ema`` instead (for hostile-file tests).
        init_kwargs: overrides of the Generator's stored constructor arguments (see :func:`persistent_state`).
    """
    path = Path(path)
    with official_modules():
        EasyDict = sys.modules["dnnlib.util"].EasyDict
        d = nn.Module()
        d.b4 = nn.Module()
        d.b4.register_parameter("weight", nn.Parameter(torch.randn(8, 3, 3, 3), requires_grad=False))
        snapshot = {
            "G": persistent_state(g, source, extra, init_kwargs=init_kwargs),
            "D": persistent_state(d, source),
            "G_ema": g_ema if g_ema is not None else persistent_state(g, source, extra, init_kwargs=init_kwargs),
            "augment_pipe": None,
            "training_set_kwargs": EasyDict(class_name="training.dataset.ImageFolderDataset", path="data.zip", resolution=g.cfg.resolution),
        }
        path.write_bytes(pickle.dumps(snapshot, protocol=4))
    return path


def rosinality_state(g: StyleGAN2) -> dict[str, torch.Tensor]:
    """``g``'s weights under rosinality's ``Generator.state_dict()`` names and shapes."""
    cfg, s = g.cfg, g.state_dict()
    if cfg.architecture != "skip" or cfg.c_dim or cfg.img_channels != 3 or cfg.conv_clamp is not None:
        raise ValueError("rosinality's Generator has skip outputs, RGB, no labels and no clamping only")
    out: dict[str, torch.Tensor] = {}
    for i in range(cfg.mapping_layers):
        out[f"style.{i + 1}.weight"] = s[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = s[f"mapping.fc{i}.bias"]
    out["input.input"] = s["synthesis.b4.const"][None]
    kernel = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = torch.outer(kernel, kernel) / 64 * 4

    def styled(dst: str, src: str, upsample: bool) -> None:
        out[f"{dst}.conv.weight"] = s[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = s[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = s[f"{src}.affine.bias"]
        if upsample:
            out[f"{dst}.conv.blur.kernel"] = kernel.clone()
        out[f"{dst}.noise.weight"] = s[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = s[f"{src}.bias"]

    def to_rgb(dst: str, src: str, upsample: bool) -> None:
        if upsample:
            out[f"{dst}.upsample.kernel"] = kernel.clone()
        out[f"{dst}.conv.weight"] = s[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = s[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = s[f"{src}.affine.bias"]
        out[f"{dst}.bias"] = s[f"{src}.bias"].reshape(1, -1, 1, 1)

    styled("conv1", "synthesis.b4.conv1", False)
    to_rgb("to_rgb1", "synthesis.b4.torgb", False)
    noises = [s["synthesis.b4.conv1.noise_const"]]
    for i, r in enumerate(cfg.block_resolutions[1:]):
        styled(f"convs.{2 * i}", f"synthesis.b{r}.conv0", True)
        styled(f"convs.{2 * i + 1}", f"synthesis.b{r}.conv1", False)
        to_rgb(f"to_rgbs.{i}", f"synthesis.b{r}.torgb", True)
        noises += [s[f"synthesis.b{r}.conv0.noise_const"], s[f"synthesis.b{r}.conv1.noise_const"]]
    for i, n in enumerate(noises):
        out[f"noises.noise_{i}"] = n[None, None]
    return out


def write_rosinality_checkpoint(g: StyleGAN2, path: str | Path, *, latent_avg: bool = True, training: bool = False) -> Path:
    """Write ``g`` as rosinality's ``convert_weight.py`` does (``g_ema``, ``latent_avg``), or, with
    ``training=True``, as its ``train.py`` does (``g``, ``d``, ``g_ema``, optimiser states, ``args``)."""
    state = rosinality_state(g)
    ckpt: dict[str, Any] = {"g_ema": state}
    if latent_avg:
        ckpt["latent_avg"] = g.mapping.w_avg.clone()
    if training:
        ckpt.update(
            g=state,
            d={"convs.0.0.weight": torch.randn(8, 3, 1, 1)},
            g_optim={"state": {}, "param_groups": [{"lr": 0.002, "params": [0]}]},
            d_optim={"state": {}, "param_groups": [{"lr": 0.002, "params": [0]}]},
            args=argparse.Namespace(size=g.cfg.resolution, n_mlp=g.cfg.mapping_layers, latent=g.cfg.w_dim, channel_multiplier=2),
            ada_aug_p=0.0,
        )
    torch.save(ckpt, path)
    return Path(path)
