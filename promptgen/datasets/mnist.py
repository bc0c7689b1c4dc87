"""Loading the MNIST test set (IDX files) and its fixed three-way split.

The only image data on hand is the 10,000-image MNIST *test* set. It is split
once, deterministically, into three disjoint parts:

* ``"models"`` (4,000 images): trains the digit generators (from the images
  alone, :func:`load_split_images`) and the control classifier (the
  classifier used as an energy during generation).
* ``"evaluator"`` (4,000 images): trains the independent evaluator only, so
  the classifier that judges results never saw the images that trained the
  models it judges.
* ``"heldout"`` (2,000 images): never trained on; used to measure accuracy and
  as real reference digits (e.g. for a Fréchet distance).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

IMAGES_FILE = "t10k-images-idx3-ubyte.gz"
LABELS_FILE = "t10k-labels-idx1-ubyte.gz"

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
NUM_IMAGES = 10_000
IMAGE_SIZE = 28

SPLIT_SEED = 20221128
SPLITS: dict[str, tuple[int, int]] = {
    # name: (start, stop) into the fixed-seed permutation of range(10_000)
    "models": (0, 4_000),
    "evaluator": (4_000, 8_000),
    "heldout": (8_000, 10_000),
}


def _read_gz(path: Path) -> bytes:
    if not path.is_file():
        raise ValueError(f"MNIST file not found: {path}")
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"MNIST file {path} is not a readable gzip file: {exc}") from None


def _be_u32(buf: bytes, offset: int) -> int:
    return int.from_bytes(buf[offset : offset + 4], "big")


def load_images(folder: str | Path) -> torch.Tensor:
    """All 10,000 MNIST test images of ``folder``, without reading the labels file.

    Returns (N, 1, 28, 28) float32 in [0, 1] (0 = background). The generators
    train on this alone, so nothing they learn can come from a label.

    Raises ``ValueError`` (one-line message naming the file) if the file is
    missing, is not gzip, or has a wrong header or size.
    """
    img_path = Path(folder) / IMAGES_FILE
    raw = _read_gz(img_path)
    if len(raw) < 16:
        raise ValueError(f"MNIST file {img_path} is too short for an IDX3 header")
    magic, n, rows, cols = (_be_u32(raw, i) for i in (0, 4, 8, 12))
    if magic != IMAGES_MAGIC:
        raise ValueError(f"MNIST file {img_path} has magic {magic}, expected {IMAGES_MAGIC}")
    if n != NUM_IMAGES or rows != IMAGE_SIZE or cols != IMAGE_SIZE:
        raise ValueError(
            f"MNIST file {img_path} has shape {n}x{rows}x{cols}, "
            f"expected {NUM_IMAGES}x{IMAGE_SIZE}x{IMAGE_SIZE}"
        )
    if len(raw) != 16 + n * rows * cols:
        raise ValueError(
            f"MNIST file {img_path} has {len(raw) - 16} pixel bytes, expected {n * rows * cols}"
        )
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, rows, cols)
    return torch.from_numpy(pixels.astype(np.float32) / 255.0)


def load_labels(folder: str | Path) -> torch.Tensor:
    """All 10,000 MNIST test labels of ``folder``: (N,) int64 in 0..9 (one-line ``ValueError`` if bad)."""
    lbl_path = Path(folder) / LABELS_FILE
    raw_l = _read_gz(lbl_path)
    if len(raw_l) < 8:
        raise ValueError(f"MNIST file {lbl_path} is too short for an IDX1 header")
    magic_l, n_l = _be_u32(raw_l, 0), _be_u32(raw_l, 4)
    if magic_l != LABELS_MAGIC:
        raise ValueError(f"MNIST file {lbl_path} has magic {magic_l}, expected {LABELS_MAGIC}")
    if n_l != NUM_IMAGES:
        raise ValueError(f"MNIST file {lbl_path} has {n_l} labels, expected {NUM_IMAGES}")
    if len(raw_l) != 8 + n_l:
        raise ValueError(f"MNIST file {lbl_path} has {len(raw_l) - 8} label bytes, expected {n_l}")
    labels = np.frombuffer(raw_l, dtype=np.uint8, offset=8)
    if labels.max(initial=0) > 9:
        raise ValueError(f"MNIST file {lbl_path} has labels outside 0..9")
    return torch.from_numpy(labels.astype(np.int64))


def load_mnist(folder: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """All 10,000 MNIST test images and labels of ``folder``.

    Returns ``(images, labels)``: images float32 of shape (N, 1, 28, 28) with
    values in [0, 1] (0 = background), labels int64 of shape (N,) in 0..9.

    Raises ``ValueError`` (one-line message naming the file) if a file is
    missing, is not gzip, or has a wrong header or size.
    """
    return load_images(folder), load_labels(folder)


def _permutation() -> torch.Tensor:
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    return torch.randperm(NUM_IMAGES, generator=gen)


def split_indices(name: str) -> torch.Tensor:
    """Sorted int64 indices (into the 10,000 test images) of split ``name``.

    ``name`` is one of ``"models"``, ``"evaluator"``, ``"heldout"``.
    """
    if name not in SPLITS:
        raise ValueError(f"unknown MNIST split {name!r}; expected one of {sorted(SPLITS)}")
    start, stop = SPLITS[name]
    return _permutation()[start:stop].sort().values


def load_split(folder: str | Path, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N,1,28,28) float32 in [0,1] and labels (N,) int64 of split ``name``."""
    idx = split_indices(name)
    images, labels = load_mnist(folder)
    return images[idx].contiguous(), labels[idx].contiguous()


def load_split_images(folder: str | Path, name: str) -> torch.Tensor:
    """The images (N,1,28,28) float32 in [0,1] of split ``name``; the labels file is never opened."""
    return load_images(folder)[split_indices(name)].contiguous()
