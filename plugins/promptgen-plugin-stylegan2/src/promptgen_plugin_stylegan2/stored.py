"""What a checkpoint stores, read without running code from it.

NVIDIA's network pickles (stylegan2-ada-pytorch, stylegan3) are a plain
``pickle`` whose networks are ``torch_utils.persistence`` objects: each is
stored as a call ``_reconstruct_persistent_obj(meta)`` where ``meta`` holds the
*source code* of the module that defined the class, the class name and the
object's ``__dict__``. Unpickling it the official way executes that source.
:class:`SafeUnpickler` resolves only :data:`ALLOWED_GLOBALS`; the persistence
hook is replaced by :class:`PersistentObject`, which keeps the class name and
state and never looks at the code. Tensors are rebuilt by torch's own
functions, their bytes read with ``torch.load(weights_only=True)``; numpy
scalars and arrays (StyleGAN3 stores its layer sizes as arrays) are rebuilt
from their bytes only, never with object dtypes. Anything else in the file (a
``posix.system``, ``builtins.eval``...) stops loading with
:class:`CheckpointError`.

Also here, for both StyleGAN families: :func:`read_checkpoint` (a file's
bytes, or a one-line refusal), the checks of stored values (whole numbers
within bounds, finite numbers, tensors the file really holds) and
:func:`build_checked`, which builds a network only once the file's tensors
fill it.
"""

from __future__ import annotations

import io
import math
import numbers
import pickle
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from pydantic import ValidationError
from torch import Tensor, nn

from promptgen.plugin import ConfigSizeError, PromptgenError, build_matching


class CheckpointError(PromptgenError):
    """A checkpoint that cannot be read safely or does not hold a StyleGAN2 or StyleGAN3 generator."""


class CheckpointSizeError(CheckpointError, ConfigSizeError):
    """A checkpoint describing a network past promptgen's bounds, or one its stored numbers do not fill."""


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
            raise CheckpointError(
                "the pickle holds a persistent object of an unknown kind; it is not a StyleGAN network pickle"
            )
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
                raise CheckpointError(
                    f"sub-module {where!r} is an object the network already holds elsewhere; "
                    "the file is damaged or crafted"
                )
            seen.add(id(obj))
            skip = obj.state.get("_non_persistent_buffers_set") or set()
            if not isinstance(skip, (set, frozenset)):
                raise CheckpointError(
                    f"{pre or 'the network'}: _non_persistent_buffers_set is a {type(skip).__name__}; "
                    "the file is damaged"
                )
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
                    raise CheckpointError(
                        f"sub-module {pre}{name} is a {type(child).__name__}; "
                        "only StyleGAN network pickles are supported"
                    )
                stack.append((f"{pre}{name}.", child))
        return out


def _entries(obj: PersistentObject, kind: str, prefix: str) -> list[tuple[str, Any]]:
    """The ``(name, value)`` pairs of one of a module's ``_parameters``/``_buffers``/``_modules`` dicts, checked."""
    d = obj.state.get(kind) or {}
    if not isinstance(d, Mapping):
        raise CheckpointError(
            f"{prefix or 'the network'}: {kind} is a {type(d).__name__}, not a dict; the file is damaged"
        )
    items = list(d.items())
    for name, _ in items:
        if not isinstance(name, str):
            raise CheckpointError(
                f"{prefix or 'the network'}: {kind} has a key that is a {type(name).__name__}, not a name; "
                "the file is damaged"
            )
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


#: The most dimensions a stored numpy array may have (StyleGAN3 stores 1-D arrays of two sizes).
MAX_ARRAY_DIMS = 32


class StoredArray(np.ndarray):
    """A numpy array as a network pickle stores it, rebuilt from its bytes alone.

    numpy pickles an array as ``_reconstruct(ndarray, (0,), b"b")`` followed by
    ``__setstate__((version, shape, dtype, is_fortran, raw))``. Here
    ``_reconstruct`` makes an empty instance of this class and
    :meth:`__setstate__` accepts only numbers: a dtype without Python objects
    and exactly ``prod(shape) * itemsize`` bytes of data (an object array's
    payload would be objects the pickle builds, and a shape the bytes do not
    fill would be a claim, not data).
    """

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise CheckpointError("a numpy array in the pickle has a state numpy never writes; the file is damaged")
        version, shape, dtype, fortran, raw = state if len(state) == 5 else (1, *state)
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise CheckpointError("the pickle holds a numpy array of Python objects; refusing to load it")
        ok_shape = (
            isinstance(shape, tuple)
            and len(shape) <= MAX_ARRAY_DIMS
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        )
        if not ok_shape or not isinstance(raw, (bytes, bytearray)) or not isinstance(fortran, bool):
            raise CheckpointError("a numpy array in the pickle has a malformed shape or data; the file is damaged")
        if math.prod(shape) * dtype.itemsize != len(raw):
            raise CheckpointError(
                f"a numpy array in the pickle claims shape {shape[:4]}{'...' if len(shape) > 4 else ''} of {dtype} "
                f"but holds {len(raw):,} bytes; the file is damaged"
            )
        super().__setstate__((version, shape, dtype, fortran, raw))


class _NdarrayName:
    """What ``numpy.ndarray`` resolves to: a name for :func:`_reconstruct_array` to check, not a callable type."""


_NDARRAY = _NdarrayName()


def _reconstruct_array(cls: Any, shape: Any = (0,), typecode: Any = b"b") -> StoredArray:
    """``numpy.core.multiarray._reconstruct``: an empty :class:`StoredArray` that its ``__setstate__`` fills."""
    if cls is not _NDARRAY:
        raise CheckpointError("the pickle rebuilds a numpy array of a type other than ndarray; refusing to load it")
    return np.ndarray.__new__(StoredArray, (0,), np.uint8)


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
    allowed[("numpy", "ndarray")] = _NDARRAY
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # written by numpy 1.x, 2.x
        allowed[(mod, "scalar")] = _numpy_scalar
        allowed[(mod, "_reconstruct")] = _reconstruct_array
    return allowed


ALLOWED_GLOBALS = _allowed()


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` (and ``extra_globals``); everything else is refused.

    ``extra_globals``: what another family of NVIDIA-style pickles also needs (StyleNeRF's ``torch.nn`` containers),
    as data-only stand-ins; ``kind`` names that family in the refusal.
    """

    def __init__(
        self, file: Any, *, extra_globals: Mapping[tuple[str, str], Any] | None = None, kind: str = "StyleGAN"
    ) -> None:
        super().__init__(file)
        self.extra_globals = dict(extra_globals or {})
        self.kind = kind

    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED_GLOBALS.get((module, name), self.extra_globals.get((module, name)))
        if found is None and module == "torch.nn.modules.container" and self.kind == "StyleGAN":
            # StyleNeRF's pickles are NVIDIA-style too, but hold torch.nn containers: say so rather than "suspicious".
            raise CheckpointError(
                f"the pickle holds a torch.nn.{name} stored by class, which StyleGAN network pickles never do but "
                "StyleNeRF ones do; if it is a StyleNeRF network, load it with --gen stylenerf:path=FILE"
            )
        if found is None:
            advice = "use an official checkpoint" + (" or a rosinality .pt" if self.kind == "StyleGAN" else "")
            raise CheckpointError(
                f"the pickle asks for {module}.{name}, which a {self.kind} network pickle never needs; "
                f"refusing to load it (it could run code); {advice}"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError("the pickle refers to external objects; it is damaged or not a StyleGAN network pickle")


def load_nvidia_pickle(
    data: bytes | io.BufferedIOBase,
    *,
    extra_globals: Mapping[tuple[str, str], Any] | None = None,
    kind: str = "StyleGAN",
) -> dict[str, Any]:
    """Unpickle an NVIDIA network pickle safely; networks come back as :class:`PersistentObject`.

    ``extra_globals`` and ``kind``: see :class:`SafeUnpickler`.
    """
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    try:
        return SafeUnpickler(f, extra_globals=extra_globals, kind=kind).load()
    except CheckpointError:
        raise
    except MemoryError:
        # A few bytes can claim a terabyte (BINBYTES8 with a huge length): the unpickler tries to allocate it.
        raise CheckpointError(
            "the network pickle claims more memory than this machine has; "
            "it is damaged or not a StyleGAN network pickle"
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        RuntimeError,
        OverflowError,
    ) as e:
        raise CheckpointError(
            "the network pickle is damaged or truncated "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None


def show(x: Any) -> str:
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


def as_int(x: Any, what: str, lo: int = 0, hi: int | None = None, published: str = "") -> int:
    """A stored whole number within ``[lo, hi]``; booleans, fractions and text are refused, not converted."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Integral):
        raise CheckpointError(f"{what} is {show(x)}, not a whole number; the file is damaged")
    n = int(x)
    if n < lo:
        raise CheckpointError(f"{what} is {show(n)}; it must be at least {lo}; the file is damaged")
    if hi is not None and n > hi:
        note = f" ({published})" if published else ""
        raise CheckpointSizeError(
            f"{what} is {show(n)}, more than {hi:,}, the most promptgen builds{note}; "
            "the file is damaged or not a StyleGAN network"
        )
    return n


def as_float(x: Any, what: str) -> float:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real) or not math.isfinite(float(x)):
        raise CheckpointError(f"{what} is {show(x)}, not a finite number; the file is damaged")
    return float(x)


def as_bool(x: Any, what: str) -> bool:
    if not isinstance(x, (bool, np.bool_)):
        raise CheckpointError(f"{what} is {show(x)}, not True or False; the file is damaged")
    return bool(x)


def as_text(x: Any, what: str) -> str:
    if not isinstance(x, str) or len(x) > 100:
        raise CheckpointError(f"{what} is {show(x)}, not a name; the file is damaged")
    return x


def validation_line(e: ValidationError) -> str:
    """A pydantic error about a configuration read from a file, as one line."""
    parts = []
    for err in e.errors()[:2]:
        where = ".".join(str(p) for p in err["loc"])
        parts.append(
            f"{where + ' ' if where else ''}is {show(err['input']) if where else 'invalid'}: {err['msg'][:160]}"
        )
    return "; ".join(parts)


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
            raise CheckpointError(
                f"{source}: {name} holds {str(t.dtype).removeprefix('torch.')} numbers, not floating point; "
                "the file is damaged or not a StyleGAN network"
            )
        storage = t.untyped_storage()
        nbytes = t.numel() * t.element_size()
        if nbytes > storage.nbytes():
            raise CheckpointSizeError(
                f"{source}: {name} claims shape {tuple(t.shape)} ({t.numel():,} numbers) "
                f"but stores {storage.nbytes() // t.element_size():,}; "
                "the file is damaged or crafted"
            )
        sizes[storage.data_ptr()] = max(sizes.get(storage.data_ptr(), 0), storage.nbytes())
        need += nbytes
    have = sum(sizes.values())
    if need > have:
        raise CheckpointSizeError(
            f"{source} uses the same stored numbers under several names: "
            f"its tensors claim {need:,} bytes from {have:,} bytes of data; "
            "the file is damaged or crafted"
        )


#: What reading a hostile file's configuration can raise besides CheckpointError: each becomes one line.
READ_ERRORS = (KeyError, AttributeError, TypeError, ValueError, IndexError, RuntimeError, ArithmeticError)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:160]}" if text else type(e).__name__


def read_checkpoint(path: str | Path) -> tuple[bytes, str]:
    """A checkpoint file's bytes and the name every refusal gives it (its quoted path); a one-line
    :class:`CheckpointError` if it cannot be read or is empty."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {str(path)!r}: {e.strerror or e}") from None
    source = repr(str(path))
    if not raw:
        raise CheckpointError(f"{source} is empty; download it again")
    return raw, source


M = TypeVar("M", bound=nn.Module)


def build_checked(make: Callable[[], M], state: Mapping[str, Tensor], source: str, what: str) -> M:
    """The network ``make()`` builds, with ``state`` loaded: built for real only once the file's tensors fill it.

    ``what`` names the kind of network in errors ("a StyleGAN2 generator").
    """
    check_stored(state, source)
    for k, v in state.items():
        if not torch.isfinite(v).all():
            raise CheckpointError(f"{source}: {k} holds NaN or infinite values; the file is damaged")
    try:
        model = build_matching(make, state, source)
    except ConfigSizeError as e:
        raise CheckpointSizeError(str(e)) from None
    except (RuntimeError, ValueError, TypeError) as e:  # a configuration torch refuses to build, even on meta
        raise CheckpointError(f"{source}: cannot build the network it describes ({first_line(e)})") from None
    own = model.state_dict()
    extra = sorted(set(state) - set(own))
    if extra:
        raise CheckpointError(
            f"{source} does not match {what}: unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return model.eval().requires_grad_(False)


def check_gains(g: PersistentObject, model: nn.Module, family: str) -> None:
    """Stored gains must be the ones this implementation uses (else the file is a variant we do not run)."""
    for name, mod in model.named_modules():
        stored = g.module(name) if name else g
        if stored is None:
            continue
        for attr in ("weight_gain", "bias_gain"):
            if hasattr(mod, attr) and stored.attr(attr) is not None:
                a, b = as_float(stored.attr(attr), f"{name or 'G_ema'}.{attr}"), float(getattr(mod, attr))
                if not math.isclose(a, b, rel_tol=1e-6):
                    raise CheckpointError(
                        f"{name}.{attr} is {a} in the file but {b} here; this {family} variant is not supported"
                    )
