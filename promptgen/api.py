"""The Python API; each function mirrors a CLI command."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from promptgen.artifact import PromptManifest, read_manifest
from promptgen.compose import compose
from promptgen.device import resolve_device
from promptgen.prompt import Prompt, build_generator, load_prompt, sample_images
from promptgen.protocols import Generator
from promptgen.registry import PluginRecord, get_registry


def sample(source: str | Path | Generator, n: int = 64, seed: int = 0, device: str = "auto") -> Tensor:
    """``n`` images from a prompt folder, a :class:`Prompt`, a generator, or a generator spec.

    A string is taken as a prompt folder if it exists or contains a ``/``,
    else as a generator spec (``"mnist"``).

    Returns:
        (n, C, H, W) float in [0, 1] on the CPU; the same ``seed`` gives the same images.
    """
    if isinstance(source, (str, Path)):
        text = str(source)
        looks_like_path = Path(text).exists() or "/" in text or "\\" in text
        source = load_prompt(text) if looks_like_path else build_generator(text)
    return sample_images(source, n, seed=seed, device=resolve_device(device))


def info(path: str | Path) -> PromptManifest:
    """The validated manifest of a prompt folder."""
    return read_manifest(Path(path))


def list_plugins() -> list[PluginRecord]:
    """Installed plugins, what each registers, and any that failed to load."""
    return get_registry().plugins


__all__ = ["Prompt", "compose", "info", "list_plugins", "load_prompt", "sample"]
