from __future__ import annotations

import json

import pytest

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """Register a tiny open_clip architecture ('promptgen-tiny-clip', random weights, the real tokenizer)."""
    import open_clip

    folder = tmp_path_factory.mktemp("clip-configs")
    (folder / "promptgen-tiny-clip.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder)
    return "promptgen-tiny-clip"
