"""Judging prompts: `promptgen eval` (:mod:`.evaluate`), its metrics (:mod:`.metrics`) and `promptgen report` (:mod:`.report`)."""

from promptgen.evaluation.evaluate import EvalReport, evaluate_prompt

__all__ = ["EvalReport", "evaluate_prompt"]
