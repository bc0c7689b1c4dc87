"""Bounds shared by the command line and the Python API (no imports: `promptgen --help` reads them)."""

#: The most images one call makes (``-n``, ``n=``); memory is checked too (:func:`promptgen.core.images.check_images_fit`).
MAX_IMAGES = 10_000_000
