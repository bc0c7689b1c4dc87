"""The foreign digit generators: found through their entry point, read from files in the published format
(written here with random weights), decoded as the published networks decode, and refused in one line when a
file is not what it should be."""

from __future__ import annotations

import importlib.metadata as md
import os
import pickle
import zipfile

import pytest
import torch
from promptgen_plugin_foreign_digits import GENERATORS
from promptgen_plugin_foreign_digits.files import FILES, load_mlp_gan, load_vae_decoder
from promptgen_plugin_foreign_digits.judge import LeNetJudge
from promptgen_plugin_foreign_digits.testing import write_lenet, write_mlp_gan, write_mlp_vae
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.core.registry import get_registry
from promptgen.plugin import DownloadError, PromptgenError


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("foreign")
    return {
        "mlp-gan": write_mlp_gan(folder / "G--300.ckpt"),
        "mlp-vae": write_mlp_vae(folder / "vae_epoch_25.pth"),
        "lenet": write_lenet(folder / "lenet.pth"),
    }


def test_found_through_the_entry_point_and_judged_by_the_core_evaluator():
    (entry,) = [e for e in md.distribution("promptgen-plugin-foreign-digits").entry_points if e.group == "promptgen"]
    assert entry.value == "promptgen_plugin_foreign_digits"
    registry = get_registry()
    (record,) = [p for p in registry.plugins if p.distribution == "promptgen-plugin-foreign-digits"]
    assert record.error is None and sorted(record.generators) == sorted(f"foreign-{n}" for n in GENERATORS)
    # Only generators: the LeNet judge is not registered, so `promptgen eval` keeps the core's evaluator.
    assert record.classifiers == [] and record.energies == []
    assert all(registry.generators[g].judges == ("mnist-digit-evaluator",) for g in record.generators)


def test_the_fixtures_are_in_the_published_format(files):
    # Legacy (non-zip) pickles of plain state dicts, as the published files are.
    for path in files.values():
        assert not zipfile.is_zipfile(path)
    with pytest.raises(RuntimeError, match="CUDA"):  # saved from a GPU, as the published file was
        torch.load(files["mlp-gan"], weights_only=True)
    gan = torch.load(files["mlp-gan"], weights_only=True, map_location="cpu")
    assert [(k, tuple(v.shape)) for k, v in gan.items()] == [
        ("0.weight", (256, 64)), ("0.bias", (256,)), ("2.weight", (256, 256)), ("2.bias", (256,)),
        ("4.weight", (784, 256)), ("4.bias", (784,)),
    ]
    vae = torch.load(files["mlp-vae"], weights_only=True)
    assert list(vae) == [f"{n}.{p}" for n in ("fc1", "fc21", "fc22", "fc3", "fc4") for p in ("weight", "bias")]


def test_the_gan_decodes_as_the_published_network(files):
    gen = get_registry().build_generator(f"foreign-mlp-gan:path={files['mlp-gan']}")
    assert gen.latent_shape == (64,) and gen.info.resolution == (28, 28) and gen.info.channels == 1
    z = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    state = torch.load(files["mlp-gan"], weights_only=True, map_location="cpu")
    # The published generator by hand: three Linear layers, ReLU, ReLU, Tanh; then (x + 1) / 2 as an image.
    h = torch.relu(z @ state["0.weight"].T + state["0.bias"])
    h = torch.relu(h @ state["2.weight"].T + state["2.bias"])
    expected = ((torch.tanh(h @ state["4.weight"].T + state["4.bias"]) + 1) / 2).view(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(gen.decode(z), expected, atol=1e-6)


def test_the_vae_decodes_with_its_decoder_only(files):
    gen = get_registry().build_generator(f"foreign-mlp-vae:path={files['mlp-vae']}")
    assert gen.latent_shape == (20,)
    z = torch.randn(4, 20, generator=torch.Generator().manual_seed(2))
    state = torch.load(files["mlp-vae"], weights_only=True)
    h = torch.relu(z @ state["fc3.weight"].T + state["fc3.bias"])
    expected = torch.sigmoid(h @ state["fc4.weight"].T + state["fc4.bias"]).view(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(gen.decode(z), expected, atol=1e-6)


def test_the_lenet_judge_reads_its_file(files):
    judge = LeNetJudge(files["lenet"])
    images = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    logp = judge(images)
    assert logp.shape == (6, 10) and torch.allclose(logp.exp().sum(1), torch.ones(6), atol=1e-5)
    top, sure = judge.judge(images)
    assert torch.equal(top, logp.argmax(1)) and sure.dtype == torch.bool


def test_each_file_is_checked_against_its_network(files, tmp_path):
    with pytest.raises(PromptgenError, match=r"'vae_epoch_25.pth' is not the MLP GAN's G--300.ckpt .*: it lacks 6 of the 6 keys needed .* and has 10 others") as info:
        load_mlp_gan(files["mlp-vae"])
    assert "\n" not in str(info.value)
    with pytest.raises(PromptgenError, match="is not the MLP VAE's"):
        load_vae_decoder(files["mlp-gan"])
    wide = dict(torch.load(files["mlp-gan"], weights_only=True, map_location="cpu"))
    wide["0.weight"] = torch.zeros(256, 100)  # another latent size
    torch.save(wide, tmp_path / "wide.ckpt", _use_new_zipfile_serialization=False)
    with pytest.raises(PromptgenError, match=r"'0.weight' has shape \(256, 100\), where \(256, 64\) is expected"):
        load_mlp_gan(tmp_path / "wide.ckpt")
    broken = dict(wide, **{"0.weight": torch.full((256, 64), float("nan"))})
    torch.save(broken, tmp_path / "nan.ckpt", _use_new_zipfile_serialization=False)
    with pytest.raises(PromptgenError, match="non-finite values"):
        load_mlp_gan(tmp_path / "nan.ckpt")
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(files["mlp-gan"].read_bytes()[:5000])
    with pytest.raises(PromptgenError, match="damaged or truncated"):
        load_mlp_gan(cut)


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_hostile_file_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    with open(tmp_path / "G--300.ckpt", "wb") as f:
        pickle.dump({"0.weight": Payload(str(marker))}, f)
    result = CliRunner().invoke(app, ["sample", "--gen", f"foreign-mlp-gan:path={tmp_path / 'G--300.ckpt'}", "-n", "2",
                                      "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "asks to run posix.mkdir" in result.output and "Traceback" not in result.output
    assert not marker.exists() and not (tmp_path / "x.png").exists()


def test_offline_without_the_file_is_one_line_naming_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PROMPTGEN_OFFLINE", "1")
    with pytest.raises(DownloadError) as info:
        get_registry().build_generator("foreign-mlp-vae")
    text = str(info.value)
    assert "\n" not in text and FILES["mlp-vae"].remote.url in text and "path=" in text
    assert FILES["mlp-vae"].remote.url.startswith("https://github.com/csinva/gan-vae-pretrained-pytorch/raw/9b6401e")


def test_a_cached_download_is_used_without_the_network(files, tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "foreign-digits"
    cache.mkdir(parents=True)
    (cache / "G--300.ckpt").write_bytes(files["mlp-gan"].read_bytes())
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PROMPTGEN_OFFLINE", "1")
    gen = get_registry().build_generator("foreign-mlp-gan")
    assert gen.info.source == FILES["mlp-gan"].remote.url


def test_compose_and_sample_through_the_command_line(files, tmp_path):
    spec = f"foreign-mlp-gan:path={files['mlp-gan']}"
    result = CliRunner().invoke(app, [
        "compose", "--gen", spec, "--energy", "classifier:digit=0", "--steps", "6", "--batch-size", "16", "--eval-every", "3",
        "--eval-batch", "32", "--check-samples", "64", "--transforms", "1", "--hidden", "8", "-q", "--out", str(tmp_path / "p"),
    ])
    assert result.exit_code == 0, result.output
    # The closing check judges the stranger's images with the core's evaluator and realism check.
    assert "junk" in result.output and "by mnist-digit-evaluator" in result.output
    sampled = CliRunner().invoke(app, ["sample", str(tmp_path / "p"), "-n", "4", "--seed", "0", "-o", str(tmp_path / "s.png")])
    assert sampled.exit_code == 0, sampled.output and (tmp_path / "s.png").is_file()


@pytest.mark.parametrize("name", list(GENERATORS))
def test_the_generators_pass_the_conformance_kit(files, name):
    from promptgen.testing import check_entry

    result = check_entry(get_registry(), "generator", f"foreign-{name}", spec=f"foreign-{name}:path={files[name]}")
    assert result.status == "passed", result
