"""Parsing conditions: training ranges at compose, values and sweeps at sample; every mistake one line."""

from __future__ import annotations

import pytest

from promptgen.core.conditions import ConditionRange, check_names, parse_range, parse_sweep, parse_values
from promptgen.core.errors import SpecError


def test_ranges_values_and_sweeps_parse():
    assert parse_range(" yaw = -0.35 : 0.35 ") == ConditionRange("yaw", -0.35, 0.35)
    assert parse_range("pitch=-1e-1:2").high == 2.0
    assert parse_values("yaw=0.2,pitch=-0.1", ["yaw", "pitch"]) == {"yaw": 0.2, "pitch": -0.1}
    name, values = parse_sweep("yaw=-0.35:0.35:7")
    assert name == "yaw" and len(values) == 7 and values[0] == -0.35 and values[-1] == 0.35 and values[3] == 0.0
    assert parse_sweep("slant=0.5:1:1") == ("slant", [0.5])
    assert ConditionRange("yaw", -1, 1).contains(0.5) and not ConditionRange("yaw", -1, 1).contains(1.5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_range("yaw"), "is not NAME=LOW:HIGH"),
        (lambda: parse_range("yaw=0.35"), "is not NAME=LOW:HIGH"),
        (lambda: parse_range("yaw=1:2:3"), "is not NAME=LOW:HIGH"),
        (lambda: parse_range("yaw=0.3:0.3"), "the range is empty"),
        (lambda: parse_range("yaw=0.5:-0.5"), "the range is empty"),
        (lambda: parse_range("yaw=a:1"), "'a' is not a number"),
        (lambda: parse_range("yaw=-inf:1"), "must be a finite number"),
        (lambda: parse_range("1yaw=0:1"), "is not a condition name"),
        (lambda: check_names([ConditionRange("yaw", 0, 1), ConditionRange("yaw", 0, 2)]), "--cond yaw is given twice"),
        (lambda: parse_values("yw=0.2", ["yaw", "pitch"]), "the prompt has no condition 'yw'; did you mean 'yaw'?"),
        (lambda: parse_values("roll=0.2", ["yaw"]), "the prompt has no condition 'roll'; it was trained with yaw"),
        (lambda: parse_values("yaw", ["yaw"]), "is not NAME=VALUE"),
        (lambda: parse_values("yaw=1,yaw=2", ["yaw"]), "yaw is given twice"),
        (lambda: parse_values("yaw=nan", ["yaw"]), "must be a finite number"),
        (lambda: parse_sweep("yaw=-1:1:0"), "STEPS must be from 1 to 64 (it was 0)"),
        (lambda: parse_sweep("yaw=-1:1:1000"), "STEPS must be from 1 to 64"),
        (lambda: parse_sweep("yaw=-1:1:2.5"), "STEPS '2.5' is not a whole number"),
        (lambda: parse_sweep("yaw=-1:1"), "is not NAME=LOW:HIGH:STEPS"),
    ],
)
def test_each_mistake_is_one_line(call, message):
    with pytest.raises(SpecError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_sweep_over_the_whole_range_is_inside_it_despite_float_rounding():
    """Issue 25: slant=-0.2:0.2 warned that the preview's last value (0.20000000000000004) was outside it."""
    from promptgen.core.conditions import outside, parse_range, parse_sweep

    r = parse_range("slant=-0.2:0.2")
    values = [r.low + (r.high - r.low) * i / 6 for i in range(7)]
    assert values[-1] > r.high  # the rounding the check must forgive
    assert all(r.contains(v) for v in values)
    assert all(outside([r], {"slant": v}) is None for v in parse_sweep("slant=-0.2:0.2:7")[1])
    assert outside([r], {"slant": 0.2001}) is not None and not r.contains(-0.2001)
