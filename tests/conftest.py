from __future__ import annotations

import json
import sys

import pytest
import torch

from promptgen.core.registry import reset_registry


@pytest.fixture(autouse=True)
def _fresh_registry():
    # Tests that install fake plugins must not leak them into other tests.
    reset_registry()
    yield
    reset_registry()


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


def pytest_terminal_summary(terminalreporter):
    """After a run that included the adversarial catalog (tests/test_adversarial.py), print its counts."""
    catalog = sys.modules.get("adversarial")
    results = getattr(catalog, "RESULTS", None)
    if results:
        terminalreporter.write_sep("-", "adversarial catalog (issue 14)")
        terminalreporter.write_line(json.dumps(catalog.summary(results)))
