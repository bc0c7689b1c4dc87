from __future__ import annotations

import pytest
from promptgen_plugin_deca.testing import write_deca_model


@pytest.fixture(scope="session")
def deca_tar(tmp_path_factory):
    """A random-weight deca_model.tar in DECA's format (E_flame real-sized; E_detail, D_detail stand-ins)."""
    return write_deca_model(tmp_path_factory.mktemp("deca") / "deca_model.tar", seed=0)


@pytest.fixture(scope="session")
def energy(deca_tar):
    from promptgen.core.registry import build_registry

    return build_registry().build_energy(f"deca-pose:path={deca_tar}")
