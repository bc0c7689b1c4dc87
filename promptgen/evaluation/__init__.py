"""Judging prompts: `promptgen eval` (:mod:`.evaluate`) and `promptgen report` (:mod:`.report`).

``EvalReport`` and ``evaluate_prompt`` load on first use. The numbers themselves (KL divergence, Fréchet
distance...) are in :mod:`promptgen.core.metrics`, where training and the energies use them too.
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
