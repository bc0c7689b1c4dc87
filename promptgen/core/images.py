"""Writing images: a grid PNG (labelled and scaled up, or raw), a folder of PNGs, or the raw array as .npz."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from promptgen.core.atomic import check_name_lengths, writable_target, write_atomic
from promptgen.core.errors import PromptgenError


def to_uint8(images: Tensor) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (N, H, W, C) uint8."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def grid_size(n: int, height: int, width: int, nrow: int | None = None, padding: int = 2) -> tuple[int, int]:
    """(height, width) in pixels of :func:`make_grid`'s grid of ``n`` images of ``height`` × ``width``, known before sampling."""
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / nrow) * (height + padding) + padding, nrow * (width + padding) + padding


def make_grid(images: Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile (N, C, H, W) images in [0, 1] into one (H', W', C) uint8 array, ``nrow`` images a row (default about square)."""
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    grid = np.full((*grid_size(n, h, w, nrow, padding), c), 255, np.uint8)
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


#: The default scale makes a grid at least this wide: 64 digits of 28 px are 242 px, too small to see, so 484 px.
AUTO_WIDTH = 480
#: ... by at most this factor (one 28 px digit: 256 px).
MAX_AUTO_SCALE = 8
#: Labels need room to be read: a narrower grid is centred on a canvas this wide.
MIN_LABELLED_WIDTH = 240


@dataclass(frozen=True)
class GridLabels:
    """What a grid PNG says in a band above its images.

    Attributes:
        title: the first line, e.g. the prompt's folder or the generator's name.
        lines: the lines below it (the spec, the seed, the conditions); each wraps to the canvas and is
            elided (``...``) past three lines, so no glyph is ever cut off at the edge.
        columns: one label per column of images (a sweep's values), centred above it; empty for none.
    """

    title: str
    lines: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()


def auto_scale(width: int) -> int:
    """The smallest whole factor that makes a grid ``width`` px wide at least :data:`AUTO_WIDTH` px, at most
    :data:`MAX_AUTO_SCALE`; 1 for a grid wide enough already."""
    return max(1, min(MAX_AUTO_SCALE, math.ceil(AUTO_WIDTH / max(1, width))))


def check_grid_fits(height: int, width: int, channels: int, scale: int, option: str = "--scale") -> None:
    """Refuse a ``scale`` below 1, or one whose grid (``height`` × ``width`` px before scaling) would take more than
    half this machine's memory: the scaled array and its picture are held at once while the PNG is written."""
    if scale < 1:
        raise PromptgenError(f"{option} {scale}: give a whole factor of 1 or more, such as {option} 2")
    need = 2 * height * width * channels * scale * scale
    have = memory_bytes()
    if have is not None and need > have // 2:
        most = math.isqrt(max(0, (have // 2) // (2 * height * width * channels)))
        fix = f"give {option} {most} or less" if most >= 1 else "give fewer images (-n)"
        raise PromptgenError(
            f"{option} {scale}: a grid of {width * scale:,}×{height * scale:,} px takes {need / 2**30:,.1f} GiB, more than "
            f"half this machine's memory ({have / 2**30:.1f} GiB); {fix}"
        )


def render_grid(
    images: Tensor, nrow: int | None = None, labels: GridLabels | None = None, scale: int = 1, padding: int = 2
) -> Image.Image:
    """The picture :func:`save_images` writes for a ``.png``: :func:`make_grid`'s grid of (N, C, H, W) images in
    [0, 1], each pixel made ``scale`` × ``scale`` (nearest neighbour), under a band that shows ``labels``.

    Without labels and at scale 1 it is exactly :func:`make_grid`'s array. ``labels.columns`` must name every
    column (``nrow`` of them, or fewer when there are fewer images).
    """
    n, c, h, w = images.shape
    check_grid_fits(*grid_size(n, h, w, nrow, padding), c, scale)
    grid = make_grid(images, nrow, padding)
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    picture = _pil(grid)
    if labels is None:
        return picture
    columns = min(n, nrow or max(1, math.ceil(math.sqrt(n))))
    if labels.columns and len(labels.columns) != columns:
        raise ValueError(f"{len(labels.columns)} column labels for a grid of {columns} columns")
    centres = [(padding + k * (w + padding) + w / 2) * scale for k in range(columns)]
    return _with_band(picture, labels, centres, (w + padding) * scale)


_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
_ELLIPSIS = "..."
_MAX_LINES = 3


def _font(size: int) -> _Font:
    """Pillow's own font at ``size`` px (no font file to ship or find); its fixed bitmap font where Pillow is
    older than 10.1 or built without FreeType."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _drawable(text: str, font: _Font) -> str:
    """``text`` with control characters shown as escapes; the bitmap font draws Latin-1 only."""
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text[:4000])
    if not isinstance(font, ImageFont.FreeTypeFont):
        text = text.encode("latin-1", "replace").decode("latin-1")
    return text


def _longest_prefix(text: str, font: _Font, width: float, tail: str = "") -> int:
    """How many leading characters of ``text`` fit in ``width`` px followed by ``tail`` (at least 1)."""
    low, high = 1, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if font.getlength(text[:mid] + tail) <= width:
            low = mid
        else:
            high = mid - 1
    return low


def _wrap(text: str, font: _Font, width: float, max_lines: int = _MAX_LINES) -> list[str]:
    """``text`` broken at spaces into lines at most ``width`` px wide (a longer word between characters), and
    elided past ``max_lines``."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        while len(word) > 1 and font.getlength(word) > width:
            cut = _longest_prefix(word, font, width)
            lines.append(word[:cut])
            word = word[cut:]
        current = word
        if len(lines) > max_lines:
            break
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        lines = [*lines[: max_lines - 1], last[: _longest_prefix(last, font, width, _ELLIPSIS)] + _ELLIPSIS]
    return lines


def _ink(picture: Image.Image, level: int) -> int | tuple[int, ...]:
    """A grey ``level`` (0 black, 255 white) in ``picture``'s mode, opaque."""
    bands = picture.getbands()
    return level if len(bands) == 1 else tuple(255 if b == "A" else level for b in bands)


def _with_band(picture: Image.Image, labels: GridLabels, centres: Sequence[float], pitch: int) -> Image.Image:
    """``picture`` under a band with the title, the lines and, centred on ``centres``, the column labels."""
    width = max(picture.width, MIN_LABELLED_WIDTH)
    size = max(11, min(20, width // 40))  # 13 px on a 64-digit grid at its default scale; legible, not loud
    font = _font(size)
    margin = max(4, size // 2)
    room = width - 2 * margin
    text = [(_wrap(_drawable(labels.title, font), font, room, 2), 0)]
    text += [(_wrap(_drawable(line, font), font, room), 70) for line in labels.lines]
    top, bottom = (int(v) for v in font.getbbox("Agjy|")[1::2])
    step = bottom - top + max(2, size // 4)
    columns = [_drawable(label, font) for label in labels.columns]
    # Every k-th column labelled when the labels are wider than a column (a narrow grid at --scale 1).
    widest = max((font.getlength(label) for label in columns), default=0)
    every = max(1, math.ceil((widest + size // 2) / max(1, pitch)))
    rows = sum(len(lines) for lines, _ in text) + (1 if columns else 0)
    band = margin + (rows - 1) * step + bottom - top + margin
    canvas = Image.new(picture.mode, (width, band + picture.height), _ink(picture, 255))
    offset = (width - picture.width) // 2
    canvas.paste(picture, (offset, band))
    draw = ImageDraw.Draw(canvas)
    y = margin - top  # Pillow draws a glyph ``top`` px below the point given
    for lines, grey in text:
        for line in lines:
            draw.text((margin, y), line, font=font, fill=_ink(canvas, grey))
            y += step
    for k in range(0, len(columns), every):
        length = font.getlength(columns[k])
        x = min(max(offset + centres[k] - length / 2, 0), width - length)  # an end label stays on the canvas
        draw.text((x, y), columns[k], font=font, fill=_ink(canvas, 0))
    return canvas


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


def save_images(
    images: Tensor, out: str | Path, nrow: int | None = None, labels: GridLabels | None = None, scale: int = 1
) -> Path:
    """Save images by the form of ``out``.

    - ``*.png``: one grid image (``nrow`` images a row; default about square), by :func:`render_grid`: under a
      band showing ``labels`` if given, each pixel ``scale`` × ``scale``; without either, the raw grid.
    - ``*.npz``: the raw array under key ``images``, (N, C, H, W) float32 in [0, 1].
    - anything else: a folder (created if needed) with ``000000.png``, ``000001.png``...

    ``labels`` and ``scale`` concern the grid only: the array and the folder keep the images as they are.

    Files are written atomically; existing files are only replaced whole.
    """
    out = check_output(out)
    suffix = out.suffix.lower()
    if suffix == ".png":
        grid = render_grid(images, nrow, labels, scale)
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
