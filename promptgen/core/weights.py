"""Reading a torch file someone else made, without running code from it.

``torch.load(weights_only=True)`` rebuilds tensors and plain containers only and
refuses anything else a pickle asks for. Its refusal, though, is many lines long
and advises re-running with ``weights_only=False`` or allow-listing the global:
the opposite of what a user should do with a file that asks to run
``os.system``. :func:`load_torch_file` says it in one line, names what the file
asked for, and keeps torch's warnings (a legacy pickle's protocol) off the
screen.

>>> import os, pickle, tempfile
>>> class Payload:
...     def __reduce__(self):
...         return (os.system, ("echo pwned",))
>>> path = os.path.join(tempfile.mkdtemp(), "evil.pt")
>>> with open(path, "wb") as f:
...     pickle.dump(Payload(), f)
>>> try:
...     load_torch_file(path, what="an NVAE checkpoint.pt")
... except WeightsFileError as e:
...     print(e)  # doctest: +ELLIPSIS
'evil.pt' asks to run posix.system when it is read, which an NVAE checkpoint.pt never does; refused, and nothing ran: ...
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptgen.core.errors import PromptgenError

__all__ = ["WeightsFileError", "check_state_dict", "load_torch_file"]


class WeightsFileError(PromptgenError):
    """A torch file that is missing, damaged, or asks to run code."""


_GLOBAL = re.compile(r"\bGLOBAL\s+([A-Za-z_][\w.]*)")


def load_torch_file(path: str | Path, *, what: str, allow: Sequence[type] = (), mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with ``allow`` (classes) allow-listed for this call only.

    Args:
        what: what the file should be, for the errors (``"a BigGAN pytorch_model.bin"``).
        allow: classes the file may hold besides tensors and containers (``argparse.Namespace``).
        mmap: map the file instead of reading it into memory (zip-format files only).

    Raises:
        WeightsFileError: one line: the file is missing or unreadable, empty, damaged or
            truncated, or asks for something that would run code (named).
    """
    import torch

    path = Path(path)
    name = repr(path.name)
    if not path.is_file():
        raise WeightsFileError(f"{str(path)!r} is not a file; give {what}")
    if path.stat().st_size == 0:
        raise WeightsFileError(f"{name} is empty; give {what}")
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(list(allow)):
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        culprit = found.group(1) if found else _first_foreign_global(path)
        asked = f"asks to run {culprit} when it is read" if culprit else "holds objects that are not weights"
        raise WeightsFileError(f"{name} {asked}, which {what} never does; refused, and nothing ran: give {what}") from None
    except MemoryError:
        raise WeightsFileError(f"{name} claims more memory than this machine has: it is damaged or not {what}") from None
    except OSError as exc:
        raise WeightsFileError(f"cannot read {name}: {exc.strerror or exc}; give {what}") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds on a damaged or truncated file
        raise WeightsFileError(f"{name} is damaged or truncated ({type(exc).__name__}), or is not {what}; download it again") from None


#: Modules whose globals a torch file of weights names (tensors' rebuild functions, storages, containers).
_WEIGHT_MODULES = ("torch", "collections", "numpy", "_codecs", "argparse")


def _first_foreign_global(path: Path) -> str | None:
    """The first ``module.name`` a pickle in ``path`` asks for outside what weights need, read without running it."""
    import pickletools

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                member = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                data = z.read(member) if member else b""
        else:
            data = path.read_bytes()[: 1 << 24]
    except (OSError, zipfile.BadZipFile, KeyError):
        return None
    import io

    stream = io.BytesIO(data)
    strings: list[str] = []
    try:
        while stream.tell() < len(data):  # a legacy torch file is several pickles in a row
            for op, arg, _ in pickletools.genops(stream):
                name = None
                if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                    name = arg.replace(" ", ".")
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    name = f"{strings[-2]}.{strings[-1]}"
                elif isinstance(arg, str):
                    strings.append(arg)
                if name and not name.startswith(_WEIGHT_MODULES):
                    return name
                if op.name == "STOP":
                    break
            else:
                break
    except Exception:  # noqa: BLE001 - a damaged pickle: no name to give
        return None
    return None


def check_state_dict(state: object, expected: dict[str, Any], *, source: str, what: str) -> dict[str, Any]:
    """``state`` checked, strictly, against ``expected`` (a module's ``state_dict()``); one line when it does not fit.

    What must hold: a dict of tensors with exactly ``expected``'s keys (a ``module.`` prefix on every key,
    as ``nn.DataParallel`` saves them, is removed), each of the expected shape, floating point where the
    module's is, and finite. Returns the state with the module's key order and dtypes, ready for
    ``load_state_dict(..., strict=True)``.

    Args:
        source: how the file is named in the errors (``"'G--300.ckpt'"``).
        what: what the file should be (``"the MLP GAN's G--300.ckpt"``).

    Raises:
        WeightsFileError: naming the first key that is missing, extra, misshapen or not finite.

    >>> import torch
    >>> net = torch.nn.Linear(2, 3)
    >>> check_state_dict({"weight": torch.zeros(3, 2)}, net.state_dict(), source="'x.pt'", what="a Linear(2, 3)")
    Traceback (most recent call last):
    ...
    promptgen.core.weights.WeightsFileError: 'x.pt' is not a Linear(2, 3): it lacks 1 of the 2 keys needed ('bias')
    """
    import torch

    if not isinstance(state, dict) or not state:
        raise WeightsFileError(f"{source} does not hold a state dict (it holds {type(state).__name__}); give {what}")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsFileError(f"{source} is not a state dict of tensors (e.g. entry {str(bad[0])[:60]!r}); give {what}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        def examples(keys: list[str]) -> str:
            return ", ".join(repr(k) for k in sorted(keys)[:2]) + (", ..." if len(keys) > 2 else "")

        parts = [f"it lacks {len(missing)} of the {len(expected)} keys needed ({examples(missing)})"] if missing else []
        if unexpected:
            parts.append(f"{'and' if missing else 'it'} has {len(unexpected)} others ({examples(unexpected)})")
        raise WeightsFileError(f"{source} is not {what}: " + " ".join(parts))
    out: dict[str, Any] = {}
    for key, want in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            raise WeightsFileError(f"{source} is not {what}: {key!r} has shape {tuple(got.shape)}, where {tuple(want.shape)} is expected")
        if want.is_floating_point() and not got.is_floating_point():
            raise WeightsFileError(f"{source}: {key!r} holds {got.dtype} values, not floating point; not {what}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise WeightsFileError(f"{source}: {key!r} holds non-finite values; the file is damaged: download it again")
        out[key] = got.to(want.dtype)
    return out
