"""Reading official StyleGAN2 checkpoints without running code from them.

Two formats:

* **NVIDIA network pickles** (stylegan2-ada-pytorch, stylegan3): a plain
  ``pickle`` of ``{"G": ..., "D": ..., "G_ema": ..., "training_set_kwargs": ...,
  "augment_pipe": ...}`` whose networks are ``torch_utils.persistence`` objects:
  each is stored as a call ``_reconstruct_persistent_obj(meta)`` where ``meta``
  holds the *source code* of the module that defined the class, the class name
  and the object's ``__dict__`` (parameters, buffers, sub-modules, attributes).
  Unpickling it the official way executes that source. :class:`SafeUnpickler`
  resolves only an allow-list of globals; the persistence hook is replaced by
  :class:`PersistentObject`, which keeps the class name and state and never
  looks at the code. Tensors are rebuilt by torch's own functions, their bytes
  read with ``torch.load(weights_only=True)``. Anything else in the file (a
  ``posix.system``, ``builtins.eval``...) stops loading with
  :class:`CheckpointError`.
* **rosinality's ``.pt``** (github.com/rosinality/stylegan2-pytorch, used by
  the PromptGen paper): ``torch.save({"g_ema": state_dict, "latent_avg": w,
  ...})``, read with ``torch.load(weights_only=True)`` (``argparse.Namespace``,
  which its training script stores as ``args``, is the one extra class allowed),
  and its names mapped onto the official ones.

Both return a :class:`~promptgen_plugin_stylegan2.network.StyleGAN2` with the
file's weights, checked key by key and shape by shape.
"""

from __future__ import annotations

import argparse
import io
import math
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from promptgen.plugin import PromptgenError
from promptgen_plugin_stylegan2.network import StyleGAN2, StyleGAN2Config
from promptgen_plugin_stylegan2.ops import fir_filter

#: What a legacy (non-zip) ``torch.save`` file unpickles to first.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class CheckpointError(PromptgenError):
    """A checkpoint that cannot be read safely or does not hold a StyleGAN2 generator."""


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access); data only."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class PersistentObject:
    """A ``torch_utils.persistence`` object as stored: class name and state. Its source is never run.

    Attributes:
        class_name: the class's name in its (unexecuted) module, e.g. ``"SynthesisLayer"``.
        state: its ``__dict__``: ``_parameters``, ``_buffers``, ``_modules``, plain attributes.
        source_lines: how long the stored source was (kept for messages, never executed).
    """

    class_name: str
    state: dict[str, Any]
    source_lines: int = 0
    children: dict[str, PersistentObject] = field(default_factory=dict)

    @classmethod
    def from_meta(cls, meta: Any) -> PersistentObject:
        if not isinstance(meta, Mapping) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
            raise CheckpointError("the pickle holds a persistent object of an unknown kind; it is not a StyleGAN2 network pickle")
        state = meta.get("state")
        if not isinstance(state, Mapping):
            raise CheckpointError(f"persistent object {meta['class_name']!r} has no state; the file is damaged")
        src = meta.get("module_src")
        return cls(str(meta["class_name"]), dict(state), len(src.splitlines()) if isinstance(src, str) else 0)

    def attr(self, name: str, default: Any = None) -> Any:
        return self.state.get(name, default)

    def module(self, path: str) -> PersistentObject | None:
        obj: PersistentObject | None = self
        for part in path.split("."):
            if obj is None:
                return None
            mods = obj.state.get("_modules") or {}
            child = mods.get(part)
            obj = child if isinstance(child, PersistentObject) else None
        return obj

    def tensors(self, prefix: str = "") -> dict[str, Tensor]:
        """Parameters and persistent buffers of this object and its sub-modules, by dotted name."""
        out: dict[str, Tensor] = {}
        skip = self.state.get("_non_persistent_buffers_set") or set()
        for kind in ("_parameters", "_buffers"):
            for name, t in (self.state.get(kind) or {}).items():
                if t is None or name in skip:
                    continue
                if not isinstance(t, Tensor):
                    raise CheckpointError(f"{prefix}{name} is a {type(t).__name__}, not a tensor; the file is damaged")
                out[prefix + name] = t.detach()
        for name, child in (self.state.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, PersistentObject):
                raise CheckpointError(f"sub-module {prefix}{name} is a {type(child).__name__}; only StyleGAN2 network pickles are supported")
            out.update(child.tensors(f"{prefix}{name}."))
        return out


def _load_storage_bytes(data: bytes) -> Any:
    """``torch.storage._load_from_bytes`` without the full unpickler: weights only."""
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError("a tensor's data in the pickle is not bytes; the file is damaged")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise CheckpointError("the pickle holds a numpy object scalar; refusing to load it")
    return np.frombuffer(data, dtype=dtype, count=1)[0] if data is not None else dtype.type()


def _allowed() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch", "Size"): torch.Size,
        ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistentObject.from_meta,
        ("dnnlib.util", "EasyDict"): EasyDict,
        ("numpy", "dtype"): np.dtype,
    }
    if hasattr(torch._utils, "_rebuild_parameter_with_state"):
        allowed[("torch._utils", "_rebuild_parameter_with_state")] = torch._utils._rebuild_parameter_with_state
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "scalar")] = _numpy_scalar
    return allowed


ALLOWED_GLOBALS = _allowed()


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; everything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"the pickle asks for {module}.{name}, which a StyleGAN2 network pickle never needs; "
                "refusing to load it (it could run code); use an official checkpoint or a rosinality .pt"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError("the pickle refers to external objects; it is damaged or not a StyleGAN2 network pickle")


def load_nvidia_pickle(data: bytes | io.BufferedIOBase) -> dict[str, Any]:
    """Unpickle an NVIDIA network pickle safely; networks come back as :class:`PersistentObject`."""
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    try:
        return SafeUnpickler(f).load()
    except CheckpointError:
        raise
    except MemoryError:
        # A few bytes can claim a terabyte (BINBYTES8 with a huge length): the unpickler tries to allocate it.
        raise CheckpointError("the network pickle claims more memory than this machine has; it is damaged or not a StyleGAN2 network pickle") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, RuntimeError, OverflowError) as e:
        raise CheckpointError(f"the network pickle is damaged or truncated ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def _as_int(x: Any, what: str) -> int:
    try:
        return int(x)
    except (TypeError, ValueError):
        raise CheckpointError(f"{what} is {x!r}, not a whole number; the file is damaged") from None


def config_from_persistent(g: PersistentObject) -> StyleGAN2Config:
    """The architecture of an official ``Generator``, read from its stored attributes and shapes."""
    if g.class_name != "Generator":
        raise CheckpointError(f"G_ema is a {g.class_name!r}, not a Generator")
    syn, mapping = g.module("synthesis"), g.module("mapping")
    if syn is None or mapping is None:
        raise CheckpointError("the Generator has no synthesis or mapping network; the file is damaged")
    res = _as_int(g.attr("img_resolution"), "img_resolution")
    if syn.module("b4") is None:
        names = sorted((syn.state.get("_modules") or {}).keys())[:3]
        raise CheckpointError(
            f"this generator's synthesis network has layers {names}..., not StyleGAN2 blocks (b4, b8...); "
            "it is probably a StyleGAN3 (config T or R) network, which this plugin does not run: use a StyleGAN2 model"
        )
    tensors = syn.tensors()
    channels = {4: int(tensors["b4.const"].shape[0])}
    for r in (2**i for i in range(3, int(math.log2(res)) + 1)):
        key = f"b{r}.conv1.weight"
        if key not in tensors:
            raise CheckpointError(f"synthesis has no {key} for resolution {res}; the file is damaged")
        channels[r] = int(tensors[key].shape[0])
    b4 = syn.module("b4")
    conv = b4.module("conv1")
    acts = {str(mapping.module(f"fc{i}").attr("activation")) for i in range(_as_int(mapping.attr("num_layers"), "num_layers"))}
    if acts != {"lrelu"} or conv.attr("activation", "lrelu") != "lrelu":
        raise CheckpointError(f"unsupported activations {sorted(acts)}; only StyleGAN2's leaky ReLU generators are supported")
    fc0 = mapping.module("fc0")
    clamp = conv.attr("conv_clamp")
    mtensors = mapping.tensors()
    layers = _as_int(mapping.attr("num_layers"), "num_layers")
    c_dim = _as_int(g.attr("c_dim", 0), "c_dim")
    filt = tensors["b4.resample_filter"]
    if filt.ndim != 2 or filt.shape[0] != filt.shape[1]:
        raise CheckpointError(f"unsupported resampling filter of shape {tuple(filt.shape)}")
    taps = filt[0] / filt[0].sum()  # rank one: any row is the 1-D taps up to scale
    return StyleGAN2Config(
        z_dim=_as_int(g.attr("z_dim"), "z_dim"),
        c_dim=c_dim,
        w_dim=_as_int(g.attr("w_dim"), "w_dim"),
        resolution=res,
        img_channels=_as_int(g.attr("img_channels"), "img_channels"),
        mapping_layers=layers,
        mapping_features=int(mtensors["fc0.weight"].shape[0]) if layers > 1 else None,
        embed_features=int(mtensors["embed.weight"].shape[0]) if c_dim else None,
        mapping_lr=float(fc0.attr("bias_gain", 0.01)),
        channels=channels,
        architecture=str(b4.attr("architecture", "skip")),
        conv_clamp=float(clamp) if clamp is not None else None,
        fp16_resolutions=sum(bool(syn.module(f"b{r}").attr("use_fp16", False)) for r in channels),
        use_noise=bool(conv.attr("use_noise", True)),
        fir=tuple(float(t) for t in taps),
    )


def _check_gains(g: PersistentObject, model: StyleGAN2) -> None:
    """Stored gains must be the ones this implementation uses (else the file is a variant we do not run)."""
    for name, mod in model.named_modules():
        stored = g.module(name) if name else g
        if stored is None:
            continue
        for attr in ("weight_gain", "bias_gain"):
            if hasattr(mod, attr) and stored.attr(attr) is not None:
                a, b = float(stored.attr(attr)), float(getattr(mod, attr))
                if not math.isclose(a, b, rel_tol=1e-6):
                    raise CheckpointError(f"{name}.{attr} is {a} in the file but {b} here; this StyleGAN2 variant is not supported")


def _build(cfg: StyleGAN2Config, state: Mapping[str, Tensor], source: str) -> StyleGAN2:
    model = StyleGAN2(cfg)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise CheckpointError(
            f"{source} does not match a StyleGAN2 generator: missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}"
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(f"{source}: {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}; the file is damaged")
        if not torch.isfinite(v).all():
            raise CheckpointError(f"{source}: {k} holds NaN or infinite values; the file is damaged")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return model.eval().requires_grad_(False)


def generator_from_nvidia(data: Mapping[str, Any], source: str = "the pickle") -> StyleGAN2:
    """The ``G_ema`` network of an unpickled NVIDIA pickle as a :class:`StyleGAN2`."""
    if not isinstance(data, Mapping) or "G_ema" not in data:
        raise CheckpointError(f"{source} has no G_ema network; it is not a StyleGAN2 training snapshot or release pickle")
    g = data["G_ema"]
    if not isinstance(g, PersistentObject):
        raise CheckpointError(f"{source}: G_ema is a {type(g).__name__}, not a network")
    try:
        cfg = config_from_persistent(g)
    except (KeyError, AttributeError, TypeError) as e:
        raise CheckpointError(f"{source}: G_ema lacks {e}; the file is damaged or not StyleGAN2") from None
    except ValueError as e:
        raise CheckpointError(f"{source}: {str(e).splitlines()[0]}") from None
    model = _build(cfg, g.tensors(), source)
    _check_gains(g, model)
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
    keys = set(g_ema)
    style = sorted(int(m.group(1)) for k in keys if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
    n_rgb = len({m.group(1) for k in keys if (m := re.fullmatch(r"to_rgbs\.(\d+)\..*", k))})
    if not style or "input.input" not in keys or "conv1.conv.weight" not in keys:
        raise CheckpointError("g_ema is not a rosinality StyleGAN2 generator (no style.N, input.input or conv1 weights)")
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
    cfg, state = convert_rosinality(ckpt["g_ema"], latent if isinstance(latent, Tensor) else None)
    return _build(cfg, state, source), isinstance(latent, Tensor)


def load_generator(path: str | Path) -> StyleGAN2:
    """Load a StyleGAN2 generator from an NVIDIA ``.pkl`` or a rosinality ``.pt``, never running code from it.

    Without a stored mean latent (rosinality training snapshots), ``mapping.w_avg``
    is set to the mean of w over 4,096 latents drawn with seed 0, as rosinality's
    ``mean_latent`` does, so truncation works.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {str(path)!r}: {e.strerror or e}") from None
    source = repr(str(path))
    if not raw:
        raise CheckpointError(f"{source} is empty; download it again")
    has_avg = True
    if raw[:4] == b"PK\x03\x04" or zipfile.is_zipfile(io.BytesIO(raw)):  # torch.save's zip format (rosinality)
        model, has_avg = generator_from_rosinality(_torch_load(raw, source), source)
    else:
        data = load_nvidia_pickle(raw)
        if data == TORCH_LEGACY_MAGIC:  # an old-style torch.save file
            model, has_avg = generator_from_rosinality(_torch_load(raw, source), source)
        else:
            model = generator_from_nvidia(data, source)
    if not has_avg:  # rosinality generators are unconditional
        with torch.no_grad():
            z = torch.randn(4096, model.cfg.z_dim, generator=torch.Generator().manual_seed(0))
            model.mapping.w_avg.copy_(model.mapping(z, None)[:, 0].mean(0))
    return model


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
