"""Conditions: named coordinates a conditional prompt takes at sampling time (a pose, a slant, a target age).

At ``compose``, each condition has a training range, drawn uniformly::

    --cond yaw=-0.35:0.35 --cond pitch=-0.35:0.35

At ``sample``, values or a sweep::

    --cond yaw=0.2,pitch=-0.1
    --sweep yaw=-0.35:0.35:7

>>> parse_range("yaw=-0.35:0.35")
ConditionRange(name='yaw', low=-0.35, high=0.35)
>>> parse_values("yaw=0.2, pitch=-0.1", ["yaw", "pitch"])
{'yaw': 0.2, 'pitch': -0.1}
>>> parse_sweep("yaw=-0.3:0.3:3")
('yaw', [-0.3, 0.0, 0.3])
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from promptgen.core.errors import SpecError, closest

__all__ = ["ConditionRange", "check_names", "parse_range", "parse_sweep", "parse_values"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Most values a sweep may take (columns of a grid).
MAX_SWEEP = 64


@dataclass(frozen=True)
class ConditionRange:
    """A condition's name and the range it was trained on (drawn uniformly)."""

    name: str
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def _number(text: str, what: str, example: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SpecError(f"{what}: {text.strip()!r} is not a number; e.g. {example}") from None
    if not math.isfinite(value):
        raise SpecError(f"{what}: {text.strip()!r} must be a finite number; e.g. {example}")
    return value


def _name(text: str, what: str, example: str) -> str:
    name = text.strip()
    if not _NAME.match(name):
        raise SpecError(f"{what}: {name!r} is not a condition name (letters, digits and _); e.g. {example}")
    return name


def parse_range(text: str) -> ConditionRange:
    """``NAME=LOW:HIGH`` (``--cond`` at compose): a training range, LOW < HIGH."""
    example = "--cond yaw=-0.35:0.35"
    what = f"--cond {text!r}"
    name, eq, rest = text.partition("=")
    if not eq or rest.count(":") != 1:
        raise SpecError(f"{what} is not NAME=LOW:HIGH; e.g. {example}")
    low_text, high_text = rest.split(":")
    name = _name(name, what, example)
    low, high = _number(low_text, what, example), _number(high_text, what, example)
    if not low < high:
        raise SpecError(f"{what}: the range is empty (LOW must be below HIGH); e.g. {example}")
    return ConditionRange(name, low, high)


def check_names(ranges: Sequence[ConditionRange]) -> list[ConditionRange]:
    """``ranges``, refusing a name given twice."""
    seen: set[str] = set()
    for r in ranges:
        if r.name in seen:
            raise SpecError(f"--cond {r.name} is given twice; give each condition once")
        seen.add(r.name)
    return list(ranges)


def parse_values(text: str, known: Sequence[str]) -> dict[str, float]:
    """``NAME=VALUE[,NAME=VALUE...]`` (``--cond`` at sample) for a prompt trained with conditions ``known``."""
    example = ",".join(f"{n}=0" for n in known) or "yaw=0.2"
    out: dict[str, float] = {}
    for part in text.split(","):
        what = f"--cond {text!r}"
        name, eq, value = part.partition("=")
        if not eq:
            raise SpecError(f"{what}: {part.strip()!r} is not NAME=VALUE; e.g. --cond {example}")
        name = _name(name, what, example)
        if name not in known:
            near = closest(name, known)
            hint = f"did you mean {near[0]!r}?" if near else f"it was trained with {', '.join(known) or 'no conditions'}"
            raise SpecError(f"{what}: the prompt has no condition {name!r}; {hint}")
        if name in out:
            raise SpecError(f"{what}: {name} is given twice; give it once")
        out[name] = _number(value, what, f"--cond {example}")
    return out


def parse_sweep(text: str) -> tuple[str, list[float]]:
    """``NAME=LOW:HIGH:STEPS`` (``--sweep`` at sample): STEPS evenly spaced values, ends included."""
    example = "--sweep yaw=-0.35:0.35:7"
    what = f"--sweep {text!r}"
    name, eq, rest = text.partition("=")
    if not eq or rest.count(":") != 2:
        raise SpecError(f"{what} is not NAME=LOW:HIGH:STEPS; e.g. {example}")
    low_text, high_text, steps_text = rest.split(":")
    name = _name(name, what, example)
    low, high = _number(low_text, what, example), _number(high_text, what, example)
    try:
        steps = int(steps_text)
    except ValueError:
        raise SpecError(f"{what}: STEPS {steps_text.strip()!r} is not a whole number; e.g. {example}") from None
    if not 1 <= steps <= MAX_SWEEP:
        raise SpecError(f"{what}: STEPS must be from 1 to {MAX_SWEEP} (it was {steps}); e.g. {example}")
    if steps == 1:
        return name, [low]
    values = [low + (high - low) * i / (steps - 1) for i in range(steps)]
    return name, [round(v, 12) + 0.0 for v in values]
