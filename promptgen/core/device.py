"""Choosing the torch device: CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from promptgen.core.errors import PromptgenError


def _available(kind: str) -> bool:
    if kind == "cpu":
        return True
    if kind == "cuda":
        return torch.cuda.is_available()
    backend = getattr(torch.backends, kind, None) if kind == "mps" else getattr(torch, kind, None)
    return bool(backend is not None and getattr(backend, "is_available", lambda: False)())


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) -> CUDA if available, else CPU; other names are checked.

    Only devices that compute and that this machine has are taken: ``cpu``,
    ``cuda[:N]``, and ``mps`` or ``xpu`` where torch sees them (``meta`` holds no
    numbers and is refused).
    """
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise PromptgenError(f"unknown device {str(name)[:80]!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise PromptgenError(f"device {str(name)[:80]!r} cannot train or sample; use auto, cpu, cuda or cuda:N")
    if not _available(device.type):
        fallback = "--device cpu" if device.type != "cpu" else "--device auto"
        what = "CUDA GPU" if device.type == "cuda" else f"{device.type} device"
        raise PromptgenError(f"device {str(name)[:80]!r} asked for, but this torch sees no {what}; use {fallback}")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise PromptgenError(f"device {str(name)!r} asked for, but this machine has {torch.cuda.device_count()} CUDA GPU(s); use cuda:0")
    return device
