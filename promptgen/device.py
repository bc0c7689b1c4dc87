"""Choosing the torch device: CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from promptgen.errors import PromptgenError


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) -> CUDA if available, else CPU; other names are checked."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise PromptgenError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PromptgenError(f"device {name!r} asked for, but this torch sees no CUDA GPU; use --device cpu")
    return device
