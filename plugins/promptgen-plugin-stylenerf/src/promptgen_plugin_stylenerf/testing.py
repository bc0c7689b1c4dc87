"""StyleNeRF checkpoints in the official format, with random weights, for tests without downloads.

:func:`write_stylenerf_pickle` writes what facebookresearch/StyleNeRF's
training loop writes: ``pickle.dump`` of ``{"G", "D", "G_ema",
"augment_pipe", "training_set_kwargs"}``, every network a
``torch_utils.persistence`` object (class name, module source, the object's
``__dict__`` with the official attribute names and types), the fields'
``nn.ModuleList`` and the upsampler's ``nn.Sequential`` pickled by class, and
the plain persistent objects ``C`` (CameraRay), ``V`` (VolumeRenderer) and
``U`` (Upsampler). ``scripts/conformance.py`` checks that the official code
loads such a file (given its module source) and makes the same images.
:func:`random_stylenerf` is a small random model (volume 4², image 16²).
"""

from __future__ import annotations

import pickle
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from promptgen_plugin_stylegan2.network import Dense, Mapping
from promptgen_plugin_stylegan2.testing import official_modules
from torch import nn

from .network import (
    Conv2dLayer,
    NeRFBlock,
    NeRFSynthesisNetwork,
    Style2Layer,
    StyleNeRF,
    StyleNeRFConfig,
    SynthesisBlock,
    SynthesisLayer,
    ToRGBLayer,
)

#: The module source stored with every object when none is given (never executed by promptgen).
PLACEHOLDER_SOURCE = "# facebookresearch/StyleNeRF module source (placeholder in promptgen's test fixtures)\n"

TINY: dict[str, Any] = {
    "z_dim": 16,
    "w_dim": 16,
    "mapping_layers": 2,
    "resolution": 16,
    "resolution_vol": 4,
    "z_dim_bg": 8,
    "rgb_out_dim": 16,
    "rgb_out_dim_bg": 16,
    "fg_hidden": 16,
    "fg_blocks": 3,
    "bg_hidden": 8,
    "bg_blocks": 2,
    "n_freq": 4,
    "n_ray_samples": 6,
    "n_bg_samples": 3,
    "channel_base": 256,
    "channel_max": 32,
}


def random_stylenerf(seed: int = 0, **config: Any) -> StyleNeRF:
    """A small StyleNeRF (the FFHQ architecture at volume 4², image 16²) whose parameters and buffers are random."""
    cfg = StyleNeRFConfig(**{**TINY, **config})
    torch.manual_seed(seed)
    g = StyleNeRF(cfg).eval().requires_grad_(False)
    for name, p in list(g.named_parameters()) + list(g.named_buffers()):
        if name.endswith(("resample_filter", "alpha", "camera_matrix")):
            continue
        if name.endswith("w_avg") and p.ndim == 0:  # a magnitude EMA: a positive mean square
            p.copy_(torch.rand(()) + 0.5)
        else:
            p.copy_(torch.randn_like(p) * (0.3 if p.ndim <= 1 else 1.0))
    return g


class _Persistent:
    """Pickles like a ``torch_utils.persistence`` object."""

    def __init__(self, class_name: str, state: dict[str, Any], source: str) -> None:
        self.class_name, self.state, self.source = class_name, state, source

    def __reduce__(self) -> tuple[Any, ...]:
        meta = {
            "type": "class",
            "version": 6,
            "module_src": self.source,
            "class_name": self.class_name,
            "state": self.state,
        }
        return (sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (meta,))


def _by_class(cls: type[nn.Module], state: dict[str, Any]) -> nn.Module:
    """A plain ``torch.nn`` container that pickles as the official one does (its class, then its ``__dict__``), whose
    children are persistent objects."""
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


def _internals(m: nn.Module) -> dict[str, Any]:
    """The torch bookkeeping of a module's ``__dict__`` (hooks, parameters, buffers), its sub-modules left for later."""
    return {k: v for k, v in m.__dict__.items() if (k.startswith("_") and k != "_modules") or k == "training"}


class _Writer:
    def __init__(self, cfg: StyleNeRFConfig, sources: dict[str, str]) -> None:
        self.cfg, self.sources = cfg, sources

    def obj(
        self, cls: str, m: nn.Module, attrs: dict[str, Any], children: dict[str, Any], kwargs: dict[str, Any]
    ) -> _Persistent:
        state = _internals(m)
        state["_buffers"] = OrderedDict((k, v) for k, v in m._buffers.items() if k not in m._non_persistent_buffers_set)
        state["_non_persistent_buffers_set"] = set()
        state["_modules"] = OrderedDict((n, children[n]) for n in m._modules if n in children)
        state.update(attrs)
        state["_init_args"], state["_init_kwargs"] = (), kwargs
        return _Persistent(cls, state, self.sources.get(cls, PLACEHOLDER_SOURCE))

    def plain(self, cls: str, attrs: dict[str, Any]) -> _Persistent:
        return _Persistent(
            cls, {**attrs, "_init_args": (), "_init_kwargs": {}}, self.sources.get(cls, PLACEHOLDER_SOURCE)
        )

    def dense(self, d: Dense) -> _Persistent:
        n_out, n_in = d.weight.shape
        attrs = {"activation": d.activation, "weight_gain": np.float64(d.weight_gain), "bias_gain": d.bias_gain}
        return self.obj("FullyConnectedLayer", d, attrs, {}, {"in_features": int(n_in), "out_features": int(n_out)})

    def conv(self, c: Conv2dLayer) -> _Persistent:
        gain = np.float64(np.sqrt(2)) if c.activation == "lrelu" else 1
        attrs = {
            "activation": c.activation,
            "up": 1,
            "down": 1,
            "conv_clamp": None,
            "padding": 0,
            "weight_gain": np.float64(c.weight_gain),
            "act_gain": gain,
            "mode": "2d",
        }
        n_out, n_in = c.weight.shape[:2]
        return self.obj(
            "Conv2dLayer",
            c,
            attrs,
            {},
            {"in_channels": int(n_in), "out_channels": int(n_out), "kernel_size": 1, "activation": c.activation},
        )

    def style2(self, s: Style2Layer) -> _Persistent:
        n_out, n_in = s.weight.shape[:2]
        attrs = {
            "activation": "lrelu",
            "conv_clamp": None,
            "padding": 0,
            "act_gain": np.float64(np.sqrt(2)),
            "w_dim": s.w_dim,
            "in_features": int(n_in),
            "out_features": int(n_out),
            "magnitude_ema_beta": -1,
        }
        if s.w_dim == 0:
            attrs["weight_gain"] = 1.0
        children = {"affine": self.dense(s.affine)} if s.w_dim > 0 else {}
        return self.obj("Style2Layer", s, attrs, children, {"activation": "lrelu", "magnitude_ema_beta": -1})

    def torgb(self, t: ToRGBLayer) -> _Persistent:
        attrs: dict[str, Any] = {
            "conv_clamp": t.conv_clamp if t.conv_clamp is None else int(t.conv_clamp),
            "mode": "2d",
        }
        attrs["weight_gain"] = np.float64(t.weight_gain) if t.w_dim > 0 else 1.0
        children = {"affine": self.dense(t.affine)} if t.w_dim > 0 else {}
        return self.obj("ToRGBLayer", t, attrs, children, {"w_dim": t.w_dim, "kernel_size": 1})

    def nerf(self, n: NeRFBlock, background: bool) -> _Persistent:
        c = self.cfg
        kwargs = {
            "positional_encoding": "normal",
            "downscale_p_by": 1,
            "use_style": "StyleGAN2",
            "predict_rgb": True,
            "use_viewdirs": False,
            "hidden_size": c.bg_hidden if background else c.fg_hidden,
            "n_blocks": c.bg_blocks if background else c.fg_blocks,
            "n_freq_posenc": c.n_freq,
        }
        if background:
            kwargs.update(hidden_size=c.bg_hidden, skips=[], inverse_sphere=True)
        kwargs.update(
            z_dim=c.z_dim_bg if background else 0,
            w_dim=c.w_dim,
            rgb_out_dim=c.rgb_out_dim_bg if background else c.rgb_out_dim,
            activation="lrelu",
        )
        d = 4 if background else 3
        attrs = {
            **{k: v for k, v in kwargs.items() if k != "skips"},
            "sdf_mode": None,
            "use_sdf": False,
            "dim_embed": d * c.n_freq * 2 + kwargs["z_dim"],
            "dim_embed_view": 3 * 4 * 2 + kwargs["z_dim"],
            "num_ws": n.num_ws,
            "skip_layer": None,
        }
        if background:
            attrs["skips"] = []
        blocks = _by_class(
            nn.ModuleList,
            {**_internals(n.blocks), "_modules": OrderedDict((str(i), self.style2(b)) for i, b in enumerate(n.blocks))},
        )  # type: ignore[arg-type]
        children = {
            "fc_in": self.style2(n.fc_in),
            "blocks": blocks,
            "sigma_out": self.torgb(n.sigma_out),
            "feat_out": self.torgb(n.feat_out),
            "to_rgb": self.conv(n.to_rgb),
        }
        return self.obj("NeRFBlock", n, attrs, children, {"nerf_kwargs": kwargs})

    def layer(self, s: SynthesisLayer, use_fp16: bool) -> _Persistent:
        c = self.cfg
        children: dict[str, Any] = {"affine": self.dense(s.affine)}
        if s.up == 2:
            children["adapter"] = _by_class(
                nn.Sequential,
                {
                    **_internals(s.adapter),
                    "_modules": OrderedDict((str(i), self.conv(a)) for i, a in enumerate(s.adapter)),
                },
            )  # type: ignore[arg-type]
        attrs = {
            "resolution": s.resolution,
            "up": s.up,
            "use_noise": False,
            "activation": "lrelu",
            "conv_clamp": None if c.conv_clamp is None else int(c.conv_clamp),
            "upsample_mode": "nn_cat",
            "mode": "2d",
            "padding": 0,
            "groups": 1,
            "act_gain": np.float64(np.sqrt(2)),
            "magnitude_ema_beta": 0.999 if c.magnitude_ema else -1,
        }
        n_out, n_in = s.weight.shape[:2]
        return self.obj(
            "SynthesisLayer",
            s,
            attrs,
            children,
            {
                "in_channels": int(n_in),
                "out_channels": int(n_out),
                "kernel_size": 1,
                "upsample_mode": "nn_cat",
                "use_noise": False,
            },
        )

    def block(self, b: SynthesisBlock, index: int, is_last: bool) -> _Persistent:
        c = self.cfg
        use_fp16 = b.resolution >= 2 * c.block_resolutions[0]
        n_out, n_in = b.conv0.weight.shape[:2]
        attrs = {
            "in_channels": int(n_in),
            "out_channels": int(n_out),
            "w_dim": c.w_dim,
            "resolution": b.resolution,
            "img_channels": c.img_channels,
            "is_last": is_last,
            "architecture": "skip",
            "use_fp16": use_fp16,
            "channels_last": False,
            "num_conv": 2,
            "num_torgb": 1,
            "groups": 1,
            "use_single_layer": False,
            "margin": 0,
            "upsample_mode": "nn_cat",
            "disable_upsample": False,
            "mode": "2d",
        }
        children = {
            "conv0": self.layer(b.conv0, use_fp16),
            "conv1": self.layer(b.conv1, use_fp16),
            "torgb": self.torgb(b.torgb),
        }
        return self.obj(
            "SynthesisBlock", b, attrs, children, {"block_id": index, "is_last": is_last, "use_fp16": use_fp16}
        )

    def synthesis(self, s: NeRFSynthesisNetwork) -> _Persistent:
        c = self.cfg
        p = c.camera
        camera = self.plain(
            "CameraRay",
            {
                "range_v": list(p.range_v),
                "range_u": list(p.range_u),
                "range_radius": [p.radius, p.radius],
                "depth_range": list(c.depth_range),
                "fov": int(p.fov) if float(p.fov).is_integer() else p.fov,
                "gaussian_camera": p.gaussian,
                "angular_camera": True,
                "depth_transform": None,
                "dists_normalized": False,
                "ray_align_corner": False,
                "bg_start": c.bg_start,
                "camera_matrix": p.intrinsics_inverse().reshape(1, 4, 4),
            },
        )
        renderer = self.plain(
            "VolumeRenderer",
            {
                "n_bg_samples": c.n_bg_samples,
                "n_ray_samples": c.n_ray_samples,
                "abs_sigma": False,
                "hierarchical": c.hierarchical,
                "no_background": False,
                "C": camera,
                "I": None,
            },
        )
        base = c.channel_base / 32768
        blocks = c.block_resolutions
        upsampler = self.plain(
            "Upsampler",
            {
                "channel_base": base,
                "channel_max": c.channel_max,
                "no_2d_renderer": False,
                "no_residual_img": False,
                "block_reses": None,
                "shared_rgb_style": False,
                "upsample_type": "bilinear",
                "img_channels": c.img_channels,
                "in_res": c.resolution_vol,
                "out_res": c.resolution,
                "out_res_log2": int(np.log2(c.resolution)),
                "block_resolutions": list(blocks),
                "num_ws": 2 * len(blocks) + 1,
            },
        )
        attrs = {
            "w_dim": c.w_dim,
            "z_dim": 0,
            "z_dim_bg": c.z_dim_bg,
            "num_ws": c.num_ws,
            "rgb_out_dim": c.rgb_out_dim,
            "rgb_out_dim_bg": c.rgb_out_dim_bg,
            "img_resolution": c.resolution,
            "resolution_vol": c.resolution_vol,
            "resolution_start": c.resolution_vol,
            "img_resolution_log2": int(np.log2(c.resolution)),
            "img_channels": c.img_channels,
            "n_reg_samples": 16,
            "reg_full": True,
            "use_noise": False,
            "C": camera,
            "I": None,
            "V": renderer,
            "U": upsampler,
            "block_resolutions": list(blocks),
            "predict_camera": False,
            "regularization": [],
            "margin": 0,
            "activation": "lrelu",
            "rectangular_crop": None,
            "block_names": [f"b{r}" for r in blocks],
            "progressive_growing": True,
            "progressive_nerf_only": False,
            "freeze_nerf": False,
            "steps": None,
            "interp_steps": None,
        }
        children = {"fg_nerf": self.nerf(s.fg_nerf, False), "bg_nerf": self.nerf(s.bg_nerf, True)}
        for i, r in enumerate(blocks):
            children[f"b{r}"] = self.block(getattr(s, f"b{r}"), i, i == len(blocks) - 1)
        kwargs = {
            "w_dim": c.w_dim,
            "img_resolution": c.resolution,
            "img_channels": c.img_channels,
            "channel_base": base,
            "channel_max": c.channel_max,
            "z_dim_bg": c.z_dim_bg,
            "z_dim": 0,
            "resolution_vol": c.resolution_vol,
            "rgb_out_dim": c.rgb_out_dim,
            "module_name": "training.stylenerf.NeRFSynthesisNetwork",
            "kernel_size": 1,
            "architecture": "skip",
            "upsample_mode": "nn_cat",
            "use_noise": False,
        }
        return self.obj("NeRFSynthesisNetwork", s, attrs, children, kwargs)

    def mapping(self, m: Mapping) -> _Persistent:
        attrs = {
            "z_dim": m.z_dim,
            "c_dim": 0,
            "w_dim": m.w_dim,
            "num_ws": m.num_ws,
            "num_layers": m.num_layers,
            "w_avg_beta": 0.995,
        }
        children = {f"fc{i}": self.dense(getattr(m, f"fc{i}")) for i in range(m.num_layers)}
        return self.obj(
            "MappingNetwork",
            m,
            attrs,
            children,
            {"z_dim": m.z_dim, "c_dim": 0, "w_dim": m.w_dim, "num_ws": m.num_ws, "num_layers": m.num_layers},
        )

    def generator(self, g: StyleNeRF, init_kwargs: dict[str, Any] | None = None) -> _Persistent:
        c = self.cfg
        attrs = {
            "z_dim": c.z_dim,
            "c_dim": 0,
            "w_dim": c.w_dim,
            "img_resolution": c.resolution,
            "img_channels": c.img_channels,
            "num_ws": c.num_ws,
            "encoder": None,
        }
        kwargs = {
            "z_dim": c.z_dim,
            "w_dim": c.w_dim,
            "c_dim": 0,
            "img_resolution": c.resolution,
            "img_channels": c.img_channels,
            "mapping_kwargs": {"num_layers": c.mapping_layers},
            "synthesis_kwargs": {"module_name": "training.stylenerf.NeRFSynthesisNetwork"},
            **(init_kwargs or {}),
        }
        return self.obj(
            "Generator",
            g,
            attrs,
            {"synthesis": self.synthesis(g.synthesis), "mapping": self.mapping(g.mapping)},
            kwargs,
        )


def _find(obj: _Persistent, dotted: str) -> _Persistent:
    for part in dotted.split(".") if dotted else []:
        obj = obj.state["_modules"][part] if part in obj.state.get("_modules", {}) else obj.state[part]
    return obj


def write_stylenerf_pickle(
    g: StyleNeRF,
    path: str | Path,
    *,
    sources: dict[str, str] | None = None,
    g_ema: Any = None,
    extra: dict[str, dict[str, Any]] | None = None,
    protocol: int = 4,
) -> Path:
    """Write ``g`` as a StyleNeRF training snapshot (``G`` and ``G_ema`` both ``g``; ``D`` a small stand-in).

    Args:
        sources: official class name -> the module source to store with its objects (default: a placeholder).
        g_ema: store this object as ``G_ema`` instead (for hostile-file tests).
        extra: dotted object path in ``G_ema`` ("synthesis.C" is the CameraRay) -> attributes to add or override.
    """
    path = Path(path)
    writer = _Writer(g.cfg, sources or {})
    if g_ema is None:
        g_ema = writer.generator(g)
        for where, attrs in (extra or {}).items():
            _find(g_ema, where).state.update(attrs)
    with official_modules():
        d = nn.Module()
        d.register_parameter("weight", nn.Parameter(torch.randn(4, 3, 1, 1), requires_grad=False))
        snapshot = {
            "G": writer.generator(g),
            "D": writer.obj("Discriminator", d, {}, {}, {}),
            "G_ema": g_ema,
            "augment_pipe": None,
            "training_set_kwargs": {
                "class_name": "training.dataset.ImageFolderDataset",
                "path": "ffhq.zip",
                "resolution": g.cfg.resolution,
            },
        }
        path.write_bytes(pickle.dumps(snapshot, protocol=protocol))
    return path


__all__ = ["PLACEHOLDER_SOURCE", "TINY", "random_stylenerf", "write_stylenerf_pickle"]
