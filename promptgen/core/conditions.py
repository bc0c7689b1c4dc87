"""Conditions: named coordinates a conditional prompt takes at sampling time (a pose, a slant, a target age).

At ``compose``, each condition has a training range, drawn uniformly::

    --cond yaw=-0.35:0.35 --cond pitch=-0.35:0.35

or from a normal truncated to the range (mean its middle, standard deviation a
quarter of its width) with ``~normal``; ``@REF`` sets the reference condition
(the twin that identity energies compare with), by default 0, or the end of
the range nearest 0 when 0 is outside it::

    --cond slant=-0.3:0.3~normal@0

At ``sample``, values or a sweep::

    --cond yaw=0.2,pitch=-0.1
    --sweep yaw=-0.35:0.35:7

>>> parse_range("yaw=-0.35:0.35")
ConditionRange(name='yaw', low=-0.35, high=0.35, distribution='uniform', reference=0.0)
>>> parse_range("age=20:60~normal").reference
20.0
>>> parse_values("yaw=0.2, pitch=-0.1", ["yaw", "pitch"])
{'yaw': 0.2, 'pitch': -0.1}
>>> parse_sweep("yaw=-0.3:0.3:3")
('yaw', [-0.3, 0.0, 0.3])
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from promptgen.core.errors import SpecError, closest

__all__ = [
    "DISTRIBUTIONS",
    "ConditionRange",
    "ConditionWarning",
    "check_names",
    "condition_tensor",
    "draw_conditions",
    "outside",
    "parse_range",
    "parse_sweep",
    "parse_values",
]

#: How a condition may be drawn during training.
DISTRIBUTIONS = ("uniform", "normal")
Distribution = Literal["uniform", "normal"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Most values a sweep may take (columns of a grid).
MAX_SWEEP = 64
#: Largest magnitude of a condition's value: conditions are float32 inputs of the flow.
MAX_VALUE = 1e6


class ConditionWarning(UserWarning):
    """A condition asked for outside the range the prompt was trained on."""


@dataclass(frozen=True)
class ConditionRange:
    """A condition's name, the range it is trained on, how it is drawn there, and its reference value.

    ``reference`` (the condition of the twin that identity energies compare
    with) defaults to 0 clipped into the range.
    """

    name: str
    low: float
    high: float
    distribution: Distribution = "uniform"
    reference: float = field(default=math.nan)

    def __post_init__(self) -> None:
        if math.isnan(self.reference):
            object.__setattr__(self, "reference", min(max(0.0, float(self.low)), float(self.high)))

    def contains(self, value: float) -> bool:
        """Inside the training range, up to float rounding (``-0.2 + 0.4 * 6 / 6`` is 0.2, not 0.20000000000000004)."""
        slack = 1e-9 * max(1.0, abs(self.low), abs(self.high))
        return self.low - slack <= value <= self.high + slack

    def draw(self, u: torch.Tensor) -> torch.Tensor:
        """Values of this condition from uniform numbers ``u`` in [0, 1): its training distribution."""
        if self.distribution == "uniform":
            return self.low + (self.high - self.low) * u
        # A normal truncated at ±2 standard deviations, by the inverse of its distribution function.
        mid, sd = (self.low + self.high) / 2, (self.high - self.low) / 4
        a, b = torch.special.ndtr(torch.tensor(-2.0, dtype=torch.float64)), torch.special.ndtr(torch.tensor(2.0, dtype=torch.float64))
        p = a + u.double() * (b - a)
        return (mid + sd * torch.special.ndtri(p)).to(u.dtype).clamp(self.low, self.high)


def draw_conditions(ranges: Sequence[ConditionRange], n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, C) conditions from their training distributions, drawn on the CPU from ``generator``."""
    u = torch.rand((n, len(ranges)), generator=generator)
    return torch.stack([r.draw(u[:, i]) for i, r in enumerate(ranges)], 1) if ranges else u


def condition_tensor(ranges: Sequence[ConditionRange], values: Mapping[str, float], n: int) -> torch.Tensor:
    """(n, C): ``values`` for the conditions it names, each other condition at its reference."""
    row = [float(values.get(r.name, r.reference)) for r in ranges]
    return torch.tensor(row, dtype=torch.float32).expand(n, len(ranges)).clone()


def outside(ranges: Sequence[ConditionRange], values: Mapping[str, float]) -> str | None:
    """A one-line warning naming each value outside its training range, or None."""
    by_name = {r.name: r for r in ranges}
    far = [f"{n}={v:g} (trained on {by_name[n].low:g}:{by_name[n].high:g})" for n, v in values.items() if n in by_name and not by_name[n].contains(v)]
    if not far:
        return None
    return f"{', '.join(far)} outside the training range: the prompt extrapolates there and may not follow the condition"


def _number(text: str, what: str, example: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SpecError(f"{what}: {text.strip()!r} is not a number; e.g. {example}") from None
    if not math.isfinite(value):
        raise SpecError(f"{what}: {text.strip()!r} must be a finite number; e.g. {example}")
    if abs(value) > MAX_VALUE:
        raise SpecError(f"{what}: {text.strip()!r} is beyond ±{MAX_VALUE:g}, the largest condition value; e.g. {example}")
    return value


def _name(text: str, what: str, example: str) -> str:
    name = text.strip()
    if not _NAME.match(name):
        raise SpecError(f"{what}: {name!r} is not a condition name (letters, digits and _); e.g. {example}")
    return name


def parse_range(text: str) -> ConditionRange:
    """``NAME=LOW:HIGH[~DISTRIBUTION][@REFERENCE]`` (``--cond`` at compose): a training range, LOW < HIGH."""
    example = "--cond yaw=-0.35:0.35"
    what = f"--cond {text!r}"
    name, eq, rest = text.partition("=")
    rest, at, reference_text = rest.partition("@")
    rest, tilde, distribution = rest.partition("~")
    if not eq or rest.count(":") != 1:
        raise SpecError(f"{what} is not NAME=LOW:HIGH; e.g. {example}")
    low_text, high_text = rest.split(":")
    name = _name(name, what, example)
    low, high = _number(low_text, what, example), _number(high_text, what, example)
    if not low < high:
        raise SpecError(f"{what}: the range is empty (LOW must be below HIGH); e.g. {example}")
    distribution = distribution.strip() if tilde else "uniform"
    if distribution not in DISTRIBUTIONS:
        raise SpecError(f"{what}: unknown distribution {distribution!r}; give {' or '.join(DISTRIBUTIONS)}, e.g. {name}={low:g}:{high:g}~normal")
    reference = math.nan
    if at:
        reference = _number(reference_text, what, f"{name}={low:g}:{high:g}@{(low + high) / 2:g}")
        if not low <= reference <= high:
            raise SpecError(f"{what}: the reference {reference:g} is outside the range {low:g}:{high:g}; give one inside it")
    return ConditionRange(name, low, high, distribution, reference)  # type: ignore[arg-type]


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
