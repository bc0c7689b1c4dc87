"""Helpers for testing promptgen and its plugins."""

from __future__ import annotations

from typing import Any


def one_line_error(result: Any, *words: str) -> str:
    """Assert that a CLI run (a ``typer.testing.Result``) failed as users should see it.

    Exit code 2, one line starting with ``error:``, no traceback, and each of
    ``words`` in the text. Returns the line.
    """
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    assert text.startswith("error:"), text
    assert len(text.splitlines()) == 1, text
    for w in words:
        assert w in text, (w, text)
    return text
