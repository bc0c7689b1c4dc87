from __future__ import annotations

import subprocess
import sys

import pytest

from promptgen.testing import reset_registry


@pytest.fixture(autouse=True)
def _fresh_registry():
    # promptgen builds its registry once per process; start every test from a clean one.
    reset_registry()
    yield
    reset_registry()


@pytest.fixture(scope="session")
def run_promptgen():
    """Run the real ``promptgen`` command of this interpreter in a new process, as a user would."""

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "promptgen", *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    return run
