"""Reading training checkpoints (``checkpoint.pt``) without running code from them.

:func:`promptgen.training.trainer.save_checkpoint` writes the training state with
``torch.save``: a pickle. Unpickling an arbitrary pickle runs whatever code it
names, so a checkpoint from someone else is read only with
``torch.load(weights_only=True)``, whose unpickler builds tensors, numbers,
strings, lists and dicts and refuses every other global. What it returns is
then checked key by key, so ``--resume`` never meets a wrong type deep inside
the trainer. Every problem is an :class:`~promptgen.core.errors.ArtifactError` of
one line.

>>> import tempfile, torch
>>> path = Path(tempfile.mkdtemp()) / "checkpoint.pt"
>>> torch.save({"flow": {"w": torch.zeros(2)}, "optimizer": {"state": {}, "param_groups": []}, "step": 3}, path)
>>> load_checkpoint(path)["step"]
3
"""

from __future__ import annotations

import math
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from promptgen.core.errors import ArtifactError, one_line
from promptgen.training.watch import MAX_REALISM_FACTOR

FORMAT = "promptgen-checkpoint"
VERSION = 1

_HINT = "the checkpoint is damaged; start the run again without --resume"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_str_floats(v: Any) -> bool:
    return isinstance(v, Mapping) and all(isinstance(k, str) and _is_number(x) for k, x in v.items())


def _is_records(v: Any) -> bool:
    """A list of {name: number} rows (history, adaptations)."""
    return isinstance(v, list) and all(_is_str_floats(row) for row in v)


def _is_tensor_dict(v: Any) -> bool:
    return isinstance(v, Mapping) and all(isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items())


def _is_energy_states(v: Any) -> bool:
    """{label: {name: [numbers]}} as :func:`promptgen.training.trainer.energy_states` writes it."""
    return isinstance(v, Mapping) and all(
        isinstance(label, str)
        and isinstance(state, Mapping)
        and all(isinstance(k, str) and isinstance(xs, list) and all(_is_number(x) for x in xs) for k, xs in state.items())
        for label, state in v.items()
    )


def _is_optimizer(v: Any) -> bool:
    """What ``torch.optim.Optimizer.state_dict()`` returns."""
    return (
        isinstance(v, Mapping)
        and isinstance(v.get("state"), Mapping)
        and all(isinstance(s, Mapping) for s in v["state"].values())
        and isinstance(v.get("param_groups"), list)
        and all(
            isinstance(g, Mapping) and isinstance(g.get("params"), list) and all(_is_int(p) for p in g["params"])
            for g in v["param_groups"]
        )
    )


def _is_rng_state(v: Any) -> bool:
    return isinstance(v, torch.Tensor) and v.dtype == torch.uint8 and v.dim() == 1


# key -> (check, what it must be). Required keys first; the rest are checked when present.
def _is_reading(v: Any) -> bool:
    from pydantic import ValidationError

    from promptgen.training.watch import Reading

    try:
        Reading.model_validate(v)
    except (ValidationError, TypeError, ValueError):
        return False
    return True


REQUIRED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "flow": (lambda v: _is_tensor_dict(v) and len(v) > 0, "a non-empty dict of tensors (the flow's state_dict)"),
    "optimizer": (_is_optimizer, "an optimiser state_dict with 'state' and 'param_groups'"),
    "step": (lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
}
OPTIONAL: dict[str, tuple[Callable[[Any], bool], str]] = {
    "format": (lambda v: v == FORMAT, f"{FORMAT!r}"),
    "version": (lambda v: _is_int(v) and v >= 1, "a whole number >= 1"),
    "scheduler": (lambda v: isinstance(v, Mapping), "a learning-rate scheduler state_dict"),
    "generator": (_is_rng_state, "a random generator state (uint8 tensor)"),
    "torch_rng": (_is_rng_state, "a random generator state (uint8 tensor)"),
    "energies": (_is_energy_states, "{energy label: {name: [numbers]}}"),
    "fits": (lambda v: isinstance(v, Mapping) and all(isinstance(k, str) and _is_str_floats(x) for k, x in v.items()),
             "{energy label: {name: number}}"),
    "history": (_is_records, "a list of {name: number}"),
    "adaptations": (_is_records, "a list of {name: number}"),
    "eval_eps": (lambda v: isinstance(v, torch.Tensor) and v.is_floating_point(), "a float tensor"),
    "conditions": (lambda v: isinstance(v, list) and all(isinstance(c, list) and len(c) == 5 for c in v),
                   "a list of [name, low, high, distribution, reference]"),
    "eval_condition": (lambda v: v is None or (isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim() == 2),
                       "None or a (batch, conditions) float tensor"),
    "bank": (lambda v: v is None or (_is_tensor_dict(v) and {"latents", "log_weights"} <= set(v)),
             "None or {'latents', 'log_weights'} tensors"),
    "skipped": (lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
    "rollbacks": (lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
    "resumed_at": (lambda v: isinstance(v, list) and all(_is_int(x) for x in v), "a list of whole numbers"),
    "seconds": (lambda v: _is_number(v) and math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "readings": (lambda v: isinstance(v, list) and all(_is_reading(r) for r in v), "a list of the watch's readings"),
    "best": (lambda v: v is None or (isinstance(v, Mapping) and _is_int(v.get("step")) and _is_number(v.get("score"))
                                    and _is_tensor_dict(v.get("flow"))), "None or {'step', 'score', 'flow'}"),
    "backoff": (lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "realism_factor": (lambda v: _is_number(v) and 1 <= v <= MAX_REALISM_FACTOR, f"a number in [1, {MAX_REALISM_FACTOR:g}]"),
    "checkpoint_seconds": (lambda v: _is_number(v) and math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "config": (lambda v: isinstance(v, Mapping) and all(isinstance(k, str) for k in v), "a dict of training settings"),
}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint written by :func:`promptgen.training.trainer.save_checkpoint`, safely.

    Returns the checkpoint's dict (tensors on the CPU) with at least ``flow``
    (the flow's state_dict, every float finite), ``optimizer`` (an optimiser
    state_dict) and ``step`` (an int >= 0); the other keys the trainer writes
    are type-checked when present and returned as they are.

    Raises:
        ArtifactError: one line for a missing file, a truncated or corrupt one,
            a pickle that asks for anything but tensors and plain data (refused
            before it can run), a newer checkpoint format, or wrong keys/types.
    """
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"checkpoint {str(path)!r} does not exist; start the run again without --resume")
    if not path.is_file():  # a folder, a FIFO or a device would block or fail inside torch.load
        raise ArtifactError(f"checkpoint {str(path)!r} is not a regular file; give the checkpoint.pt a run wrote")
    _check_zip(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "detected pickle protocol 4": the error below says it all
            state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - a damaged or hostile file fails in many ways; each gets one line
        raise _load_error(path, exc) from None
    check_checkpoint(state, str(path))
    return state


def _check_zip(path: Path) -> None:
    """Verify the CRC-32 of every part of a zip-format checkpoint (torch.save's format).

    torch.load does not: flipped bytes inside a tensor load silently as other numbers.
    """
    try:
        if not zipfile.is_zipfile(path):
            return  # the legacy format, or not a checkpoint at all: torch.load says which
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except PermissionError as exc:
        raise ArtifactError(f"cannot read checkpoint {str(path)!r}: {exc.strerror}; check the file's permissions") from None
    except Exception as exc:  # noqa: BLE001 - zipfile fails in many ways on a damaged file
        raise ArtifactError(f"checkpoint {str(path)!r} is truncated or corrupt ({type(exc).__name__}: {one_line(str(exc))[:120]}); {_HINT}") from None
    if bad is not None:
        raise ArtifactError(f"checkpoint {str(path)!r} is corrupt: its part {bad[:80]!r} fails its checksum; {_HINT}")


def _load_error(path: Path, exc: Exception) -> ArtifactError:
    text = str(exc)
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if refused:
        return ArtifactError(
            f"checkpoint {str(path)!r} asks to load {refused.group(1)!r}, which is not a tensor or plain data; refused "
            "without running it (promptgen checkpoints hold only tensors and numbers): use a checkpoint promptgen wrote"
        )
    if isinstance(exc, PermissionError):
        return ArtifactError(f"cannot read checkpoint {str(path)!r}: {exc.strerror}; check the file's permissions")
    first = one_line(text.split(". ")[0])[:200] or type(exc).__name__
    return ArtifactError(f"checkpoint {str(path)!r} is truncated or corrupt ({type(exc).__name__}: {first}); {_HINT}")


def check_checkpoint(state: Any, where: str = "checkpoint") -> None:
    """Raise a one-line :class:`ArtifactError` unless ``state`` has the keys and types of a training checkpoint."""
    if not isinstance(state, dict):
        raise ArtifactError(f"{where!r} holds a {type(state).__name__}, not a promptgen training checkpoint; {_HINT}")
    version = state.get("version")
    if _is_int(version) and version > VERSION:
        raise ArtifactError(
            f"{where!r} is checkpoint format {version}; this promptgen reads up to format {VERSION}: "
            "upgrade with `pip install -U promptgen-core`"
        )
    for key, (ok, what) in REQUIRED.items():
        if key not in state:
            raise ArtifactError(f"{where!r} has no {key!r}; a promptgen checkpoint has {', '.join(REQUIRED)}; {_HINT}")
        if not ok(state[key]):
            raise ArtifactError(f"{where!r}: {key!r} is {describe(state[key])}, not {what}; {_HINT}")
    for key, (ok, what) in OPTIONAL.items():
        if key in state and not ok(state[key]):
            raise ArtifactError(f"{where!r}: {key!r} is {describe(state[key])}, not {what}; {_HINT}")
    check_finite(state["flow"], f"{where} flow")
    for i, s in state["optimizer"]["state"].items():
        check_finite({f"{i}.{k}": v for k, v in s.items() if isinstance(v, torch.Tensor)}, f"{where} optimizer")


def check_finite(tensors: Mapping[str, torch.Tensor], where: str) -> None:
    """Raise a one-line :class:`ArtifactError` if a float tensor holds NaN or an infinity."""
    for k, v in tensors.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise ArtifactError(f"{where!r}: {k} holds NaN or infinite values; the file is damaged or training diverged")


def check_shapes(found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]], where: str, hint: str) -> None:
    """Check that ``found`` names exactly the tensors of ``expected``, each with its shape."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        raise ArtifactError(
            f"{where!r} does not match the flow it should hold: missing {_names(missing)}, unexpected {_names(extra)}; {hint}"
        )
    for k, want in expected.items():
        if tuple(found[k]) != tuple(want):
            raise ArtifactError(f"{where!r}: {_names([k])} has shape {tuple(found[k])}, the flow needs {tuple(want)}; {hint}")


def check_tensors(
    found: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], where: str, hint: str
) -> None:
    """Check that ``found`` has exactly the keys, shapes and dtypes of ``expected`` (e.g. a module's state_dict).

    Tensors that are not floats (a flow's coupling masks) must also hold the
    same values: they are fixed by the configuration, not learnt. Float
    tensors must be finite.
    """
    check_shapes({k: tuple(v.shape) for k, v in found.items()}, {k: tuple(v.shape) for k, v in expected.items()}, where, hint)
    for k, want in expected.items():
        got = found[k]
        if got.dtype != want.dtype:
            raise ArtifactError(f"{where!r}: {_names([k])} is {got.dtype}, the flow needs {want.dtype}; {hint}")
        if not want.is_floating_point() and not torch.equal(got, want.to(got.device)):
            raise ArtifactError(f"{where!r}: {_names([k])} differs from the flow's fixed value; {hint}")
    check_finite(found, where)


def _names(keys: list[str]) -> str:
    shown = ", ".join(repr(k[:80]) for k in keys[:2])
    more = f" and {len(keys) - 2} more" if len(keys) > 2 else ""
    return f"[{shown}{more}]"


def describe(v: Any) -> str:
    """A value from a file, shown briefly in an error: a tensor's dtype and shape, a number, or its type."""
    if isinstance(v, torch.Tensor):
        return f"a {v.dtype} tensor of shape {tuple(v.shape)}"
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    if isinstance(v, (int, float, bool)) or v is None:
        return repr(v)
    return f"a {type(v).__name__}"
