"""Labelled grids (issue 26, item 6): the band of labels, column labels, --scale, --no-labels, and the raw outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFont
from typer.testing import CliRunner

from promptgen.artifacts.captions import grid_labels
from promptgen.artifacts.prompt import build_generator
from promptgen.cli import app
from promptgen.core import images as images_module
from promptgen.core.errors import PromptgenError
from promptgen.core.images import GridLabels, auto_scale, check_grid_fits, make_grid, render_grid, save_images
from promptgen.testing import one_line_error

runner = CliRunner()
WHITE = 255


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def digits(n: int = 12, seed: int = 0) -> torch.Tensor:
    """Random images (N, 1, 28, 28) in [0, 1]: any content will do, the band is what is checked."""
    return torch.rand((n, 1, 28, 28), generator=torch.Generator().manual_seed(seed))


def split(picture: Image.Image | str, raw: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(band, grid): the rows above the grid and the grid itself, the grid asserted to be ``raw`` scaled up, centred."""
    array = np.asarray(Image.open(picture) if isinstance(picture, str) else picture)
    array = array if array.ndim == 3 else array[..., None]
    height, width = raw.shape[0] * scale, raw.shape[1] * scale
    assert array.shape[0] > height, "no band above the grid"
    left = (array.shape[1] - width) // 2
    grid = array[-height:, left : left + width]
    assert np.array_equal(grid, raw.repeat(scale, 0).repeat(scale, 1)), (
        "the grid under the band is not the raw grid scaled up"
    )
    return array[:-height], grid


def test_the_band_sits_above_the_unchanged_grid_and_has_ink():
    images = digits()
    raw = make_grid(images)
    band, _ = split(render_grid(images, labels=GridLabels("runs/three", ("--gen mnist", "seed 0"))), raw, 1)
    assert band.shape[0] >= 3 * 11  # three lines of at least 11 px text
    assert (band < 128).sum() > 100  # text drawn, not an empty band
    # Another seed changes the band: the labels are drawn, not a fixed header.
    other, _ = split(render_grid(images, labels=GridLabels("runs/three", ("--gen mnist", "seed 1"))), raw, 1)
    assert other.shape == band.shape and not np.array_equal(other, band)


def test_without_labels_at_scale_1_the_picture_is_make_grid():
    images = digits(64)
    assert np.array_equal(np.asarray(render_grid(images))[..., None], make_grid(images))
    rgb = torch.rand((5, 3, 8, 8))
    assert np.array_equal(np.asarray(render_grid(rgb, nrow=5)), make_grid(rgb, nrow=5))


def test_scale_makes_each_pixel_a_square():
    images = digits(9)
    raw = make_grid(images)
    tripled = np.asarray(render_grid(images, scale=3))[..., None]
    assert tripled.shape == (3 * raw.shape[0], 3 * raw.shape[1], 1)
    assert np.array_equal(tripled, raw.repeat(3, 0).repeat(3, 1))
    split(render_grid(images, labels=GridLabels("t"), scale=3), raw, 3)


def test_column_labels_stand_above_every_column():
    images = digits(3 * 7)
    raw = make_grid(images, nrow=7)
    labels = GridLabels("runs/slant", ("seed 0 · slant from -0.3 to 0.3 across the columns",))
    values = tuple(f"{v:g}" for v in np.linspace(-0.3, 0.3, 7).round(2))
    without, _ = split(render_grid(images, 7, labels, scale=3), raw, 3)
    band, _ = split(render_grid(images, 7, GridLabels(labels.title, labels.lines, values), scale=3), raw, 3)
    row = band.shape[0] - without.shape[0]
    assert row >= 11  # one more row of text
    strip = band[without.shape[0] :, :, 0]  # the rows the column labels added, above the grid
    pitch = 30 * 3
    for k in range(7):
        column = strip[:, 2 * 3 + k * pitch : 2 * 3 + k * pitch + 28 * 3]
        assert (column < 128).any(), f"no label above column {k}"
    gaps = [strip[:, k * pitch : k * pitch + 2 * 3] for k in range(8)]  # between the columns: no label crosses
    assert all((gap == WHITE).all() for gap in gaps[1:-1])


def test_a_wrong_number_of_column_labels_is_a_mistake():
    with pytest.raises(ValueError, match="3 column labels for a grid of 7 columns"):
        render_grid(digits(14), 7, GridLabels("t", (), ("a", "b", "c")))


def test_long_labels_wrap_and_elide_inside_the_canvas():
    long = "--gen stylegan2:path=/models/" + "x" * 400 + ".pkl " + "--energy clip:a smiling face@600 " * 20
    picture = render_grid(digits(1), labels=GridLabels("runs/" + "folder-" * 40, (long, "seed 0")))
    assert picture.width == images_module.MIN_LABELLED_WIDTH  # one 28 px image: centred on a canvas wide enough to read
    band = np.asarray(picture)[: -(28 + 4)]
    ink = np.nonzero((band < 200).any(0))[0]
    assert ink.min() >= 2 and ink.max() <= picture.width - 3  # no glyph touches, let alone crosses, the edge
    # The title wraps to at most 2 lines, the spec to at most 3 (elided), then the seed: as tall as 6 short lines.
    six = render_grid(digits(1), labels=GridLabels("a", ("b", "c", "d", "e", "f")))
    assert picture.height == six.height
    five = render_grid(digits(1), labels=GridLabels("a", ("b", "c", "d", "e")))
    assert five.height < six.height


def test_the_bitmap_font_of_an_older_pillow_draws_any_text(monkeypatch):
    monkeypatch.setattr(images_module, "_font", lambda size: ImageFont.load_default_imagefont())
    images = digits(4)
    band, _ = split(
        render_grid(images, labels=GridLabels("日本 prompt ✓", ("--gen mnist\x1b[2J",), ("a", "b")), scale=2),
        make_grid(images),
        2,
    )
    assert (band < 128).any()


def test_colour_grids_get_a_band_in_colour():
    images = torch.rand((4, 3, 16, 16))
    picture = render_grid(images, labels=GridLabels("faces"), scale=2)
    assert picture.mode == "RGB"
    split(picture, make_grid(images), 2)


@pytest.mark.parametrize(("width", "scale"), [(242, 2), (212, 3), (92, 6), (480, 1), (2066, 1), (32, 8), (1, 8)])
def test_the_default_scale_makes_a_grid_about_480_px_wide(width, scale):
    assert auto_scale(width) == scale


def test_a_scale_below_one_or_beyond_memory_is_refused(monkeypatch):
    with pytest.raises(PromptgenError, match="--scale 0: give a whole factor of 1 or more"):
        check_grid_fits(242, 242, 1, 0)
    monkeypatch.setattr(images_module, "memory_bytes", lambda: 2**30)
    check_grid_fits(242, 242, 1, 40)  # 180 MiB
    with pytest.raises(PromptgenError, match=r"--scale 100: a grid of 24,200×24,200 px .* give --scale 67 or less"):
        check_grid_fits(242, 242, 1, 100)


def test_grid_labels_of_a_generator_name_it_its_spec_and_the_seed():
    labels = grid_labels(build_generator("mnist"), 7, spec="mnist")
    assert labels.title == "mnist" and labels.lines == ("--gen mnist", "seed 7") and labels.columns == ()
    assert grid_labels(build_generator("mnist"), 0, method="rejection").lines[1] == "seed 0 · --method rejection"


# --- the command line, on the built-in generator (no training) ----------------------------------------------------------


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> np.ndarray:
    """The raw grid of 64 digits, seed 3, from the .npz the same command writes."""
    out = tmp_path_factory.mktemp("raw") / "x.npz"
    assert run("sample", "--gen", "mnist", "-n", 64, "--seed", 3, "-o", out).exit_code == 0
    return make_grid(torch.from_numpy(np.load(out)["images"]))


def test_sample_labels_the_grid_and_scales_it_to_480_px(raw, tmp_path):
    result = run("sample", "--gen", "mnist", "-n", 64, "--seed", 3, "-o", tmp_path / "g.png")
    assert result.exit_code == 0, result.output
    assert raw.shape[1] == 242 and Image.open(tmp_path / "g.png").width == 484
    band, _ = split(str(tmp_path / "g.png"), raw, 2)
    assert (band < 128).sum() > 100
    assert run("sample", "--gen", "mnist", "-n", 64, "--seed", 4, "-o", tmp_path / "h.png").exit_code == 0
    other = np.asarray(Image.open(tmp_path / "h.png"))[: band.shape[0]]
    assert not np.array_equal(other, band[..., 0])  # the seed is in the band


def test_no_labels_writes_the_raw_grid(raw, tmp_path):
    for flag in ("--no-labels", "--plain"):
        assert run("sample", "--gen", "mnist", "-n", 64, "--seed", 3, flag, "-o", tmp_path / "p.png").exit_code == 0
        assert np.array_equal(np.asarray(Image.open(tmp_path / "p.png"))[..., None], raw)
    assert (
        run(
            "sample", "--gen", "mnist", "-n", 64, "--seed", 3, "--no-labels", "--scale", 3, "-o", tmp_path / "p3.png"
        ).exit_code
        == 0
    )
    assert np.array_equal(np.asarray(Image.open(tmp_path / "p3.png"))[..., None], raw.repeat(3, 0).repeat(3, 1))


def test_scale_3_triples_the_grid(raw, tmp_path):
    assert (
        run("sample", "--gen", "mnist", "-n", 64, "--seed", 3, "--scale", 3, "-o", tmp_path / "g3.png").exit_code == 0
    )
    assert Image.open(tmp_path / "g3.png").width == 3 * 242
    split(str(tmp_path / "g3.png"), raw, 3)


def test_npz_and_folders_stay_raw(tmp_path):
    import promptgen

    assert run("sample", "--gen", "mnist", "-n", 3, "--seed", 2, "-o", tmp_path / "x.npz").exit_code == 0
    assert np.array_equal(np.load(tmp_path / "x.npz")["images"], promptgen.sample("mnist", n=3, seed=2).numpy())
    assert run("sample", "--gen", "mnist", "-n", 3, "--seed", 2, "-o", tmp_path / "pngs").exit_code == 0
    assert [Image.open(tmp_path / "pngs" / f"{i:06d}.png").size for i in range(3)] == [(28, 28)] * 3
    one_line_error(
        run("sample", "--gen", "mnist", "--scale", 2, "-o", tmp_path / "y.npz"),
        "--scale 2 scales a .png grid",
        "drop --scale",
    )
    one_line_error(
        run("sample", "--gen", "mnist", "--scale", 2, "-o", tmp_path / "dir"), "--scale 2 scales a .png grid"
    )
    assert not (tmp_path / "y.npz").exists() and not (tmp_path / "dir").exists()


def test_save_images_keeps_its_raw_grid_for_callers_that_ask_nothing(tmp_path):
    images = digits(10)
    save_images(images, tmp_path / "g.png", nrow=5)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g.png"))[..., None], make_grid(images, nrow=5))


def test_bad_scales_are_one_line(tmp_path, monkeypatch):
    one_line_error(run("sample", "--gen", "mnist", "--scale", 0, "-o", tmp_path / "g.png"), "--scale")
    monkeypatch.setattr(images_module, "memory_bytes", lambda: 8 * 2**30)
    line = one_line_error(
        run("sample", "--gen", "mnist", "-n", 10_000, "--scale", 100, "-o", tmp_path / "g.png"),
        "--scale 100",
        "more than half this machine's memory",
        "or less",
    )
    assert "300,200×300,200 px" in line and not (tmp_path / "g.png").exists()


def test_a_prompts_label_gives_each_energy_its_weight_once(tmp_path):
    from promptgen.artifacts.prompt import load_prompt
    from promptgen.composing import compose
    from promptgen.training.trainer import TrainConfig

    compose("mnist", ["classifier:digit=3@7", "classifier:thickness=thick"], tmp_path / "p",
            train=TrainConfig(steps=1, batch_size=4, eval_batch=4, check_samples=0), flow={"transforms": 1, "hidden": 8},
            progress=False, preview=0)  # fmt: skip
    spec = grid_labels(load_prompt(tmp_path / "p"), 0).lines[0]
    assert "--energy classifier:digit=3@7 " in spec and "@7@7" not in spec
    assert "--energy classifier:thickness=thick@100" in spec  # the default weight, written once
