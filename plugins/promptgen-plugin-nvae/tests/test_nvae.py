"""NVAE through promptgen on random-weight checkpoints in the official format (no downloads, < 60 s)."""

from __future__ import annotations

import argparse
import os

import pytest
import torch
from promptgen_plugin_nvae.checkpoints import CheckpointError, load_decoder
from promptgen_plugin_nvae.testing import random_decoder, write_checkpoint

from promptgen import plugin
from promptgen.core.registry import build_registry, get_registry
from promptgen.plugin import EnergyBase, EnergyEntry, PromptgenError, hookimpl


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    net, args = random_decoder(0)
    return write_checkpoint(net, args, tmp_path_factory.mktemp("nvae") / "checkpoint.pt"), net


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    net, args = random_decoder(1, dataset="mnist", num_latent_scales=2, num_groups_per_scale=3, ada_groups=True)
    return write_checkpoint(net, args, tmp_path_factory.mktemp("nvae") / "checkpoint.pt"), net


def build(spec):
    return get_registry().build_generator(spec)


def test_the_checkpoint_loads_the_same_decoder(fixture):
    path, net = fixture
    loaded = load_decoder(path)
    assert loaded.group_shapes == [(4, 8, 8), (4, 8, 8), (4, 16, 16), (4, 16, 16)]
    eps = [torch.randn(3, *s) for s in net.group_shapes]
    with torch.no_grad():
        assert torch.equal(loaded(eps, 0.8), net(eps, 0.8))


def test_decode_shapes_range_and_latent_layout(fixture):
    path, _ = fixture
    gen = build(f"nvae:path={path},noise=full")
    assert gen.inner.latent_shape == (4, 8, 8) and gen.controlled_size == 256
    assert gen.noise_size == 256 + 2 * 1024 and gen.latent_shape == (256 + 256 + 2048,)
    assert gen.info.resolution == (32, 32) and gen.info.channels == 3 and "non-commercial" in gen.info.licence
    flat = torch.randn(4, *gen.latent_shape)
    x = gen.decode(flat)
    assert x.shape == (4, 3, 32, 32) and x.min() >= 0 and x.max() <= 1 and x.std() > 0.01
    # The same flat latent (top group and noise) gives the same image; other noise, another image.
    assert torch.equal(gen.decode(flat), x)
    other = flat.clone()
    other[:, 256:] = torch.randn(4, gen.noise_size)
    y = gen.decode(other)
    assert not torch.allclose(x, y)
    # ... but the top group still matters: the same noise with another top group, another image.
    top = flat.clone()
    top[:, :256] = torch.randn(4, 256)
    assert not torch.allclose(gen.decode(top), x)
    # Called without noise, the generator draws its own.
    z = flat[:, :256].reshape(4, 4, 8, 8)
    assert not torch.equal(gen.inner.decode(z), gen.inner.decode(z))


def test_the_noise_is_the_conditional_priors_at_t(fixture):
    path, net = fixture
    gen = build(f"nvae:path={path},t=0.6,noise=full")
    flat = torch.randn(2, *gen.latent_shape)
    parts = [flat[:, :256].reshape(2, 4, 8, 8)]
    offset = 256
    for s in net.group_shapes[1:]:
        n = s[0] * s[1] * s[2]
        parts.append(flat[:, offset : offset + n].reshape(2, *s))
        offset += n
    with torch.no_grad():
        assert torch.allclose(gen.decode(flat), net.mean(net(parts, 0.6)))


def test_more_groups_are_latent_parts(fixture):
    path, _ = fixture
    gen = build(f"nvae:path={path},groups=3,noise=full")
    assert gen.inner.latent_parts == {"z0": (4, 8, 8), "z1": (4, 8, 8), "z2": (4, 16, 16)}
    assert gen.controlled_size == 256 + 256 + 1024 and gen.noise_size == 1024
    every = build(f"nvae:path={path},groups=4")
    assert every.noise_size == 0 and every.latent_shape == (2560,)
    flat = torch.randn(2, 2560)
    assert torch.allclose(every.decode(flat), gen.decode(flat))  # same numbers, same images, however they are split


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("groups=5", ["groups=5", "4 latent groups"]),
        ("groups=0", ["groups=0", "at least 1"]),
        ("t=0", ["t=0", "greater than 0"]),
        ("t=1.6", ["t=1.6", "at most 1.5"]),
        ("output=median", ["output", "mean"]),
    ],
)
def test_bad_options_are_one_line_errors(fixture, option, words):
    path, _ = fixture
    with pytest.raises(PromptgenError) as e:
        build(f"nvae:path={path},{option}")
    msg = str(e.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, (w, msg)


def test_output_sample_is_seeded_noise(fixture):
    from promptgen.artifacts.prompt import sample_images

    path, _ = fixture
    gen = build(f"nvae:path={path},output=sample")
    assert "output_seed" in gen.noise
    flat = torch.randn(3, *gen.latent_shape)
    a = gen.decode(flat)
    assert torch.equal(a, gen.decode(flat))
    other = flat.clone()
    other[:, -1] = torch.randn(3)
    assert not torch.equal(a, gen.decode(other))
    assert torch.equal(sample_images(gen, 4, seed=5), sample_images(gen, 4, seed=5))


def test_mnist_is_bernoulli_and_cropped(mnist):
    path, net = mnist
    gen = build(f"nvae:path={path}")
    assert gen.info.resolution == (28, 28) and gen.info.channels == 1
    assert net.group_shapes[0] == (4, 8, 8) and len(net.group_shapes) == 3 + 1
    x = gen.decode(torch.randn(2, *gen.latent_shape))
    assert x.shape == (2, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    s = build(f"nvae:path={path},output=sample").decode(torch.randn(2, gen.latent_shape[0] + 1))
    assert set(s.unique().tolist()) <= {0.0, 1.0}


def test_readjust_bn_changes_the_statistics_reproducibly(fixture):
    path, _ = fixture
    a, b = build(f"nvae:path={path},readjust_bn=3"), build(f"nvae:path={path},readjust_bn=3")
    plain = build(f"nvae:path={path}")
    flat = torch.randn(2, *a.latent_shape)
    assert torch.equal(a.decode(flat), b.decode(flat))
    assert not torch.allclose(a.decode(flat), plain.decode(flat))


def test_conformance_kit(fixture):
    from promptgen.testing import check_generator

    path, _ = fixture
    check_generator(get_registry(), f"nvae:path={path}")
    check_generator(get_registry(), f"nvae:path={path},groups=2,output=sample,t=1.2")


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['NVAE_MARKER']}",))


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("NVAE_MARKER", str(marker))
    bad = tmp_path / "checkpoint.pt"
    torch.save({"args": _Evil(), "state_dict": {}}, bad)
    with pytest.raises(CheckpointError) as e:
        build(f"nvae:path={bad}")
    assert "\n" not in str(e.value) and "refused, and nothing ran" in str(e.value) and "system" in str(e.value)
    assert not marker.exists()


def test_truncated_and_other_files_are_one_line_errors(fixture, tmp_path):
    path, net = fixture
    data = path.read_bytes()
    cases = {}
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    cases["cut.pt"] = "damaged or truncated"
    (tmp_path / "text.pt").write_text("hello")
    cases["text.pt"] = "damaged or truncated"
    torch.save({"g_ema": {"w": torch.zeros(2)}, "latent_avg": torch.zeros(2)}, tmp_path / "stylegan.pt")
    cases["stylegan.pt"] = "not an NVAE checkpoint"
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    cases["bare.pt"] = "not an NVAE checkpoint"
    # Another architecture: the arguments say 3 groups per scale, the weights have 2.
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = torch.load(path, weights_only=True)
    args = vars(ckpt["args"]) | {"num_groups_per_scale": 3}
    torch.save({**ckpt, "args": argparse.Namespace(**args)}, tmp_path / "other.pt")
    cases["other.pt"] = "decoder weights are missing"
    # Decoder weights gone (an encoder-only file).
    enc = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("dec_tower.")}
    torch.save({**ckpt, "state_dict": enc}, tmp_path / "encoder.pt")
    cases["encoder.pt"] = "decoder weights are missing"
    for name, words in cases.items():
        with pytest.raises(PromptgenError) as e:
            build(f"nvae:path={tmp_path / name}")
        assert "\n" not in str(e.value) and words in str(e.value), (name, str(e.value))


def test_a_zoo_name_without_the_file_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path / "home"))
    with pytest.raises(PromptgenError) as e:
        build("nvae-ffhq-256")
    msg = str(e.value)
    assert "\n" not in msg and "by hand" in msg and "drive.google.com" in msg and "nvae-ffhq-256.pt" in msg


def test_a_zoo_name_loads_from_the_cache(fixture, tmp_path, monkeypatch):
    path, _net = fixture
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path / "home"))
    target = tmp_path / "home" / "nvae" / "nvae-cifar10.pt"
    target.parent.mkdir(parents=True)
    target.write_bytes(path.read_bytes())
    gen = build("nvae-cifar10:t=0.7")
    assert gen.info.licence.startswith("NVIDIA Source Code License") and gen.info.name == "nvae-cifar10"


class Bright(EnergyBase):
    def __call__(self, images, latents):
        return -images.mean(dim=(1, 2, 3))


class BrightPlugin:
    @hookimpl
    def promptgen_energies(self):
        return [EnergyEntry("bright", lambda spec, options, registry: Bright("bright"), default_weight=10)]


def test_compose_and_sample_end_to_end(fixture, tmp_path):
    from promptgen.artifacts.prompt import sample_images
    from promptgen.composing import compose
    from promptgen.training.trainer import TrainConfig

    path, _ = fixture
    registry = build_registry(extra_plugins=[("bright", BrightPlugin())])
    prompt = compose(f"nvae:path={path}", ["bright"], tmp_path / "p", registry=registry, progress=False, preview=0,
                     train=TrainConfig(steps=3, batch_size=4), flow={"transforms": 2, "hidden": 8})
    assert prompt.manifest.flow.features == 256 and prompt.manifest.flow.passthrough == 1  # the seed of the lower groups
    a, b = sample_images(prompt, 4, seed=7), sample_images(prompt, 4, seed=7)
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, b)
    assert not torch.equal(a, sample_images(prompt, 4, seed=8))


def test_by_default_one_number_per_image_seeds_the_lower_groups(fixture):
    """noise=seeded: the flat latent is the top group and one seed number, whatever the groups' size."""
    path, _ = fixture
    seeded, full = build(f"nvae:path={path}"), build(f"nvae:path={path},noise=full")
    assert seeded.latent_shape == (256 + 1,) and seeded.noise_size == 1 and seeded.controlled_size == 256
    flat = torch.randn(3, 257)
    x = seeded.decode(flat)
    assert x.shape == (3, 3, 32, 32) and torch.equal(seeded.decode(flat), x)
    other = flat.clone()
    other[:, 256] = torch.randn(3)
    assert not torch.allclose(seeded.decode(other), x)  # another seed: other lower groups
    # The seeded groups are those that full noise would receive: the same images from the same numbers.
    lower = plugin.seeded_noise(flat[:, 256], full.inner.lower_shapes)
    as_full = torch.cat([flat[:, :256], *[lower[n].flatten(1) for n in full.inner.lower_shapes]], 1)
    torch.testing.assert_close(full.decode(as_full), x)


def test_promptgen_list_says_the_weights_are_non_commercial_and_their_size():
    registry = get_registry()
    for name in ("nvae-ffhq-256", "nvae-celebahq-256", "nvae-celeba-64", "nvae-cifar10", "nvae-mnist"):
        summary = registry.generators[name].summary
        assert "non-commercial" in summary and "M decoder parameters" in summary, summary


def test_the_second_names_of_unnormalised_weights_are_skipped(fixture):
    """Official state dicts hold ``*.weight_normalized`` beside ``*.weight``; the fixture does too, and loading skips them."""
    path, _ = fixture
    with torch.serialization.safe_globals([argparse.Namespace]):
        saved = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    aliases = [k for k in saved if k.endswith(".weight_normalized")]
    assert aliases, "the fixture must hold the aliases an official checkpoint holds"
    decoder = load_decoder(path)
    assert not any(k.endswith(".weight_normalized") for k in decoder.state_dict())
