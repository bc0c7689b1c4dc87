"""Checkpoint files in the official formats, with random weights, for tests without downloads.

* :func:`write_nvidia_pickle` writes what stylegan2-ada-pytorch's and
  stylegan3's training loops write (``pickle.dump`` of ``{"G", "D", "G_ema",
  "augment_pipe", "training_set_kwargs"}``, every network a
  ``torch_utils.persistence`` object: class name, placeholder module source,
  and the module's ``__dict__``), opcode for opcode the same globals:
  :data:`NVIDIA_PICKLE_GLOBALS`, which is what pickles written by NVIDIA's own
  code contain (checked with ``scripts/check_against_official.py``). Given a
  :class:`~.stylegan3.StyleGAN3` (:func:`random_stylegan3`), it writes what
  NVlabs/stylegan3 writes for configs T and R: every object's attributes under
  NVIDIA's names and types (layer sizes as numpy arrays, cutoffs as numpy
  floats, the constructor arguments each persistent object keeps), globals
  :data:`STYLEGAN3_PICKLE_GLOBALS`; ``scripts/check_stylegan3.py`` checks that
  NVIDIA's own code loads such a file and makes the same images, and that its
  objects have the attributes of the ones NVIDIA's code pickles.
* :func:`write_rosinality_checkpoint` writes what rosinality's ``train.py``
  (``g``, ``d``, ``g_ema``, ``args``...) or ``convert_weight.py`` (``g_ema``,
  ``latent_avg``) writes with ``torch.save``, under rosinality's names.
"""

from __future__ import annotations

import argparse
import contextlib
import io
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
from promptgen_plugin_stylegan2.stored import ALLOWED_GLOBALS
from promptgen_plugin_stylegan2.stylegan3 import (
    AliasFreeLayer,
    AliasFreeSynthesis,
    FourierInput,
    Kind,
    StyleGAN3,
    StyleGAN3Config,
    synthesis_plan,
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

#: A StyleGAN3 pickle needs numpy arrays besides (its layers' sizes).
STYLEGAN3_PICKLE_GLOBALS = NVIDIA_PICKLE_GLOBALS | frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy._core.multiarray", "_reconstruct")
        if np.__version__ >= "2"
        else ("numpy.core.multiarray", "_reconstruct"),
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
    StyleGAN3: "Generator",
    AliasFreeSynthesis: "SynthesisNetwork",
    FourierInput: "SynthesisInput",
    AliasFreeLayer: "SynthesisLayer",
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
    if isinstance(module, StyleGAN3):
        return _stylegan3_state(module, source, extra, init_kwargs)
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


#: NVlabs/stylegan3's constructor defaults (``SynthesisNetwork``, ``SynthesisLayer``): a pickle stores only the
#: arguments that were given, and train.py gives these (``magnitude_ema_beta`` from its batch of 32).
_SG3_DEFAULTS = StyleGAN3Config()
MAGNITUDE_EMA_BETA = 0.5 ** (32 / 20_000)
_SG3_ARGUMENTS = (
    "num_layers",
    "num_critical",
    "first_cutoff",
    "first_stopband",
    "last_stopband_rel",
    "margin_size",
    "output_scale",
    "num_fp16_res",
    "conv_kernel",
    "filter_size",
    "lrelu_upsampling",
    "use_radial_filters",
    "conv_clamp",
)


def random_stylegan3(seed: int = 0, kind: Kind = "T", **config: Any) -> StyleGAN3:
    """A small StyleGAN3 of config ``kind`` whose parameters, mean latent and magnitudes are random.

    Its filters, frequencies and phases are designed and drawn as NVIDIA's constructor does. Defaults: 16 pixels,
    4 layers, z and w of 16; the published models have 14 layers (``num_layers``).
    """
    defaults: dict[str, Any] = {
        "z_dim": 16,
        "w_dim": 16,
        "resolution": 16,
        "channel_base": 128,
        "channel_max": 16,
        "num_layers": 4,
    }
    torch.manual_seed(seed)
    g = StyleGAN3(StyleGAN3Config.preset(kind, **{**defaults, **config})).eval().requires_grad_(False)
    randomize_stylegan3(g)
    return g


@torch.no_grad()
def randomize_stylegan3(g: nn.Module) -> None:
    """Random parameters, mean latent (``mapping.w_avg``) and input magnitudes (``magnitude_ema``, from 0.5 to 1.5)
    for a StyleGAN3 generator: promptgen's or NVIDIA's, whose names are the same."""
    for p in g.parameters():
        p.copy_(torch.randn_like(p) * (0.3 if p.ndim <= 1 else 1.0))
    for name, b in g.named_buffers():
        if name == "mapping.w_avg":
            b.copy_(torch.randn_like(b) * 0.3)
        elif name.endswith("magnitude_ema"):
            b.copy_(torch.rand(()) + 0.5)


def pickle_globals(data: bytes) -> set[tuple[str, str]]:
    """The globals (module, name) a pickle asks for; one outside promptgen's allow-list raises ``KeyError``."""
    seen: set[tuple[str, str]] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            seen.add((module, name))
            return ALLOWED_GLOBALS[(module, name)]

    Recorder(io.BytesIO(data)).load()
    return seen


def _clamp(c: float | None) -> Any:
    return int(c) if c is not None and float(c).is_integer() else c  # NVIDIA's default is the int 256


def _stylegan3_arguments(cfg: StyleGAN3Config) -> dict[str, Any]:
    """The synthesis arguments train.py passes (channel_base, channel_max, magnitude_ema_beta; R's three), and
    every other one that differs from NVIDIA's default."""
    args: dict[str, Any] = {
        "channel_base": cfg.channel_base,
        "channel_max": cfg.channel_max,
        "magnitude_ema_beta": MAGNITUDE_EMA_BETA,
    }
    if cfg.kind == "R":
        args.update(conv_kernel=1, use_radial_filters=True)
    for name in _SG3_ARGUMENTS:
        value = getattr(cfg, name)
        if name not in args and value != getattr(_SG3_DEFAULTS, name):
            args[name] = _clamp(value) if name == "conv_clamp" else value
    return args


def _torch_internals(module: nn.Module) -> dict[str, Any]:
    return {k: v for k, v in module.__dict__.items() if k == "training" or k.startswith("_")}


def _official(
    module: nn.Module,
    attrs: dict[str, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    source: str,
    extra: dict[str, dict[str, Any]],
    prefix: str,
    children: dict[str, Any],
) -> _Persistent:
    state = _torch_internals(module)
    state["_modules"] = OrderedDict((n, children[n]) for n in module._modules)
    state.update(attrs)
    state["_init_args"] = args
    state["_init_kwargs"] = kwargs
    state.update(extra.get(prefix.rstrip("."), {}))
    return _Persistent(OFFICIAL_CLASS[type(module)], state, source)


def _dense(
    d: Dense, args: tuple[Any, ...], kwargs: dict[str, Any], source: str, extra: dict[str, dict[str, Any]], prefix: str
) -> _Persistent:
    n_out, n_in = d.weight.shape
    lr = kwargs.get("lr_multiplier", 1)
    attrs = {
        "in_features": int(n_in),
        "out_features": int(n_out),
        "activation": d.activation,
        "weight_gain": lr / np.sqrt(int(n_in)),
        "bias_gain": lr,
    }
    return _official(d, attrs, args, kwargs, source, extra, prefix, {})


def _stylegan3_state(
    g: StyleGAN3, source: str, extra: dict[str, dict[str, Any]], init_kwargs: dict[str, Any] | None
) -> _Persistent:
    """``g`` as NVlabs/stylegan3 pickles its Generator: each object's attributes and constructor arguments."""
    cfg = g.cfg
    EasyDict = sys.modules["dnnlib.util"].EasyDict
    args = _stylegan3_arguments(cfg)
    inp, plans = synthesis_plan(cfg)
    syn, mapping = g.synthesis, g.mapping

    def size(n: int) -> np.ndarray:
        return np.broadcast_to(np.asarray(n), [2])  # as NVIDIA stores sizes: a read-only view, pickled as an array

    layers: dict[str, Any] = {}
    for p in plans:
        layer = getattr(syn, p.name)
        given = {
            "w_dim": cfg.w_dim,
            "is_torgb": p.is_torgb,
            "is_critically_sampled": p.is_critically_sampled,
            "use_fp16": np.bool_(p.use_fp16),
            "in_channels": p.in_channels,
            "out_channels": p.out_channels,
            "in_size": p.in_size,
            "out_size": p.out_size,
            "in_sampling_rate": p.in_sampling_rate,
            "out_sampling_rate": p.out_sampling_rate,
            "in_cutoff": np.float64(p.in_cutoff),
            "out_cutoff": np.float64(p.out_cutoff),
            "in_half_width": np.float64(p.in_half_width),
            "out_half_width": np.float64(p.out_half_width),
        }
        layer_kwargs = {
            k: v
            for k, v in args.items()
            if k
            in (
                "conv_kernel",
                "filter_size",
                "lrelu_upsampling",
                "use_radial_filters",
                "conv_clamp",
                "magnitude_ema_beta",
            )
        }
        attrs = {
            **{
                k: given[k]
                for k in ("w_dim", "is_torgb", "is_critically_sampled", "use_fp16", "in_channels", "out_channels")
            },
            "in_size": size(p.in_size),
            "out_size": size(p.out_size),
            "in_sampling_rate": p.in_sampling_rate,
            "out_sampling_rate": p.out_sampling_rate,
            "tmp_sampling_rate": p.tmp_sampling_rate,
            **{k: given[k] for k in ("in_cutoff", "out_cutoff", "in_half_width", "out_half_width")},
            "conv_kernel": p.conv_kernel,
            "conv_clamp": _clamp(cfg.conv_clamp),
            "magnitude_ema_beta": layer_kwargs["magnitude_ema_beta"],
            "up_factor": p.up_factor,
            "up_taps": p.up_taps,
            "down_factor": p.down_factor,
            "down_taps": p.down_taps,
            "down_radial": p.down_radial,
            "padding": list(p.padding),
        }
        pre = f"synthesis.{p.name}."
        affine = _dense(layer.affine, (cfg.w_dim, p.in_channels), {"bias_init": 1}, source, extra, pre + "affine.")
        layers[p.name] = _official(layer, attrs, (), {**given, **layer_kwargs}, source, extra, pre, {"affine": affine})

    given_input = {
        "w_dim": cfg.w_dim,
        "channels": inp.channels,
        "size": inp.size,
        "sampling_rate": np.float64(inp.sampling_rate),
        "bandwidth": np.float64(inp.bandwidth),
    }
    input_affine = _dense(
        syn.input.affine,
        (cfg.w_dim, 4),
        {"weight_init": 0, "bias_init": [1, 0, 0, 0]},
        source,
        extra,
        "synthesis.input.affine.",
    )
    input_attrs = {**given_input, "size": size(inp.size)}
    layers["input"] = _official(
        syn.input, input_attrs, (), given_input, source, extra, "synthesis.input.", {"affine": input_affine}
    )
    syn_kwargs = {"w_dim": cfg.w_dim, "img_resolution": cfg.resolution, "img_channels": cfg.img_channels, **args}
    syn_attrs = {
        "w_dim": cfg.w_dim,
        "num_ws": cfg.num_ws,
        "img_resolution": cfg.resolution,
        "img_channels": cfg.img_channels,
        "num_layers": cfg.num_layers,
        "num_critical": cfg.num_critical,
        "margin_size": cfg.margin_size,
        "output_scale": cfg.output_scale,
        "num_fp16_res": cfg.num_fp16_res,
        "layer_names": [p.name for p in plans],
    }
    synthesis = _official(syn, syn_attrs, (), syn_kwargs, source, extra, "synthesis.", layers)

    fcs: dict[str, Any] = {}
    if cfg.c_dim:
        fcs["embed"] = _dense(mapping.embed, (cfg.c_dim, cfg.w_dim), {}, source, extra, "mapping.embed.")
    for i in range(cfg.mapping_layers):
        fc = getattr(mapping, f"fc{i}")
        n_out, n_in = fc.weight.shape
        fcs[f"fc{i}"] = _dense(
            fc,
            (int(n_in), int(n_out)),
            {"activation": "lrelu", "lr_multiplier": cfg.mapping_lr},
            source,
            extra,
            f"mapping.fc{i}.",
        )
    map_attrs = {
        "z_dim": cfg.z_dim,
        "c_dim": cfg.c_dim,
        "w_dim": cfg.w_dim,
        "num_ws": cfg.num_ws,
        "num_layers": cfg.mapping_layers,
        "w_avg_beta": 0.998,
    }
    if not cfg.c_dim:
        map_attrs["embed"] = None
    map_kwargs = {
        "z_dim": cfg.z_dim,
        "c_dim": cfg.c_dim,
        "w_dim": cfg.w_dim,
        "num_ws": cfg.num_ws,
        "num_layers": cfg.mapping_layers,
    }
    mapping_state = _official(mapping, map_attrs, (), map_kwargs, source, extra, "mapping.", fcs)

    g_kwargs = {
        "z_dim": cfg.z_dim,
        "w_dim": cfg.w_dim,
        "mapping_kwargs": EasyDict(num_layers=cfg.mapping_layers),
        **args,
        "c_dim": cfg.c_dim,
        "img_resolution": cfg.resolution,
        "img_channels": cfg.img_channels,
    }
    for k, v in (init_kwargs or {}).items():
        g_kwargs[k] = v
    g_attrs = {
        "z_dim": cfg.z_dim,
        "c_dim": cfg.c_dim,
        "w_dim": cfg.w_dim,
        "img_resolution": cfg.resolution,
        "img_channels": cfg.img_channels,
        "num_ws": cfg.num_ws,
    }
    return _official(g, g_attrs, (), g_kwargs, source, extra, "", {"synthesis": synthesis, "mapping": mapping_state})


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
    g: StyleGAN2 | StyleGAN3,
    path: str | Path,
    *,
    source: str = PLACEHOLDER_SOURCE,
    extra: dict[str, dict[str, Any]] | None = None,
    g_ema: Any = None,
    init_kwargs: dict[str, Any] | None = None,
    protocol: int = 4,
) -> Path:
    """Write ``g`` as an NVIDIA training snapshot (``G`` and ``G_ema`` both ``g``; a small stand-in ``D``).

    Args:
        source: the module source stored with every object (never executed by promptgen).
        extra: dotted module path -> attributes to add or override in its stored state ("" is the Generator).
        g_ema: store this object as ``G_ema`` instead (for hostile-file tests).
        init_kwargs: overrides of the Generator's stored constructor arguments (see :func:`persistent_state`).
        protocol: the pickle protocol (NVIDIA's files: 4, Python 3.8's default; 3 under Python 3.7).
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
        path.write_bytes(pickle.dumps(snapshot, protocol=protocol))
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
