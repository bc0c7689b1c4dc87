from __future__ import annotations

from pathlib import Path

import pytest
import torch
from promptgen_plugin_fairface.testing import random_fairface_state_dict

from promptgen.core.registry import reset_registry


@pytest.fixture(autouse=True)
def _fresh_registry():
    # promptgen builds its registry once per process; start every test from a clean one.
    reset_registry()
    yield
    reset_registry()


@pytest.fixture(autouse=True)
def _no_real_cache(tmp_path, monkeypatch):
    # Never read or fill the user's real cache (nor download 85 MB) from a test.
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path / "promptgen-home"))


@pytest.fixture(scope="session")
def make_state_dict():
    """``make_state_dict(seed=0)``: a random FairFace state dict (``promptgen_plugin_fairface.testing``)."""
    return random_fairface_state_dict


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory) -> Path:
    """A file made exactly like the released one: ``torch.save(model.state_dict(), path)``, random weights."""
    path = tmp_path_factory.mktemp("fairface") / "res34_fair_align_multi_7_20190809.pt"
    torch.save(random_fairface_state_dict(), path)
    return path
