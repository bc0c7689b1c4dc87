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
import numbers
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
from pydantic import ValidationError
from torch import Tensor

from promptgen.plugin import ConfigSizeError, PromptgenError, build_matching
from promptgen_plugin_stylegan2.network import MAX_MAPPING_LAYERS, MAX_RESOLUTION, MAX_WIDTH, StyleGAN2, StyleGAN2Config
from promptgen_plugin_stylegan2.ops import fir_filter

#: What a legacy (non-zip) ``torch.save`` file unpickles to first.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class CheckpointError(PromptgenError):
    """A checkpoint that cannot be read safely or does not hold a StyleGAN2 generator."""


class CheckpointSizeError(CheckpointError, ConfigSizeError):
    """A checkpoint describing a network past promptgen's bounds, or one its stored numbers do not fill."""


#: What the mean of w is computed in pieces of: at most this many numbers per activation (published models: one piece).
BATCH_ELEMENTS = 2**24


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
        """Parameters and persistent buffers of this object and its sub-modules, by dotted name.

        Each sub-module is visited once, without recursion: pickle's memo makes it cheap to write one object
        under many names, or inside itself, and walking that would take exponential time or never end.
        """
        out: dict[str, Tensor] = {}
        seen: set[int] = set()
        stack: list[tuple[str, PersistentObject]] = [(prefix, self)]
        while stack:
            pre, obj = stack.pop()
            if id(obj) in seen:
                where = pre.rstrip(".")
                where = where if len(where) <= 80 else f"{where[:40]}...{where[-37:]}"
                raise CheckpointError(f"sub-module {where!r} is an object the network already holds elsewhere; the file is damaged or crafted")
            seen.add(id(obj))
            skip = obj.state.get("_non_persistent_buffers_set") or set()
            if not isinstance(skip, (set, frozenset)):
                raise CheckpointError(f"{pre or 'the network'}: _non_persistent_buffers_set is a {type(skip).__name__}; the file is damaged")
            for kind in ("_parameters", "_buffers"):
                for name, t in _entries(obj, kind, pre):
                    if t is None or name in skip:
                        continue
                    if not isinstance(t, Tensor):
                        raise CheckpointError(f"{pre}{name} is a {type(t).__name__}, not a tensor; the file is damaged")
                    out[pre + name] = t.detach()
            children = _entries(obj, "_modules", pre)
            for name, child in reversed(children):  # the first child is taken next: the order of a recursive walk
                if child is None:
                    continue
                if not isinstance(child, PersistentObject):
                    raise CheckpointError(f"sub-module {pre}{name} is a {type(child).__name__}; only StyleGAN2 network pickles are supported")
                stack.append((f"{pre}{name}.", child))
        return out


def _entries(obj: PersistentObject, kind: str, prefix: str) -> list[tuple[str, Any]]:
    """The ``(name, value)`` pairs of one of a module's ``_parameters``/``_buffers``/``_modules`` dicts, checked."""
    d = obj.state.get(kind) or {}
    if not isinstance(d, Mapping):
        raise CheckpointError(f"{prefix or 'the network'}: {kind} is a {type(d).__name__}, not a dict; the file is damaged")
    items = list(d.items())
    for name, _ in items:
        if not isinstance(name, str):
            raise CheckpointError(f"{prefix or 'the network'}: {kind} has a key that is a {type(name).__name__}, not a name; the file is damaged")
    return items


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


def _show(x: Any) -> str:
    """A stored value for a message, short whatever the file holds (no repr of a huge number or a nested list)."""
    if x is None or isinstance(x, (bool, np.bool_)):
        return repr(bool(x)) if x is not None else "None"
    if isinstance(x, numbers.Integral):
        n = int(x)
        return f"{n:,}" if n.bit_length() <= 64 else f"a {'negative ' if n < 0 else ''}{n.bit_length():,}-bit number"
    if isinstance(x, numbers.Real):
        return repr(float(x))
    if isinstance(x, str):
        return repr(x[:40] + ("..." if len(x) > 40 else ""))
    return f"a {type(x).__name__}"


def _as_int(x: Any, what: str, lo: int = 0, hi: int | None = None, published: str = "") -> int:
    """A stored whole number within ``[lo, hi]``; booleans, fractions and text are refused, not converted."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Integral):
        raise CheckpointError(f"{what} is {_show(x)}, not a whole number; the file is damaged")
    n = int(x)
    if n < lo:
        raise CheckpointError(f"{what} is {_show(n)}; it must be at least {lo}; the file is damaged")
    if hi is not None and n > hi:
        note = f" ({published})" if published else ""
        raise CheckpointSizeError(f"{what} is {_show(n)}, more than {hi:,}, the most promptgen builds{note}; the file is damaged or not a StyleGAN2 network")
    return n


def _as_float(x: Any, what: str) -> float:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real) or not math.isfinite(float(x)):
        raise CheckpointError(f"{what} is {_show(x)}, not a finite number; the file is damaged")
    return float(x)


def _as_bool(x: Any, what: str) -> bool:
    if not isinstance(x, (bool, np.bool_)):
        raise CheckpointError(f"{what} is {_show(x)}, not True or False; the file is damaged")
    return bool(x)


def _as_text(x: Any, what: str) -> str:
    if not isinstance(x, str) or len(x) > 100:
        raise CheckpointError(f"{what} is {_show(x)}, not a name; the file is damaged")
    return x


def _validation_line(e: ValidationError) -> str:
    """A pydantic error about a configuration read from a file, as one line."""
    parts = []
    for err in e.errors()[:2]:
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where + ' ' if where else ''}is {_show(err['input']) if where else 'invalid'}: {err['msg'][:160]}")
    return "; ".join(parts)


def config_from_persistent(g: PersistentObject) -> StyleGAN2Config:
    """The architecture of an official ``Generator``, read from its stored attributes and shapes.

    Every stored number that decides how many modules are built, or how wide, is checked first.
    """
    if g.class_name != "Generator":
        raise CheckpointError(f"G_ema is a {g.class_name!r}, not a Generator")
    syn, mapping = g.module("synthesis"), g.module("mapping")
    if syn is None or mapping is None:
        raise CheckpointError("the Generator has no synthesis or mapping network; the file is damaged")
    res = _as_int(g.attr("img_resolution"), "img_resolution", 4, MAX_RESOLUTION, "published StyleGAN2 models have at most 1024")
    if res & (res - 1):
        raise CheckpointError(f"img_resolution is {res:,}, not a power of two; the file is damaged")
    layers = _as_int(mapping.attr("num_layers"), "mapping.num_layers", 1, MAX_MAPPING_LAYERS, "published StyleGAN2 models have at most 8")
    z_dim = _as_int(g.attr("z_dim"), "z_dim", 1, MAX_WIDTH)
    c_dim = _as_int(g.attr("c_dim", 0), "c_dim", 0, MAX_WIDTH)
    w_dim = _as_int(g.attr("w_dim"), "w_dim", 1, MAX_WIDTH)
    img_channels = _as_int(g.attr("img_channels"), "img_channels", 1, MAX_WIDTH)
    if syn.module("b4") is None:
        names = sorted((syn.state.get("_modules") or {}).keys())[:3]
        raise CheckpointError(
            f"this generator's synthesis network has layers {names}..., not StyleGAN2 blocks (b4, b8...); "
            "it is probably a StyleGAN3 (config T or R) network, which this plugin does not run: use a StyleGAN2 model"
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
    acts = {_show(a) if not isinstance(a, str) else a for a in (fc.attr("activation") for fc in fcs)}
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
            mapping_lr=_as_float(fcs[0].attr("bias_gain", 0.01), "mapping.fc0.bias_gain"),
            channels=channels,
            architecture=_as_text(b4.attr("architecture", "skip"), "synthesis.b4.architecture"),
            conv_clamp=_as_float(clamp, "conv_clamp") if clamp is not None else None,
            fp16_resolutions=sum(_as_bool(syn.module(f"b{r}").attr("use_fp16", False), f"synthesis.b{r}.use_fp16") for r in channels),
            use_noise=_as_bool(conv.attr("use_noise", True), "use_noise"),
            fir=tuple(float(t) for t in taps),
        )
    except ValidationError as e:
        raise CheckpointError(f"the stored configuration {_validation_line(e)}; the file is damaged or not StyleGAN2") from None


def _check_gains(g: PersistentObject, model: StyleGAN2) -> None:
    """Stored gains must be the ones this implementation uses (else the file is a variant we do not run)."""
    for name, mod in model.named_modules():
        stored = g.module(name) if name else g
        if stored is None:
            continue
        for attr in ("weight_gain", "bias_gain"):
            if hasattr(mod, attr) and stored.attr(attr) is not None:
                a, b = _as_float(stored.attr(attr), f"{name or 'G_ema'}.{attr}"), float(getattr(mod, attr))
                if not math.isclose(a, b, rel_tol=1e-6):
                    raise CheckpointError(f"{name}.{attr} is {a} in the file but {b} here; this StyleGAN2 variant is not supported")


def check_stored(state: Mapping[str, Any], source: str) -> None:
    """Every tensor must be floating-point numbers the file holds, each once.

    A pickle (or ``torch.save``) stores a tensor as data plus a shape and strides: a few bytes with strides 0 claim
    a tensor of any size, and one array can stand under many names. Both would be built as that many separate
    numbers, so they are refused here, before anything reads them: the network is then at most the file's size
    (twice it for float16 files).
    """
    sizes: dict[int, int] = {}
    need = 0
    for name, t in state.items():
        if not isinstance(t, Tensor):
            raise CheckpointError(f"{source}: {name} is a {type(t).__name__}, not a tensor; the file is damaged")
        if not t.is_floating_point():
            raise CheckpointError(f"{source}: {name} holds {str(t.dtype).removeprefix('torch.')} numbers, not floating point; the file is damaged or not StyleGAN2")
        storage = t.untyped_storage()
        nbytes = t.numel() * t.element_size()
        if nbytes > storage.nbytes():
            raise CheckpointSizeError(
                f"{source}: {name} claims shape {tuple(t.shape)} ({t.numel():,} numbers) but stores {storage.nbytes() // t.element_size():,}; "
                "the file is damaged or crafted"
            )
        sizes[storage.data_ptr()] = max(sizes.get(storage.data_ptr(), 0), storage.nbytes())
        need += nbytes
    have = sum(sizes.values())
    if need > have:
        raise CheckpointSizeError(
            f"{source} uses the same stored numbers under several names: its tensors claim {need:,} bytes from {have:,} bytes of data; "
            "the file is damaged or crafted"
        )


def _build(cfg: StyleGAN2Config, state: Mapping[str, Tensor], source: str) -> StyleGAN2:
    """The network ``cfg`` describes, with ``state`` loaded: built for real only once the file's tensors fill it."""
    check_stored(state, source)
    for k, v in state.items():
        if not torch.isfinite(v).all():
            raise CheckpointError(f"{source}: {k} holds NaN or infinite values; the file is damaged")
    try:
        model = build_matching(lambda: StyleGAN2(cfg), state, source)
    except ConfigSizeError as e:
        raise CheckpointSizeError(str(e)) from None
    except (RuntimeError, ValueError, TypeError) as e:  # a configuration torch refuses to build, even on meta
        raise CheckpointError(f"{source}: cannot build the network it describes ({_first_line(e)})") from None
    own = model.state_dict()
    extra = sorted(set(state) - set(own))
    if extra:
        raise CheckpointError(f"{source} does not match a StyleGAN2 generator: unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return model.eval().requires_grad_(False)


#: What reading a hostile file's configuration can raise besides CheckpointError: each becomes one line.
_READ_ERRORS = (KeyError, AttributeError, TypeError, ValueError, IndexError, RuntimeError, ArithmeticError)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:160]}" if text else type(e).__name__


def generator_from_nvidia(data: Mapping[str, Any], source: str = "the pickle") -> StyleGAN2:
    """The ``G_ema`` network of an unpickled NVIDIA pickle as a :class:`StyleGAN2`."""
    if not isinstance(data, Mapping) or "G_ema" not in data:
        raise CheckpointError(f"{source} has no G_ema network; it is not a StyleGAN2 training snapshot or release pickle")
    g = data["G_ema"]
    if not isinstance(g, PersistentObject):
        raise CheckpointError(f"{source}: G_ema is a {type(g).__name__}, not a network")
    state = g.tensors()
    check_stored(state, source)  # before any stored number is read (a stride-0 filter row could claim gigabytes)
    try:
        cfg = config_from_persistent(g)
    except CheckpointError as e:
        raise type(e)(f"{source}: {e}") from None
    except KeyError as e:
        raise CheckpointError(f"{source}: G_ema lacks {e}; the file is damaged or not StyleGAN2") from None
    except _READ_ERRORS as e:
        raise CheckpointError(f"{source}: G_ema's stored configuration is damaged ({_first_line(e)})") from None
    model = _build(cfg, state, source)
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
        raise CheckpointError(f"{source}: the architecture its names and shapes describe {_validation_line(e)}; the file is damaged") from None
    except _READ_ERRORS as e:
        raise CheckpointError(f"{source}: g_ema is damaged or not a rosinality StyleGAN2 generator ({_first_line(e)})") from None
    return _build(cfg, state, source), latent is not None


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
    try:
        model, has_avg = _read(raw, source)
    except CheckpointError as e:  # every refusal names the file
        if source in str(e):
            raise
        raise type(e)(f"{source}: {e}") from None
    if not has_avg:  # rosinality generators are unconditional
        model.mapping.w_avg.copy_(mean_w(model))
    return model


def _read(raw: bytes, source: str) -> tuple[StyleGAN2, bool]:
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
def mean_w(model: StyleGAN2, n: int = 4096, seed: int = 0) -> Tensor:
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


def mapping_width(cfg: StyleGAN2Config) -> int:
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
