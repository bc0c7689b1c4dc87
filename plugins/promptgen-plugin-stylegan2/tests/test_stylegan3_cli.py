"""StyleGAN3 through promptgen's registry and CLI: the zoo, the options, compose with debias and CLIP, sample.

    promptgen compose --gen stylegan3-t-ffhqu-256 --energy debias:gender
    promptgen compose --gen stylegan3-r:path=FILE --energy clip:"a red face"

The zoo's file is put in the cache (``$PROMPTGEN_HOME/stylegan2/``) as a download would leave it, but as a tiny
random network in NVIDIA's format; ``gender`` comes from a toy classifier installed as a third-party plugin, and
CLIP is a tiny open_clip architecture with random weights.
"""

from __future__ import annotations

import importlib
import json
import pickle

import numpy as np
import pytest
import torch
from promptgen_plugin_stylegan2 import zoo
from promptgen_plugin_stylegan2.options import StyleGAN3Options
from promptgen_plugin_stylegan2.testing import random_generator, random_stylegan3, write_nvidia_pickle
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.core.registry import get_registry, reset_registry
from promptgen.testing import TOY_GENDER_PLUGIN, install_fake_distribution, one_line_error

#: The cheapest geometry that still has every kind of layer: 8 pixels, 3 layers, a margin of 2 pixels.
CHEAP = {"resolution": 8, "channel_base": 32, "channel_max": 4, "margin_size": 2, "num_layers": 3, "num_critical": 1}

#: NVlabs/stylegan3's README, "Pretrained networks": the files of both configurations.
PUBLISHED = [
    "ffhq-1024x1024", "ffhqu-1024x1024", "ffhqu-256x256", "afhqv2-512x512", "metfaces-1024x1024", "metfacesu-1024x1024",
]  # fmt: skip
NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"


TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def home(tmp_path, monkeypatch):
    """``$PROMPTGEN_HOME`` with stylegan3-t-ffhqu-256 in the cache (offline: the cache must serve it), and a toy
    gender classifier."""
    home = tmp_path / "home"
    monkeypatch.setenv("PROMPTGEN_HOME", str(home))
    monkeypatch.setenv("PROMPTGEN_OFFLINE", "1")
    (home / "stylegan2").mkdir(parents=True)
    write_nvidia_pickle(random_stylegan3(1, "T", **CHEAP), home / "stylegan2" / "stylegan3-t-ffhqu-256x256.pkl")
    (tmp_path / "site").mkdir()
    install_fake_distribution(
        tmp_path / "site", "promptgen-plugin-toy-gender", "0.2.0", "toy_gender", TOY_GENDER_PLUGIN, "a-toy-gender"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    reset_registry()
    yield home
    reset_registry()


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    import open_clip

    folder = tmp_path_factory.mktemp("clip-configs")
    (folder / "promptgen-tiny-clip-28.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder)
    return "promptgen-tiny-clip-28"


def test_every_published_stylegan3_model_has_a_name_url_and_licence():
    names = {f"stylegan3-{k}-{f.split('x')[0]}": f"stylegan3-{k}-{f}.pkl" for k in "tr" for f in PUBLISHED}
    assert set(zoo.STYLEGAN3_MODELS) == set(names) and len(names) == 12
    entries = get_registry().generators
    for name, file in names.items():
        m = zoo.STYLEGAN3_MODELS[name]
        assert m.weights.url == NGC + file and m.filename == file, m
        assert m.kind == name[len("stylegan3-")].upper() and m.resolution == int(name.rsplit("-", 1)[1])
        assert m.licence.startswith("NVIDIA Source Code License") and "non-commercial" in m.licence
        assert "images:" in m.licence or "FFHQ" in m.licence  # the training data's terms too
        assert entries[name].options is StyleGAN3Options
    for kind in "tr":
        assert entries[f"stylegan3-{kind}"].options is StyleGAN3Options


def test_compose_with_debias_then_sample_repeats_byte_for_byte(home):
    out = home.parent / "prompt"
    result = run("compose", "--gen", "stylegan3-t-ffhqu-256", "--energy", "debias:gender", "--steps", 2,
                 "--batch-size", 4, "--eval-batch", 4, "--transforms", 2, "--hidden", 8, "--check-samples", 0,
                 "--out", out, "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"]["spec"] == "stylegan3-t-ffhqu-256" and manifest["generator"]["latent_shape"] == [16]
    files = []
    for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
        result = run("sample", out, "-n", 4, "--seed", seed, "-o", home.parent / f"{name}.npz")
        assert result.exit_code == 0, result.output
        files.append((home.parent / f"{name}.npz").read_bytes())
    assert files[0] == files[1] and files[0] != files[2]
    assert np.load(home.parent / "a.npz")["images"].shape[0] == 4


def test_compose_with_a_tiny_clip_from_a_file_then_sample_repeats(tmp_path, tiny_clip):
    path = write_nvidia_pickle(random_stylegan3(2, "R", **CHEAP), tmp_path / "r.pkl")
    out = tmp_path / "red"
    result = run("compose", "--gen", f"stylegan3-r:path={path},psi=0.7,rotate=30", "--energy",
                 f"clip:a red face,model={tiny_clip},pretrained=none,augs=2", "--steps", 3, "--batch-size", 4,
                 "--eval-every", 3, "--eval-batch", 8, "--check-samples", 0, "--out", out, "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"]["spec"].startswith("stylegan3-r:path=") and manifest["energies"][0]["spec"].startswith(
        "clip:a red face"
    )
    grids = []
    for name, seed in [("a", 5), ("b", 5)]:
        result = run("sample", out, "-n", 4, "--seed", seed, "-o", tmp_path / f"{name}.png")
        assert result.exit_code == 0, result.output
        grids.append((tmp_path / f"{name}.png").read_bytes())
    assert grids[0] == grids[1]


def test_the_options_move_and_turn_the_images(tmp_path):
    t = write_nvidia_pickle(random_stylegan3(3, "T", resolution=32, num_layers=6), tmp_path / "t.pkl")
    r = write_nvidia_pickle(random_stylegan3(3, "R", resolution=32, num_layers=6), tmp_path / "r.pkl")
    reg = get_registry()
    z = torch.randn(2, 16)
    base = reg.build_generator(f"stylegan3-t:path={t}").decode(z)
    moved = reg.build_generator(f"stylegan3-t:path={t},translate_x=0.0625,translate_y=-0.125").decode(
        z
    )  # 2 right, 4 up
    near = float((moved[..., 4:-8, 6:-4] - base[..., 8:-4, 4:-6]).abs().max())
    assert near < 1e-5 and float((moved - base).abs().max()) > 100 * near  # moved, and by exactly that
    base = reg.build_generator(f"stylegan3-r:path={r}").decode(z)
    turned = reg.build_generator(f"stylegan3-r:path={r},rotate=90").decode(z)
    torch.testing.assert_close(
        turned[..., 3:-3, 3:-3], torch.rot90(base, 1, dims=(-2, -1))[..., 3:-3, 3:-3], atol=1e-5, rtol=0
    )
    gen = reg.build_generator(f"stylegan3-r:path={r},size=16,psi=0.5")
    assert (
        gen.decode(z).shape == (2, 3, 16, 16)
        and gen.info.resolution == (16, 16)
        and "StyleGAN3 config R" in gen.info.description
    )
    w = torch.randn(2, 16, requires_grad=True)
    reg.build_generator(f"stylegan3-t:path={t},space=w").decode(w).mean().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("stylegan2:path={sg3}", ["StyleGAN3 (config T)", "not StyleGAN2", "stylegan3-t:path=FILE"]),
        ("stylegan3-t:path={sg2}", ["StyleGAN2 network, not StyleGAN3", "stylegan2:path=FILE"]),
        ("stylegan3-r:path={sg3}", ["config T network but stylegan3-r is config R", "stylegan3-t:path=FILE"]),
        ("stylegan3-r-ffhq-1024:path={sg3}", ["config T network but stylegan3-r-ffhq-1024 is config R"]),
        ("stylegan3-t:path={evil}", ["builtins.eval", "refusing"]),
        ("stylegan3-t:path={cut}", ["damaged"]),
        ("stylegan3-t:path={sg3},noise=random", ["unknown option", "noise"]),
        ("stylegan3-t:path={sg3},rotate=400", ["rotate=400", "at most 360"]),
        ("stylegan3-r-afhqv2-512", ["stylegan3-r-afhqv2-512x512.pkl", NGC, "path="]),
    ],
    ids=[
        "sg3-to-stylegan2",
        "sg2-to-stylegan3",
        "R-name-T-file",
        "R-zoo-T-file",
        "code",
        "truncated",
        "noise",
        "rotate",
        "offline",
    ],
)
def test_wrong_files_and_options_get_one_line(tmp_path, monkeypatch, spec, words):
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PROMPTGEN_OFFLINE", "1")
    sg3 = write_nvidia_pickle(random_stylegan3(0, "T", **CHEAP), tmp_path / "sg3.pkl")
    sg2 = write_nvidia_pickle(random_generator(), tmp_path / "sg2.pkl")

    class Evil:
        def __reduce__(self):
            return (eval, ("1+1",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"G_ema": Evil()}))
    (tmp_path / "cut.pkl").write_bytes(sg3.read_bytes()[:5000])
    files = {"sg3": sg3, "sg2": sg2, "evil": tmp_path / "evil.pkl", "cut": tmp_path / "cut.pkl"}
    out = tmp_path / "out"
    one_line_error(
        run("compose", "--gen", spec.format(**files), "--energy", "classifier:digit=3", "--out", out), *words
    )
    assert not out.exists()
