"""Real reference images for the Fréchet distances of `promptgen eval --data`: an MNIST idx folder or an ``.npz``."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from promptgen.core.errors import PromptgenError, one_line

DATA_HINT = (
    "pass a folder with the MNIST idx files (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) "
    "or an .npz file with an 'images' array (N, C, H, W) in [0, 1]"
)


def load_reference(path: str | Path) -> Tensor:
    """Real images to compare with: an MNIST idx folder (its held-out split) or an ``.npz`` with ``images``.

    Returns:
        (N, C, H, W) float32 in [0, 1], N >= 2.
    """
    path = Path(path)
    if not path.exists():
        raise PromptgenError(f"--data {str(path)!r} does not exist; {DATA_HINT}")
    if path.is_dir():
        from promptgen.datasets.mnist import load_split

        try:
            images, _ = load_split(path, "heldout")
        except (ValueError, OSError, EOFError, zlib.error) as exc:  # a missing, truncated or corrupt idx file
            raise PromptgenError(f"--data {str(path)!r}: {one_line(str(exc))[:160] or type(exc).__name__}; {DATA_HINT}") from None
        return images
    if path.suffix.lower() != ".npz":
        raise PromptgenError(f"--data {str(path)!r} is neither a folder nor an .npz file; {DATA_HINT}")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise PromptgenError(f"--data {str(path)!r} is not a regular file; {DATA_HINT}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "images" not in npz.files:
                raise PromptgenError(f"--data {str(path)!r} has no 'images' array (it has {', '.join(npz.files) or 'none'}); {DATA_HINT}")
            array = npz["images"]
    except PromptgenError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, MemoryError) as exc:
        # A half-written or corrupt .npz fails in any of these ways (MemoryError: a header claiming a huge array).
        raise PromptgenError(
            f"--data {str(path)!r} is not a readable .npz ({type(exc).__name__}: {one_line(str(exc))[:160]}); {DATA_HINT}"
        ) from None
    if array.ndim != 4 or array.shape[1] not in (1, 3) or array.shape[0] < 2:
        raise PromptgenError(f"--data {str(path)!r}: 'images' has shape {array.shape}; need (N >= 2, C = 1 or 3, H, W)")
    if not np.issubdtype(array.dtype, np.floating):
        raise PromptgenError(f"--data {str(path)!r}: 'images' is {array.dtype}; need floats in [0, 1] (divide 8-bit pixels by 255)")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise PromptgenError(f"--data {str(path)!r}: 'images' has values outside [0, 1]; need floats in [0, 1]")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


__all__ = ["DATA_HINT", "load_reference"]
