from __future__ import annotations

import pytest
from promptgen_plugin_biggan.testing import write_model


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A random-weight 32 px BigGAN-deep folder (config.json + pytorch_model.bin)."""
    return write_model(tmp_path_factory.mktemp("biggan") / "tiny", seed=1)
