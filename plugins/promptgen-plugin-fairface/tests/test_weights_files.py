"""Wrong weights files, the cache and the offline case: one-line errors, exit code 2."""

from __future__ import annotations

import socket

import promptgen_plugin_fairface.model as fairface_model
import pytest
import torch
from promptgen_plugin_fairface.model import FILENAME
from torchvision.models import resnet18, resnet34
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.core.download import RemoteFile, cache_root
from promptgen.core.errors import PromptgenError
from promptgen.core.registry import build_registry
from promptgen.testing import one_line_error


def state_dict() -> dict[str, torch.Tensor]:
    return resnet34(weights=None, num_classes=18).state_dict()


def write_wrong_shapes(path):
    torch.save(resnet34(weights=None, num_classes=7).state_dict(), path)  # fc is Linear(512, 7)


def write_resnet18(path):
    torch.save(resnet18(weights=None, num_classes=18).state_dict(), path)


def write_checkpoint(path):
    torch.save({"model": state_dict(), "epoch": 3}, path)


def write_list(path):
    torch.save([torch.zeros(3)], path)


def write_whole_model(path):
    torch.save(resnet34(weights=None, num_classes=18), path)  # a pickled module: refused by weights_only


def write_truncated(path):
    torch.save(state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_truncated_legacy(path):
    torch.save(state_dict(), path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_web_page(path):
    path.write_text("<!DOCTYPE html><html><body>Google Drive - Virus scan warning</body></html>")


def write_random_bytes(path):
    path.write_bytes(bytes(range(256)) * 8)


WRONG = {
    "wrong-shapes": (write_wrong_shapes, "fc.weight has shape (7, 512), expected (18, 512)"),
    "resnet18": (write_resnet18, "keys missing (e.g. 'layer1.2."),
    "checkpoint": (write_checkpoint, "entry 'model' holds a dict, not a tensor"),
    "list": (write_list, "holds a list, not a state dict"),
    "whole-model": (write_whole_model, "pickled Python objects such as torchvision.models.resnet.ResNet"),
    "truncated": (write_truncated, "cannot be read as PyTorch weights (the file is damaged or cut short)"),
    "truncated-legacy": (
        write_truncated_legacy,
        "cannot be read as PyTorch weights (the file is damaged or cut short)",
    ),
    "web-page": (write_web_page, "it is a web page, not the weights"),
    "random-bytes": (write_random_bytes, "cannot be read as PyTorch weights (not a PyTorch file, or a damaged one)"),
}


@pytest.mark.parametrize("kind", list(WRONG))
def test_a_wrong_file_is_a_one_line_error(tmp_path, kind):
    write, words = WRONG[kind]
    path = tmp_path / "bad.pt"
    write(path)
    with pytest.raises(PromptgenError) as info:
        build_registry().build_classifier("fairface", {"path": str(path)})
    text = str(info.value)
    assert "\n" not in text and "\x1b" not in text and len(text) < 400, text
    assert words in text and str(path) in text and FILENAME in text and "path=" in text, text


def test_a_wrong_file_at_the_cli(tmp_path):
    path = tmp_path / "bad.pt"
    write_wrong_shapes(path)
    result = CliRunner().invoke(
        app,
        [
            "compose",
            "--gen",
            "mnist",
            "--energy",
            f"classifier:gender=female,path={path}",
            "--out",
            str(tmp_path / "p"),
            "-q",
        ],
    )
    one_line_error(result, "fc.weight has shape (7, 512)", str(path))
    assert not (tmp_path / "p").exists()


def test_a_missing_path_names_it(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "compose",
            "--gen",
            "mnist",
            "--energy",
            f"debias:gender,path={tmp_path / 'nope.pt'}",
            "--out",
            str(tmp_path / "p"),
        ],
    )
    one_line_error(result, str(tmp_path / "nope.pt"), "does not exist", "path=")


@pytest.fixture
def offline(monkeypatch):
    """Point the weights' URL at a port nothing listens on, as when the machine is offline."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    remote = RemoteFile(f"http://127.0.0.1:{port}/{FILENAME}", FILENAME)
    monkeypatch.setattr(fairface_model, "WEIGHTS", remote)
    return remote


def test_offline_is_a_one_line_error_naming_the_url_and_the_cache_path(offline, tmp_path):
    result = CliRunner().invoke(
        app, ["compose", "--gen", "mnist", "--energy", "classifier:gender=female", "--out", str(tmp_path / "p"), "-q"]
    )
    cached = cache_root() / "fairface" / FILENAME
    one_line_error(result, offline.url, str(cached), "path=")
    assert not cached.exists() and not (tmp_path / "p").exists()


def test_a_cached_file_is_used_without_the_network(offline, weights_file):
    cached = cache_root() / "fairface" / FILENAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights_file.read_bytes())
    clf = build_registry().build_classifier("fairface")  # the URL is unreachable: only the cache can serve
    with torch.no_grad():
        assert clf.log_probs(torch.rand(1, 3, 64, 64))["age"].shape == (1, 9)


def test_a_damaged_cached_file_says_to_delete_it(offline):
    cached = cache_root() / "fairface" / FILENAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x80\x02 not a torch file")
    with pytest.raises(PromptgenError) as info:
        build_registry().build_classifier("fairface")
    assert f"delete {cached} to download it again" in str(info.value)
