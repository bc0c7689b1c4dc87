"""IR-SE50 in model_ir_se50.pth's format: loading, bad files, the face crop, and the arcface-id energy."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from promptgen_plugin_arcface.checkpoints import CheckpointError, load_network
from promptgen_plugin_arcface.energy import ArcFaceIdEnergy, face_crop
from promptgen_plugin_arcface.network import IRSE50
from promptgen_plugin_arcface.options import DEFAULT_WEIGHT
from promptgen_plugin_arcface.testing import smooth_images

from promptgen import plugin
from promptgen.core.registry import get_registry


def build(spec):
    return get_registry().build_energy(spec)


def ctx(reference):
    return plugin.EnergyContext(reference=reference)


# -- the file format ------------------------------------------------------------------------------------


def test_the_keys_are_model_ir_se50s(state):
    with torch.device("meta"):
        keys = list(IRSE50().state_dict())
    assert list(state) == keys and len(keys) == 397  # 397 with the num_batches_tracked counters
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes["input_layer.0.weight"] == (64, 3, 3, 3) and shapes["input_layer.2.weight"] == (64,)
    assert shapes["body.0.res_layer.5.fc1.weight"] == (4, 64, 1, 1)  # SE, reduction 16
    assert "body.0.shortcut_layer.0.weight" not in shapes  # 64 -> 64: a strided identity, no weights
    assert shapes["body.3.shortcut_layer.0.weight"] == (128, 64, 1, 1) and shapes["body.3.shortcut_layer.1.running_var"] == (128,)
    assert shapes["body.23.res_layer.3.weight"] == (512, 512, 3, 3) and "body.24.res_layer.0.weight" not in shapes
    assert shapes["output_layer.3.weight"] == (512, 512 * 7 * 7) and shapes["output_layer.4.running_mean"] == (512,)


def test_loads_through_the_registry(energy, weights):
    assert isinstance(energy, ArcFaceIdEnergy) and energy.label == f"arcface-id:path={weights}"
    assert not any(p.requires_grad for p in energy.net.parameters()) and not energy.net.training
    caps = plugin.capabilities(energy)
    assert caps.contextual and caps.bounded and caps.lower_bound() == 0.0
    assert energy.to("cpu") is energy
    entry = get_registry().energy("arcface-id")
    assert entry.default_weight == DEFAULT_WEIGHT == 10 and entry.example == "arcface-id"


def test_legacy_files_prefixes_and_missing_counters_load(state, tmp_path):
    legacy = tmp_path / "legacy.pth"  # TreB1eN saved with PyTorch 0.4: the pre-zip format
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    prefixed = tmp_path / "prefixed.pth"  # saved from nn.DataParallel, without the counters of PyTorch < 0.4.1
    torch.save({f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}, prefixed)
    faces = smooth_images(2, seed=4) * 2 - 1
    want = load_network(legacy)(faces)
    torch.testing.assert_close(load_network(prefixed)(faces), want, atol=0, rtol=0)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def _bad(tmp_path, name, obj=None, data=None):
    path = tmp_path / name
    if data is not None:
        path.write_bytes(data)
    else:
        torch.save(obj, path)
    return path


def test_bad_files_are_one_line_errors(state, weights, tmp_path):
    whole = weights.read_bytes()
    cases = {
        _bad(tmp_path, "truncated.pth", data=whole[: len(whole) // 3]): "damaged or truncated",
        _bad(tmp_path, "empty.pth", data=b""): "empty",
        _bad(tmp_path, "text.pth", data=b"hello, not weights\n" * 10): "damaged or truncated",
        _bad(tmp_path, "list.pth", [torch.zeros(3)]): "does not hold a state dict",
        _bad(tmp_path, "mobile.pth", {"conv1.conv.weight": torch.zeros(64, 3, 3, 3)}): "MobileFaceNet",
        _bad(tmp_path, "ir.pth", {k: v for k, v in state.items() if ".res_layer.5." not in k}): "no squeeze-and-excitation",
        _bad(tmp_path, "deep.pth", {**state, "body.24.res_layer.0.weight": torch.ones(512)}): "24",
        _bad(tmp_path, "shape.pth", {**state, "output_layer.3.weight": torch.zeros(512, 512 * 14 * 14)}): "224 px",
        _bad(tmp_path, "nan.pth", {**state, "input_layer.0.weight": torch.full((64, 3, 3, 3), float("nan"))}): "non-finite",
        _bad(tmp_path, "ints.pth", {**state, "input_layer.0.weight": torch.zeros(64, 3, 3, 3, dtype=torch.int64)}): "floating point",
    }
    hostile = tmp_path / "hostile.pth"
    hostile.write_bytes(pickle.dumps(Payload()))
    cases[hostile] = "asks to run posix.system"
    for path, words in cases.items():
        with pytest.raises(CheckpointError) as info:
            build(f"arcface-id:path={path}")
        message = str(info.value)
        assert words in message and "\n" not in message, (path.name, message)


def test_a_missing_path_or_cache_says_where_to_get_the_file(tmp_path, monkeypatch):
    with pytest.raises(plugin.SpecError, match="is not a file"):
        build(f"arcface-id:path={tmp_path / 'nope.pth'}")
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path))
    with pytest.raises(plugin.DownloadError, match=r"by hand from https://1drv\.ms/.*arcface/model_ir_se50\.pth") as info:
        build("arcface-id")
    assert "\n" not in str(info.value)
    with pytest.raises(plugin.SpecError):
        build("arcface-id:crop=eyes")


def test_the_cached_file_is_used(weights, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path))
    (tmp_path / "arcface").mkdir()
    (tmp_path / "arcface" / "model_ir_se50.pth").symlink_to(weights)
    assert isinstance(build("arcface-id:crop=none"), ArcFaceIdEnergy)


# -- the crop -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, 128, 256, 1024])
def test_the_crop_gives_112_faces_in_minus_one_one(size):
    x = smooth_images(2, size, seed=size)
    faces = face_crop(x)
    assert faces.shape == (2, 3, 112, 112) and faces.min() >= -1 and faces.max() <= 1
    assert face_crop(x, "none").shape == (2, 3, 112, 112)
    assert face_crop(x[:, :1]).shape == (2, 3, 112, 112)  # grey images: three equal channels


def test_the_crop_is_the_papers_window():
    x = torch.zeros(1, 3, 256, 256)
    x[:, :, 35:223, 32:220] = 1  # the FFHQ face window: all of it, nothing else
    assert torch.equal(face_crop(x), torch.ones(1, 3, 112, 112))
    y = torch.ones(1, 3, 256, 256)
    y[:, :, 35:223, 32:220] = 0
    assert torch.equal(face_crop(y), -torch.ones(1, 3, 112, 112))
    big = x.repeat_interleave(4, 2).repeat_interleave(4, 3)  # 1024 px: pooled to 256 first
    assert torch.equal(face_crop(big), face_crop(x))
    with pytest.raises(plugin.PromptgenError, match="takes"):
        face_crop(torch.zeros(1, 4, 256, 256))


# -- the energy -----------------------------------------------------------------------------------------


def test_identical_images_cost_nothing_and_others_do(energy):
    x = smooth_images(3, 256, seed=10)
    same = energy.context_energy(x, None, ctx(x.clone()))
    assert same.shape == (3,) and float(same.abs().max()) < 1e-5
    other = energy.context_energy(x, None, ctx(smooth_images(3, 256, seed=11)))
    assert bool((other > 0.05).all()) and bool((other <= 2).all())
    closer = energy.context_energy(x, None, ctx(0.8 * x + 0.2 * smooth_images(3, 256, seed=11)))
    assert bool((closer < other).all())  # a twin that is mostly the same image is closer
    # The twin may be of another size (it is cropped and resized the same way); one pair is one value.
    torch.testing.assert_close(energy.context_energy(x, None, ctx(x.repeat_interleave(2, 2).repeat_interleave(2, 3))), same, atol=1e-5, rtol=0)


def test_gradients_reach_both_images(energy):
    x = smooth_images(2, 256, seed=20).requires_grad_(True)
    ref = smooth_images(2, 256, seed=21).requires_grad_(True)
    energy.context_energy(x, torch.zeros(2, 8), ctx(ref)).sum().backward()
    for g in (x.grad, ref.grad):
        assert g is not None and bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0
    # Only the face window matters.
    assert float(x.grad[:, :, :35].abs().max()) == 0 and float(x.grad[:, :, 35:223, 32:220].abs().sum()) > 0


def test_without_a_twin_it_refuses_in_one_line(energy):
    x = smooth_images(2, 256, seed=30)
    for call in (lambda: energy(x, torch.zeros(2, 8)), lambda: energy.context_energy(x, None, plugin.EnergyContext())):
        with pytest.raises(plugin.PromptgenError, match="needs a conditional prompt") as info:
            call()
        assert "\n" not in str(info.value)
    with pytest.raises(plugin.PromptgenError, match="one twin per image"):
        energy.context_energy(x, None, ctx(x[:1]))


def test_deterministic_and_batch_independent(energy):
    x, ref = smooth_images(4, 128, seed=40), smooth_images(4, 128, seed=41)
    whole = energy.context_energy(x, None, ctx(ref))
    assert torch.equal(whole, energy.context_energy(x, None, ctx(ref)))
    halves = torch.cat([energy.context_energy(x[:2], None, ctx(ref[:2])), energy.context_energy(x[2:], None, ctx(ref[2:]))])
    torch.testing.assert_close(whole, halves, atol=1e-5, rtol=0)
