from __future__ import annotations

import pytest
import torch

from promptgen.registry import reset_registry


@pytest.fixture(autouse=True)
def _fresh_registry():
    # Tests that install fake plugins must not leak them into other tests.
    reset_registry()
    yield
    reset_registry()


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
