"""The FairFace classifier against a direct torchvision computation, on random weights saved like the released file."""

from __future__ import annotations

import pytest
import torch
from promptgen_plugin_fairface.attributes import AGES, GENDERS, RACES
from promptgen_plugin_fairface.model import FILENAME, IMAGENET_MEAN, IMAGENET_STD, WEIGHTS, build_fairface
from torchvision.models import resnet34
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from promptgen.core.registry import build_registry


def reference_logits(state: dict, images: torch.Tensor) -> torch.Tensor:
    """FairFace's documented pipeline on [0, 1] RGB images: resize to 224×224, ImageNet-normalise, ResNet-34."""
    net = resnet34(weights=None, num_classes=18)
    net.load_state_dict(state)
    net.eval()
    x = TF.resize(images, [224, 224], interpolation=InterpolationMode.BILINEAR, antialias=True)
    x = TF.normalize(x, list(IMAGENET_MEAN), list(IMAGENET_STD))
    with torch.no_grad():
        return net(x)


def test_the_registered_classifier_declares_fairfaces_labels():
    entry = build_registry().classifier("fairface")
    assert entry.role == "control"
    assert dict(entry.attributes) == {"race": list(RACES), "gender": list(GENDERS), "age": list(AGES)}
    assert list(RACES) == [
        "White",
        "Black",
        "Latino_Hispanic",
        "East Asian",
        "Southeast Asian",
        "Indian",
        "Middle Eastern",
    ]
    assert list(GENDERS) == ["Male", "Female"]
    assert list(AGES) == ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"]
    assert set(entry.options.model_fields) == {"path"}
    assert WEIGHTS.filename == FILENAME and WEIGHTS.sha256 is None


@pytest.mark.parametrize("legacy", [False, True], ids=["zip-format", "pre-1.6-format"])
@pytest.mark.parametrize("size", [256, 224, 160], ids=["shrink", "same", "enlarge"])
def test_outputs_equal_torchvision_with_the_documented_preprocessing(tmp_path, size, legacy, make_state_dict):
    state = make_state_dict(seed=size)
    path = tmp_path / FILENAME
    # The 2019 file predates PyTorch 1.6's zip format; both must load.
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    clf = build_registry().build_classifier("fairface", {"path": str(path)})
    images = torch.rand(3, 3, size, size)
    logits = reference_logits(state, images)
    with torch.no_grad():
        logp = clf.log_probs(images)
    assert set(logp) == {"race", "gender", "age"}
    assert torch.allclose(logp["race"], torch.log_softmax(logits[:, 0:7], 1), atol=1e-4)
    assert torch.allclose(logp["gender"], torch.log_softmax(logits[:, 7:9], 1), atol=1e-4)
    assert torch.allclose(logp["age"], torch.log_softmax(logits[:, 9:18], 1), atol=1e-4)
    # Random weights still separate the images: the test would notice a constant output.
    assert logp["age"].argmax(1).unique().numel() > 1 or logp["race"].std(0).max() > 1e-3


def test_grey_images_are_repeated_to_rgb(weights_file):
    clf = build_fairface(weights_file)
    grey = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        a, b = clf.log_probs(grey), clf.log_probs(grey.expand(-1, 3, -1, -1))
    assert all(torch.allclose(a[k], b[k]) for k in a)


def test_gradients_reach_the_images_and_not_the_weights(weights_file):
    clf = build_fairface(weights_file)
    images = torch.rand(2, 3, 128, 128, requires_grad=True)
    logp = clf.log_probs(images)
    (-logp["gender"][:, 1]).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in clf.module.parameters())
    assert not clf.module.training


def test_features_are_the_pooled_activations(weights_file):
    clf = build_fairface(weights_file)
    images = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        feats = clf.features(images)
        logits = clf.module(images)
    assert feats.shape == (2, 512)
    fc = clf.module.resnet.fc
    assert torch.allclose(fc(feats), logits, atol=1e-4)  # fc reads exactly these features
