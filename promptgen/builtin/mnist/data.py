"""The MNIST files the built-in models are trained on: see :mod:`promptgen.datasets.mnist` (moved there so
`promptgen eval --data` can read them without importing the built-in plugin)."""

from promptgen.datasets.mnist import (  # noqa: F401 - re-exported
    IMAGE_SIZE,
    IMAGES_FILE,
    IMAGES_MAGIC,
    LABELS_FILE,
    LABELS_MAGIC,
    NUM_IMAGES,
    SPLIT_SEED,
    SPLITS,
    load_images,
    load_labels,
    load_mnist,
    load_split,
    load_split_images,
    split_indices,
)
