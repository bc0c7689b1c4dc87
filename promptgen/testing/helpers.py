"""Small helpers for tests of promptgen and its plugins: CLI errors, fake installed distributions, a toy generator, offline runs."""

from __future__ import annotations

import contextlib
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch


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


def install_fake_distribution(root: Path, dist: str, version: str, module: str, source: str, entry_name: str) -> None:
    """Write an installed distribution ``dist`` into ``root`` (put ``root`` on ``sys.path``).

    Its package ``module`` holds ``source`` and is registered as entry point
    ``entry_name`` in the ``promptgen`` group, as ``pip install`` would do, so
    plugin discovery finds it like any third-party plugin.
    """
    (root / module).mkdir()
    (root / module / "__init__.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[promptgen]\n{entry_name} = {module}\n")


def toy_generator_entry(name: str = "toy") -> Any:
    """A :class:`~promptgen.core.registry.GeneratorEntry` for tests: 8×8 RGB images from a latent of 4, fixed weights.

    The same weights every time it is built (seed 1), without touching the caller's random state.
    """
    from torch import nn

    from promptgen.core.generators import ModuleGenerator
    from promptgen.plugin import GeneratorEntry, GeneratorInfo

    def build(spec: Any, options: Any, registry: Any) -> ModuleGenerator:
        with torch.random.fork_rng():
            torch.manual_seed(1)
            module = nn.Sequential(nn.Linear(4, 3 * 8 * 8), nn.Sigmoid(), nn.Unflatten(1, (3, 8, 8)))
        return ModuleGenerator(module, (4,), GeneratorInfo(name, (8, 8), 3))

    return GeneratorEntry(name, build)




@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Within: nothing downloads. ``$PROMPTGEN_OFFLINE`` is set, so :func:`promptgen.core.download.fetch`
    returns cached and ``path=`` files but refuses to download; Hugging Face's hub reads its cache only."""
    from promptgen.core.download import OFFLINE_VARIABLE

    hub = sys.modules.get("huggingface_hub.constants")
    hub_before = getattr(hub, "HF_HUB_OFFLINE", None)
    before = {name: os.environ.get(name) for name in (OFFLINE_VARIABLE, "HF_HUB_OFFLINE")}
    os.environ[OFFLINE_VARIABLE] = os.environ["HF_HUB_OFFLINE"] = "1"
    if hub is not None:
        hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        # The hub may have been imported inside the block, reading the variable set above: undo that too.
        hub_now = sys.modules.get("huggingface_hub.constants")
        if hub_now is not None:
            was = before["HF_HUB_OFFLINE"]
            hub_now.HF_HUB_OFFLINE = hub_before if hub is not None else (was or "").strip().lower() in ("1", "true", "yes", "on")


#: Source of a third-party plugin module with a toy ``gender`` classifier (red against blue), for tests of face
#: generators' ``debias:gender`` without FairFace's ResNet-34. Install it with :func:`install_fake_distribution`
#: under an entry point that sorts before ``fairface`` (e.g. ``"a-toy-faces"``), so it is the first that provides
#: ``gender``.
TOY_GENDER_PLUGIN = """
import torch
from promptgen import plugin


class Gender:
    attributes = {"gender": ["Male", "Female"]}

    def log_probs(self, images):
        red_minus_blue = (images[:, 0] - images[:, -1]).mean((1, 2)) * 8
        logsigmoid = torch.nn.functional.logsigmoid
        return {"gender": torch.stack([logsigmoid(-red_minus_blue), logsigmoid(red_minus_blue)], 1)}

    def to(self, device):
        return self


@plugin.hookimpl
def promptgen_attribute_classifiers():
    return [plugin.ClassifierEntry("toy-gender", Gender.attributes, lambda options, registry: Gender(), summary="red against blue")]
"""
