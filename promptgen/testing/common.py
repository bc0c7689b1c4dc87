"""What the conformance checks share: failing in one line, seeding, devices, gradients, building, and bad option values."""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NoReturn

import torch

# -- the conformance kit ------------------------------------------------------------------------------------
#
# Every check builds an entry the way promptgen does (through the registry, from a spec string), exercises
# what the core relies on, and raises AssertionError with one line naming the entry and what failed, so it
# works inside any plugin's pytest. Everything runs on batches of 2 and nothing trains.

#: The devices the checks move to when they are available (the CPU always is; the others are skipped without them).
DEFAULT_DEVICES: tuple[str, ...] = ("cpu", "cuda")

#: The option name the checks give to see an unknown option refused.
BOGUS_OPTION = "no_such_option"

#: Entries :func:`check_registered` skips unless the caller gives them a spec (``specs={"generator:prompt": ...}``).
SKIPPED_BY_DEFAULT: dict[str, str] = {
    "generator:prompt": "needs a prompt folder trained by `promptgen compose`; "
    "check one with specs={'generator:prompt': 'prompt:FOLDER'}",
}

_NEEDS_FILES = re.compile(r"download|offline|\bpath\b|path=|\bcache\b|not a file|no such file", re.IGNORECASE)

Kind = Literal["generator", "energy", "classifier"]


def _fail(who: str, what: str) -> NoReturn:
    raise AssertionError(_one_line(f"{who}: {what}"))


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _exc(exc: BaseException) -> str:
    text = _one_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _devices(devices: Sequence[str | torch.device]) -> list[torch.device]:
    """The devices of ``devices`` this machine has, the CPU first (always)."""
    from promptgen.core.device import _available

    out = [torch.device("cpu")]
    for d in devices:
        device = torch.device(d)
        if device.type == "meta":
            raise ValueError("promptgen does not run on the meta device (it holds no numbers); give real devices")
        if _available(device.type) and not any(_same_device(device, o) for o in out):
            out.append(device)
    return out


def _same_device(a: torch.device, b: torch.device) -> bool:
    a, b = torch.device(a), torch.device(b)
    if a.type != b.type:
        return False
    if a.type == "cuda":  # cuda and cuda:0 are the same device when cuda means the current one, 0
        return (a.index or 0) == (b.index or 0)
    return a.index is None or b.index is None or a.index == b.index


def _seeded(seed: int, fn: Callable[[], Any]) -> Any:
    """``fn()`` with torch's global RNG seeded, the caller's RNG state restored afterwards."""
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        return fn()


def _gaussian(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> str:
    if a.shape != b.shape:
        return f"shapes {tuple(a.shape)} and {tuple(b.shape)}"
    return f"{float((a.detach().double().cpu() - b.detach().double().cpu()).abs().max()):.3g}"


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=atol, rtol=rtol))


def _module_tensors(obj: Any, depth: int = 3, seen: set[int] | None = None) -> list[tuple[str, torch.Tensor]]:
    """The parameters and buffers of the torch modules ``obj`` holds (looking a few attributes deep)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth < 0:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.nn.Module):
        return [*obj.named_parameters(), *obj.named_buffers()]
    if (
        isinstance(obj, (str, bytes, int, float, bool, torch.Tensor, type))
        or callable(obj)
        and not hasattr(obj, "__dict__")
    ):
        return []
    if isinstance(obj, Mapping):
        values = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        values = list(obj)
    else:
        values = list(getattr(obj, "__dict__", {}).values())
    out: list[tuple[str, torch.Tensor]] = []
    for value in values:
        out += _module_tensors(value, depth - 1, seen)
    return out


def _grad_ok(who: str, what: str, grad: torch.Tensor | None, how: str, zero_ok: bool = False) -> None:
    if grad is None:
        _fail(
            who,
            f"no gradient reaches {what} ({how} left it None): it must be differentiable, not computed under torch.no_grad() or .detach()",
        )
    if not bool(torch.isfinite(grad).all()):
        _fail(who, f"the gradient that reaches {what} is not finite (NaN or inf)")
    if not zero_ok and not bool((grad != 0).any()):
        _fail(
            who,
            f"the gradient that reaches {what} is all zero: nothing flows back (a .detach(), a hard threshold or a rounding?)",
        )


def _backward(who: str, what: str, out: torch.Tensor) -> None:
    if not out.requires_grad:
        _fail(
            who,
            f"no gradient reaches {what}: the output does not require grad (computed under torch.no_grad() or .detach()?)",
        )
    try:
        out.backward()
    except Exception as exc:  # noqa: BLE001 - a plugin's backward that fails
        _fail(who, f"no gradient reaches {what}: backward() raised {_exc(exc)}")


def _build(who: str, build: Callable[[], Any]) -> Any:
    """``build()``; a PromptgenError (e.g. a download that cannot happen offline) propagates unchanged, anything else is a failure."""
    from promptgen.core.errors import PromptgenError

    try:
        return build()
    except PromptgenError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's build that crashes
        _fail(
            who,
            f"building raised {_exc(exc)}; a build that cannot go on must raise a one-line promptgen PromptgenError",
        )


def _rebuild(who: str, what: str, build: Callable[[], Any]) -> Any:
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - everything is a failure once the first build worked
        _fail(who, f"{what}: building raised {_exc(exc)}")


def _with_option(spec: Any, key: str, value: str) -> str:
    """``spec`` (a parsed Spec) with ``key=value`` instead of any ``key`` it had, as text."""
    from promptgen.core.spec import Arg, Piece, Spec

    args = tuple(a for a in spec.args if a.key != key) + (Arg((Piece(value),), key),)
    return Spec(spec.name, args, spec.weight).format()


def _number_text(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def bad_option_values(model: type[Any]) -> list[tuple[str, str, str]]:
    """For each option of ``model`` with a numeric range or Literal choices, values outside it.

    Returns ``(option, value, why)`` triples: one below each lower bound and one
    above each upper bound (``ge``/``gt``/``le``/``lt``), and one that is not a
    choice of a ``Literal``; options without such constraints give none.

    >>> from promptgen.core.options import Options, option
    >>> class Toy(Options):
    ...     psi: float = option(1.0, ge=0, le=1, help="truncation")
    ...     steps: int | None = option(None, gt=2, help="steps")
    ...     mode: Literal["a", "b"] = option("a", help="mode")
    ...     path: str | None = option(None, help="a file")
    >>> bad_option_values(Toy)
    [('psi', '-1', 'below its minimum 0'), ('psi', '2', 'above its maximum 1'), ('steps', '2', 'not above 2'), ('mode', 'not-a-choice', 'not one of its choices')]
    """
    import annotated_types

    from promptgen.core.options import _plain

    out: list[tuple[str, str, str]] = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        annotation = _plain(info.annotation)
        if typing.get_origin(annotation) is Literal:
            choices = {str(c) for c in typing.get_args(annotation)}
            value = "not-a-choice"
            while value in choices:
                value += "-really"
            out.append((key, value, "not one of its choices"))
            continue
        if annotation not in (int, float):
            continue
        whole = annotation is int
        for m in info.metadata:
            for attr, cls in (
                ("ge", annotated_types.Ge),
                ("gt", annotated_types.Gt),
                ("le", annotated_types.Le),
                ("lt", annotated_types.Lt),
            ):
                if not isinstance(m, cls):
                    continue
                bound = getattr(m, attr)
                if not isinstance(bound, (int, float)) or not math.isfinite(bound):
                    continue
                if attr == "ge":
                    value = math.ceil(bound) - 1 if whole else bound - max(1.0, abs(bound))
                    why = f"below its minimum {_number_text(bound)}"
                elif attr == "gt":
                    value = math.floor(bound) if whole else bound
                    why = f"not above {_number_text(bound)}"
                elif attr == "le":
                    value = math.floor(bound) + 1 if whole else bound + max(1.0, abs(bound))
                    why = f"above its maximum {_number_text(bound)}"
                else:
                    value = math.ceil(bound) if whole else bound
                    why = f"not below {_number_text(bound)}"
                out.append((key, _number_text(value), why))
    return out


def _refused(who: str, given: str, key: str, why: str, build: Callable[[], Any]) -> None:
    """``build()`` must raise a one-line PromptgenError naming ``key``."""
    from promptgen.core.errors import PromptgenError

    try:
        build()
    except PromptgenError as exc:
        text = str(exc)
        if len(text.splitlines()) != 1 or not text.strip():
            _fail(who, f"{given} ({why}) is refused, but not in one line: {text!r}")
        if key not in text:
            _fail(who, f"{given} ({why}) is refused with a message that does not name option {key!r}: {text!r}")
        return
    except Exception as exc:  # noqa: BLE001 - a plugin that crashes instead of refusing
        _fail(who, f"{given} ({why}) raised {_exc(exc)} instead of a one-line SpecError naming {key!r}")
    if key == BOGUS_OPTION:
        _fail(
            who,
            f"{given} ({why}) was accepted silently; declare the entry's options as a promptgen.plugin.Options model "
            "(the core then refuses unknown ones in one line), or refuse unknown keys in build with a SpecError",
        )
    _fail(who, f"{given} ({why}) was accepted silently; declare the range or the choices in the entry's Options model")


def _check_spec_options(who: str, spec: Any, model: type[Any], build: Callable[[str], Any], *, unknown: bool) -> None:
    """A bogus option (if ``unknown``) and each out-of-range or not-a-choice value of ``model`` are refused in one line."""
    if unknown:
        text = _with_option(spec, BOGUS_OPTION, "1")
        _refused(who, repr(text), BOGUS_OPTION, "an unknown option", lambda: build(text))
    for key, value, why in bad_option_values(model):
        text = _with_option(spec, key, value)
        _refused(who, repr(text), key, f"{key}={value} is {why}", lambda text=text: build(text))


def _round_trip(who: str, spec: str) -> str:
    """The canonical text of ``spec``, which must parse back to the same Spec."""
    from promptgen.core.errors import SpecError
    from promptgen.core.spec import parse_spec

    parsed = parse_spec(spec)
    text = parsed.format()
    try:
        again = parse_spec(text)
    except SpecError as exc:
        _fail(who, f"the spec's canonical text {text!r} does not parse: {exc}")
    if again != parsed:
        _fail(who, f"the spec's canonical text {text!r} parses to {again!r}, not {parsed!r}")
    return text


def _entry_model(who: str, lookup: Callable[[], Any]) -> Any:
    try:
        return lookup()
    except Exception as exc:  # noqa: BLE001
        _fail(who, f"no entry: {_exc(exc)}")


