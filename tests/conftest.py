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
    """After a run that included adversarial tests, print their counts: the command-line catalog's
    (tests/test_adversarial.py, issue 14) and every class's (promptgen.testing.tally, issue 25)."""
    from promptgen.testing import tally

    catalog = sys.modules.get("adversarial")
    results = getattr(catalog, "RESULTS", None)
    if results:
        terminalreporter.write_sep("-", "adversarial catalog (issue 14)")
        terminalreporter.write_line(json.dumps(catalog.summary(results)))
    if tally.ENTRIES:
        terminalreporter.write_sep("-", "adversarial suite by class (issue 25)")
        terminalreporter.write_line(json.dumps(tally.summary()))
