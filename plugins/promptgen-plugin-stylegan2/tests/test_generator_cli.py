"""StyleGAN2 through promptgen's registry and CLI: options, the zoo's cache, offline errors, compose and sample."""

from __future__ import annotations

import dataclasses
import json
import socket

import pytest
import torch
from promptgen_plugin_stylegan2 import zoo
from promptgen_plugin_stylegan2.testing import random_generator, write_nvidia_pickle, write_rosinality_checkpoint
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.core.download import cache_root
from promptgen.core.registry import get_registry
from promptgen.testing import one_line_error

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture()
def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now: connections are refused, as offline
    return port


def ffhq_at(url):
    """stylegan2-ffhq with its checkpoint published at ``url``."""
    m = zoo.MODELS["stylegan2-ffhq"]
    return dataclasses.replace(m, weights=dataclasses.replace(m.weights, url=url))


def build(spec):
    return get_registry().build_generator(spec)


def test_a_checkpoint_becomes_a_promptgen_generator(tmp_path):
    g = random_generator(5)
    path = write_nvidia_pickle(g, tmp_path / "g.pkl")
    gen = build(f"stylegan2:path={path}")
    assert gen.latent_shape == (16,) and gen.info.resolution == (32, 32) and gen.info.channels == 3
    z = torch.randn(3, 16)
    x = gen.decode(z)
    with torch.no_grad():
        expected = ((g(z) + 1) / 2).clamp(0, 1)
    assert torch.equal(x, expected)
    # Options: truncation, output size, noise, the W space.
    small = build(f"stylegan2:path={path},size=16,psi=0.5,noise=none")
    assert small.decode(z).shape == (3, 3, 16, 16) and small.info.resolution == (16, 16)
    with torch.no_grad():
        full = ((g(z, psi=0.5, noise_mode="none") + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(small.decode(z), torch.nn.functional.interpolate(full, size=(16, 16), mode="bilinear", antialias=True))
    w = build(f"stylegan2:path={path},space=w")
    assert w.latent_shape == (16,)
    # In W, a standard normal latent lands on the fitted mean and spread of mapped latents.
    dec = w.module
    with torch.no_grad():
        ws = g.mapping(torch.randn(20000, 16))[:, 0]
    torch.testing.assert_close(dec.w_mean, ws.mean(0), atol=0.05 * float(ws.std()), rtol=0)
    # noise=random: the per-pixel noise is the generator's own, drawn by promptgen with the latent
    # (one number per image seeds the layers' noise), so a prompt does not control it and a seed repeats it.
    from promptgen.artifacts.prompt import sample_images

    rnd = build(f"stylegan2:path={path},noise=random")
    assert rnd.latent_shape == (17,) and rnd.noise_size == 1 and rnd.controlled_size == 16
    flat = torch.cat([z, torch.randn(3, 1)], 1)
    assert torch.equal(rnd.decode(flat), rnd.decode(flat))
    other = torch.cat([z, torch.randn(3, 1)], 1)
    assert not torch.equal(rnd.decode(flat), rnd.decode(other))
    with torch.no_grad():  # the official network with the same noise maps gives the same images
        maps = rnd.inner.layer_noise(flat[:, 16])
        torch.testing.assert_close(rnd.decode(flat), ((g(z, noise=maps) + 1) / 2).clamp(0, 1))
    assert torch.equal(sample_images(rnd, 4, seed=1), sample_images(rnd, 4, seed=1))
    assert not torch.equal(rnd.inner.decode(z), rnd.inner.decode(z))  # called without noise, it draws its own


def test_gradients_reach_the_latent(tmp_path):
    gen = build(f"stylegan2:path={write_rosinality_checkpoint(random_generator(), tmp_path / 'g.pt')}")
    z = torch.randn(2, 16, requires_grad=True)
    gen.decode(z).mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_class_conditional_models_need_a_class(tmp_path, home, monkeypatch):
    g = random_generator(6, c_dim=10)
    cached = home / "stylegan2" / zoo.MODELS["stylegan2-cifar10"].filename
    cached.parent.mkdir(parents=True)
    write_nvidia_pickle(g, cached)
    one_line_error(run("compose", "--gen", "stylegan2-cifar10", "--energy", "classifier:digit=3", "--out", home / "x"), "class-conditional", "class=")
    cat = build("stylegan2-cifar10:class=cat")
    three = build("stylegan2-cifar10:class=3")
    z = torch.randn(2, 16)
    assert torch.equal(cat.decode(z), three.decode(z))
    assert not torch.equal(cat.decode(z), build("stylegan2-cifar10:class=4").decode(z))
    with torch.no_grad():
        assert torch.equal(cat.decode(z), ((g(z, torch.eye(10)[[3, 3]]) + 1) / 2).clamp(0, 1))
    one_line_error(run("compose", "--gen", "stylegan2-cifar10:class=unicorn", "--energy", "classifier:digit=3", "--out", home / "x"), "unicorn", "airplane")


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("psi=2", ["psi=2", "at most 1"]),
        ("noise=loud", ["noise='loud'", "'const'"]),
        ("space=q", ["space='q'", "'z'"]),
        ("size=1.5", ["size=1.5", "whole number"]),
        ("size=4", ["size=4", "at least 8"]),
        ("precision=fp8", ["precision='fp8'", "'fp16'"]),
        ("class=1", ["not class-conditional"]),
        ("trunc=0.5", ["unknown option", "trunc"]),
    ],
)
def test_bad_options_get_one_line(tmp_path, option, words):
    path = write_nvidia_pickle(random_generator(), tmp_path / "g.pkl")
    one_line_error(run("compose", "--gen", f"stylegan2:path={path},{option}", "--energy", "classifier:digit=3", "--out", tmp_path / "out"), *words)
    assert not (tmp_path / "out").exists()


def test_a_named_model_loads_from_the_cache_without_network(home, monkeypatch, closed_port):
    monkeypatch.setitem(zoo.MODELS, "stylegan2-ffhq", ffhq_at(f"http://127.0.0.1:{closed_port}/ffhq.pkl"))
    g = random_generator(7)
    target = cache_root() / "stylegan2" / zoo.MODELS["stylegan2-ffhq"].filename
    target.parent.mkdir(parents=True)
    write_nvidia_pickle(g, target)
    gen = build("stylegan2-ffhq")
    z = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(gen.decode(z), ((g(z) + 1) / 2).clamp(0, 1))
    assert gen.info.licence.startswith("NVIDIA Source Code License")


def test_offline_names_the_url_and_where_to_put_the_file(home, monkeypatch, closed_port):
    url = f"http://127.0.0.1:{closed_port}/ffhq.pkl"
    monkeypatch.setitem(zoo.MODELS, "stylegan2-ffhq", ffhq_at(url))
    target = home / "stylegan2" / zoo.MODELS["stylegan2-ffhq"].filename
    line = one_line_error(run("compose", "--gen", "stylegan2-ffhq", "--energy", "classifier:digit=3", "--out", home / "out"), url, str(target), "path=")
    assert "refused" in line or "connect" in line
    assert not target.exists()
    # A model without a direct link says where to get it.
    one_line_error(run("compose", "--gen", "stylegan2-ffhq-256-rosinality", "--energy", "classifier:digit=3", "--out", home / "out"), "550000.pt", "by hand", "path=")


def test_a_hostile_checkpoint_is_refused_at_the_cli(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (eval, ("1+1",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"G_ema": Evil()}))
    one_line_error(run("compose", "--gen", f"stylegan2:path={tmp_path / 'evil.pkl'}", "--energy", "classifier:digit=3", "--out", tmp_path / "out"), "builtins.eval", "refusing")


def test_compose_and_sample_with_stylegan2_and_a_fairface_shaped_classifier(tmp_path):
    import torchvision

    torch.manual_seed(0)
    fairface = tmp_path / "res34_fair_align_multi_7_20190809.pt"
    torch.save(torchvision.models.resnet34(num_classes=18).state_dict(), fairface)
    gen = write_nvidia_pickle(random_generator(8), tmp_path / "g.pkl")
    out = tmp_path / "female"
    result = run(
        "compose", "--gen", f"stylegan2:path={gen}", "--energy", f"classifier:gender=female,path={fairface}",
        "--steps", 3, "--batch-size", 4, "--eval-every", 3, "--eval-batch", 8, "--out", out, "--quiet",
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"]["spec"].startswith("stylegan2:path=")
    assert manifest["energies"][0]["spec"].startswith("classifier:gender=female")
    assert manifest["generator"]["latent_shape"] == [16]
    # Sampling needs no energy model: the classifier's weights can be gone.
    fairface.unlink()
    result = run("sample", out, "-n", 6, "-o", tmp_path / "grid.png")
    assert result.exit_code == 0, result.output
    from PIL import Image

    grid = Image.open(tmp_path / "grid.png")
    assert grid.mode == "RGB" and min(grid.size) >= 32
