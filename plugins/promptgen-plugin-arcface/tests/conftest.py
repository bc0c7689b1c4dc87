from __future__ import annotations

import pytest
from promptgen_plugin_arcface.testing import random_state_dict


@pytest.fixture(scope="session")
def state():
    """A random-weight IR-SE50 state dict with the official keys."""
    return random_state_dict(seed=1)


@pytest.fixture(scope="session")
def weights(tmp_path_factory, state):
    """A format-faithful model_ir_se50.pth: ``torch.save(state_dict)`` of random weights."""
    import torch

    path = tmp_path_factory.mktemp("arcface") / "model_ir_se50.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="session")
def energy(weights):
    from promptgen.core.registry import get_registry

    return get_registry().build_energy(f"arcface-id:path={weights}")

