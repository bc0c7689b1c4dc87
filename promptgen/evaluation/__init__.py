"""Judging prompts: `promptgen eval` (:mod:`.evaluate`), its metrics (:mod:`.metrics`) and `promptgen report` (:mod:`.report`).

``EvalReport`` and ``evaluate_prompt`` load on first use: an energy that needs
only :mod:`.metrics` (de-biasing's KL divergence) does not pull in the whole evaluation.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["EvalReport", "evaluate_prompt"]

if TYPE_CHECKING:
    from promptgen.evaluation.evaluate import EvalReport, evaluate_prompt


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("promptgen.evaluation.evaluate"), name)
    raise AttributeError(f"module 'promptgen.evaluation' has no attribute {name!r}")
