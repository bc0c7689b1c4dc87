"""Writing images: a grid PNG, a folder of PNGs, or the raw array as .npz."""

from __future__ import annotations

import math
import os
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from promptgen.core.atomic import check_name_lengths, writable_target, write_atomic
from promptgen.core.errors import PromptgenError


def to_uint8(images: Tensor) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (N, H, W, C) uint8."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def make_grid(images: Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile (N, C, H, W) images in [0, 1] into one (H', W', C) uint8 array."""
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    ncol = math.ceil(n / nrow)
    grid = np.full((ncol * (h + padding) + padding, nrow * (w + padding) + padding, c), 255, np.uint8)
    tiles = to_uint8(images)
    for i in range(n):
        r, k = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + k * (w + padding)
        grid[y : y + h, x : x + w] = tiles[i]
    return grid


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_images_fit(n: int, channels: int, height: int, width: int, option: str = "-n") -> None:
    """Refuse ``n`` images whose float32 array would take more than half this machine's memory.

    They are held at once (a grid, an .npz, a Langevin chain), so asking for more
    would end only when the system runs out of memory.
    """
    need = n * channels * height * width * 4
    have = memory_bytes()
    if have is not None and need > have // 2:
        most = max(1, (have // 2) // (channels * height * width * 4))
        raise PromptgenError(
            f"{option} {n:,}: {n:,} images of {channels}×{height}×{width} take {need / 2**30:,.1f} GiB, more than half "
            f"this machine's memory ({have / 2**30:.1f} GiB); ask for at most {most:,} at once"
        )


def _pil(array: np.ndarray) -> Image.Image:
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def check_output(out: str | Path) -> Path:
    """Refuse an output that :func:`save_images` could not write, before any work is done."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix in (".jpg", ".jpeg", ".gif", ".npy", ".pt"):
        raise PromptgenError(f"cannot write {out.name!r}: use a .png (grid), a .npz (raw array) or a folder name")
    if suffix in (".png", ".npz"):
        if out.is_dir():
            raise PromptgenError(f"cannot write {str(out)!r}: it is a folder; give a file name or drop the {suffix}")
        writable_target(out, "-o")
        return out
    if out.exists() and not out.is_dir():
        raise PromptgenError(f"cannot write images into {str(out)!r}: it is a file; give a folder, a .png or a .npz")
    check_name_lengths(out, "-o")
    target = out if out.exists() else out.parent
    while not target.exists() and target != target.parent:
        target = target.parent
    if target.exists() and not os.access(target, os.W_OK):
        raise PromptgenError(f"cannot write {str(out)!r}: {str(target)!r} is not writable; choose another -o")
    return out


def save_images(images: Tensor, out: str | Path, nrow: int | None = None) -> Path:
    """Save images by the form of ``out``.

    - ``*.png``: one grid image (``nrow`` images a row; default about square).
    - ``*.npz``: the raw array under key ``images``, (N, C, H, W) float32 in [0, 1].
    - anything else: a folder (created if needed) with ``000000.png``, ``000001.png``...

    Files are written atomically; existing files are only replaced whole.
    """
    out = check_output(out)
    suffix = out.suffix.lower()
    if suffix == ".png":
        grid = _pil(make_grid(images, nrow))
        write_atomic(out, lambda p: grid.save(p, format="PNG"))
    elif suffix == ".npz":
        array = images.detach().cpu().float().numpy()

        def write(p: Path) -> None:
            with open(p, "wb") as fh:
                np.savez_compressed(fh, images=array)

        write_atomic(out, write)
    else:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PromptgenError(f"cannot create folder {str(out)!r}: {exc.strerror}; choose another -o") from None
        names = [out / f"{i:06d}.png" for i in range(images.shape[0])]
        for name in names:  # every name first: a link or a FIFO among them must not stop the writing halfway
            writable_target(name, "-o")
        for i, tile in enumerate(to_uint8(images)):
            write_atomic(out / f"{i:06d}.png", partial(_save_png, _pil(tile)))
    return out


def _save_png(img: Image.Image, path: Path) -> None:
    img.save(path, format="PNG")
