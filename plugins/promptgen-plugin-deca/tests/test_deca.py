"""The deca-pose energy: DECA's file format, safe loading, the target rotation, the angle energy, conformance."""

from __future__ import annotations

import math
import os
import pickle

import pytest
import roma
import torch
from promptgen_plugin_deca.checkpoints import CheckpointError, load_encoder
from promptgen_plugin_deca.energy import DecaPose, to_deca_input
from promptgen_plugin_deca.network import GLOBAL_ROTATION, N_PARAMS, FlameEncoder, param_slice
from promptgen_plugin_deca.options import CANONICAL, DEFAULT_WEIGHT
from promptgen_plugin_deca.testing import random_encoder_state, write_deca_model

from promptgen import plugin
from promptgen.core.registry import build_registry
from promptgen.testing import check_energy, toy_generator_entry


def registry_with_toy():
    class Toy:
        @plugin.hookimpl
        def promptgen_generators(self):
            return [toy_generator_entry("toy-rgb")]

    return build_registry(extra_plugins=[("toy", Toy())])


def standin_encoder_state(**changes) -> dict[str, torch.Tensor]:
    """E_flame's keys and shapes as zeros broadcast (a few bytes): for files that must fail before the weights matter."""
    state = {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in FlameEncoder().state_dict().items()}
    for k, v in changes.items():
        k = k.replace("__", ".")
        if v is None:
            state.pop(k)
        else:
            state[k] = v
    return state


# --- the format -------------------------------------------------------------------------------


def test_layout_is_decas():
    assert N_PARAMS == 236
    assert param_slice("pose") == slice(200, 206)
    assert GLOBAL_ROTATION == slice(200, 203)
    assert param_slice("light") == slice(209, 236)


def test_fixture_is_a_dict_of_state_dicts(deca_tar):
    ckpt = torch.load(deca_tar, map_location="cpu", weights_only=True)
    assert set(ckpt) == {"E_flame", "E_detail", "D_detail"}
    assert set(ckpt["E_flame"]) == set(FlameEncoder().state_dict())
    assert ckpt["E_flame"]["layers.2.weight"].shape == (236, 1024)
    assert ckpt["E_detail"]["layers.2.weight"].shape == (128, 1024)
    assert ckpt["D_detail"]["l1.0.weight"].shape == (8192, 181)
    assert "encoder.fc.weight" not in ckpt["E_flame"]  # DECA's ResNet has no classifier


def test_loads_every_weight(deca_tar):
    enc = load_encoder(deca_tar)
    want = torch.load(deca_tar, map_location="cpu", weights_only=True)["E_flame"]
    got = enc.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())


def test_legacy_format_and_no_batch_counters_load(tmp_path):
    state = standin_encoder_state()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    state["layers.2.bias"] = torch.arange(236.0)
    path = write_deca_model(tmp_path / "old.tar", legacy=True, encoder=state)
    enc = load_encoder(path)
    assert torch.equal(enc.layers[2].bias, torch.arange(236.0))


# --- files that must be refused, in one line, running nothing ---------------------------------


class Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def bad_files(tmp_path, deca_tar):
    marker = tmp_path / "ran"
    files = {}
    files["hostile"] = tmp_path / "hostile.tar"
    with open(files["hostile"], "wb") as f:
        pickle.dump({"E_flame": Payload(str(marker))}, f)
    files["hostile-zip"] = tmp_path / "hostile-zip.tar"
    torch.save({"E_flame": {}, "x": Payload(str(marker))}, files["hostile-zip"])
    files["truncated"] = tmp_path / "truncated.tar"
    files["truncated"].write_bytes(deca_tar.read_bytes()[:3_000_000])
    files["empty"] = tmp_path / "empty.tar"
    files["empty"].write_bytes(b"")
    files["text"] = tmp_path / "text.tar"
    files["text"].write_text("not a model\n")
    files["tensor"] = tmp_path / "tensor.tar"
    torch.save(torch.zeros(3), files["tensor"])
    files["bare-state-dict"] = tmp_path / "bare.tar"
    torch.save(standin_encoder_state(), files["bare-state-dict"])
    files["other-head"] = tmp_path / "other-head.tar"  # an encoder regressing another parameter count
    write_deca_model(
        files["other-head"],
        encoder=standin_encoder_state(layers__2__weight=torch.zeros(159, 1024), layers__2__bias=torch.zeros(159)),
    )
    files["resnet101"] = tmp_path / "resnet101.tar"  # deeper trunk: keys DECA's ResNet-50 has not
    write_deca_model(
        files["resnet101"],
        encoder=standin_encoder_state(encoder__layer3__6__conv1__weight=torch.zeros(256, 1024, 1, 1)),
    )
    files["missing"] = tmp_path / "missing.tar"
    write_deca_model(files["missing"], encoder=standin_encoder_state(layers__0__weight=None))
    files["nan"] = tmp_path / "nan.tar"
    write_deca_model(files["nan"], encoder=standin_encoder_state(layers__2__bias=torch.full((236,), float("nan"))))
    files["ints"] = tmp_path / "ints.tar"
    write_deca_model(files["ints"], encoder=standin_encoder_state(layers__2__bias=torch.zeros(236, dtype=torch.int64)))
    return marker, files


def test_bad_files_are_refused_in_one_line(tmp_path, deca_tar):
    marker, files = bad_files(tmp_path, deca_tar)
    registry = build_registry()
    words = {
        "hostile": "asks to run",
        "hostile-zip": "asks to run",
        "truncated": "truncated",
        "empty": "empty",
        "text": "deca_model.tar",
        "tensor": "not a dict",
        "bare-state-dict": "bare state dict",
        "other-head": "shape (159, 1024)",
        "resnet101": "not DECA's ResNet-50",
        "missing": "missing",
        "nan": "non-finite",
        "ints": "not floating point",
    }
    for name, path in files.items():
        with pytest.raises(plugin.PromptgenError) as err:
            registry.build_energy(f"deca-pose:path={path}")
        text = str(err.value)
        assert "\n" not in text and len(text) < 400, (name, text)
        assert words[name] in text, (name, text)
        with pytest.raises(CheckpointError):
            load_encoder(path)
    assert not marker.exists()


def test_missing_file_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path))
    registry = build_registry()
    with pytest.raises(plugin.PromptgenError, match="drive.google.com.*non-commercial"):
        registry.build_energy("deca-pose")
    with pytest.raises(plugin.PromptgenError, match="is not a file"):
        registry.build_energy(f"deca-pose:path={tmp_path / 'nope.tar'}")


# --- preprocessing ---------------------------------------------------------------------------


def test_input_is_a_central_square_at_224():
    x = torch.rand(2, 3, 300, 400, requires_grad=True)
    y = to_deca_input(x)
    assert y.shape == (2, 3, 224, 224)
    y.sum().backward()
    assert x.grad[..., :, :50].abs().sum() == 0 and x.grad[..., :, 60:340].abs().sum() > 0  # sides cropped away
    assert to_deca_input(torch.rand(1, 1, 64, 64)).shape == (1, 3, 224, 224)
    same = torch.rand(1, 3, 224, 224)
    assert torch.equal(to_deca_input(same), same)
    assert to_deca_input(torch.rand(1, 3, 1024, 1024), crop=0.5).shape == (1, 3, 224, 224)


# --- the target and the angle energy (encoder replaced) ----------------------------------------


class FixedRotation(torch.nn.Module):
    """Stands in for DECA: 'estimates' the given axis-angle vectors, whatever the image (but differentiably in it)."""

    def __init__(self, rotvec: torch.Tensor) -> None:
        super().__init__()
        self.rotvec = rotvec

    def global_rotation(self, images: torch.Tensor) -> torch.Tensor:
        return self.rotvec + 0 * images.mean((1, 2, 3))[:, None]


def make(rotvec: torch.Tensor, canonical=CANONICAL, alpha=(0.0, 0.0, 0.0)) -> DecaPose:
    return DecaPose(FixedRotation(rotvec), torch.tensor(canonical), torch.tensor(alpha), 1.0, "deca-pose")


def test_energy_is_zero_at_the_target():
    images = torch.rand(3, 3, 32, 32)
    canonical = roma.euler_to_rotmat("XYZ", torch.tensor(CANONICAL))
    at_canonical = make(roma.rotmat_to_rotvec(canonical).expand(3, 3))
    assert at_canonical(images, torch.zeros(3, 4)).abs().max() < 1e-6
    alpha = torch.tensor([[0.2, -0.3, 0.0], [-0.1, 0.25, 0.0], [0.0, 0.0, 0.0]])
    target = roma.euler_to_rotmat("XYZ", alpha) @ canonical
    e = make(roma.rotmat_to_rotvec(target))
    ctx = plugin.EnergyContext(condition=alpha[:, [1, 0]], condition_names=("yaw", "pitch"))
    assert e.context_energy(images, torch.zeros(3, 4), ctx).abs().max() < 1e-6


def test_energy_is_the_squared_angle():
    canonical = roma.euler_to_rotmat("XYZ", torch.tensor(CANONICAL))
    for theta, axis in [(0.1, (1.0, 0, 0)), (0.5, (0, 1.0, 0)), (1.2, (0.6, 0, 0.8)), (3.0, (0, 0, 1.0))]:
        off = roma.rotvec_to_rotmat(theta * torch.tensor(axis))
        e = make(roma.rotmat_to_rotvec(off @ canonical)[None])
        value = e(torch.rand(1, 3, 16, 16), torch.zeros(1, 4))
        assert value.shape == (1,)
        assert math.isclose(float(value), theta**2, rel_tol=1e-4), (theta, float(value))


def test_alpha_changes_the_target():
    e = make(torch.zeros(2, 3))
    zero, some = torch.zeros(2, 3), torch.tensor([[0.0, 0.3, 0.0], [0.2, 0.0, 0.0]])
    assert not torch.allclose(e.target(zero), e.target(some))
    # yaw turns about y, pitch about x: R(α)·R(canonical)
    want = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.3, 0.0])) @ roma.euler_to_rotmat("XYZ", torch.tensor(CANONICAL))
    assert torch.allclose(e.target(some)[0], want, atol=1e-6)
    images = torch.rand(2, 3, 16, 16)
    plain = e(images, torch.zeros(2, 4))
    at_zero = e.context_energy(
        images, torch.zeros(2, 4), plugin.EnergyContext(condition=torch.zeros(2, 2), condition_names=("yaw", "pitch"))
    )
    at_some = e.context_energy(
        images, torch.zeros(2, 4), plugin.EnergyContext(condition=some[:, [1, 0]], condition_names=("yaw", "pitch"))
    )
    assert torch.allclose(plain, at_zero) and not torch.allclose(at_zero, at_some)
    # the condition's names pick the axes; names of other energies are ignored; roll is read when given
    ctx = plugin.EnergyContext(
        condition=torch.tensor([[0.1, 9.0, 0.2, 0.3]]).expand(2, 4), condition_names=("pitch", "age", "yaw", "roll")
    )
    assert torch.allclose(e.alpha_of(ctx, 2, torch.device("cpu")), torch.tensor([[0.1, 0.2, 0.3]] * 2))
    # a fixed α from the options: the target of __call__, and the default for axes the condition lacks
    fixed = make(torch.zeros(2, 3), alpha=(0.0, 0.3, 0.0))
    assert torch.allclose(fixed.target(fixed.alpha.expand(1, 3))[0], want, atol=1e-6)
    only_pitch = plugin.EnergyContext(condition=torch.tensor([[0.2], [0.2]]), condition_names=("pitch",))
    assert torch.allclose(fixed.alpha_of(only_pitch, 2, torch.device("cpu")), torch.tensor([[0.2, 0.3, 0.0]] * 2))


def test_a_condition_without_pose_names_is_refused():
    e = make(torch.zeros(1, 3))
    with pytest.raises(plugin.PromptgenError, match="names none of pitch, yaw, roll"):
        e.context_energy(
            torch.rand(1, 3, 8, 8),
            torch.zeros(1, 4),
            plugin.EnergyContext(condition=torch.zeros(1, 1), condition_names=("age",)),
        )
    with pytest.raises(plugin.PromptgenError, match="shape"):
        e.context_energy(
            torch.rand(1, 3, 8, 8),
            torch.zeros(1, 4),
            plugin.EnergyContext(condition=torch.zeros(1, 3), condition_names=("yaw",)),
        )


def test_canonical_pose_is_an_option(deca_tar):
    registry = build_registry()
    e = registry.build_energy(f"deca-pose:path={deca_tar},canonical_pitch=0,canonical_yaw=0.1")
    assert torch.allclose(e.canonical, roma.euler_to_rotmat("XYZ", torch.tensor([0.0, 0.1, 0.0])))
    with pytest.raises(plugin.SpecError, match="canonical_pitch"):
        registry.build_energy(f"deca-pose:path={deca_tar},canonical_pitch=4")


# --- the real network ---------------------------------------------------------------------------


def test_entry_and_capabilities(energy):
    registry = build_registry()
    entry = registry.energies["deca-pose"]
    assert entry.default_weight == DEFAULT_WEIGHT == 200
    caps = plugin.capabilities(energy)
    assert caps.contextual and caps.bounded and not caps.fittable


def test_gradients_reach_the_images(energy):
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    ctx = plugin.EnergyContext(condition=torch.tensor([[0.3, -0.2], [-0.3, 0.1]]), condition_names=("yaw", "pitch"))
    value = energy.context_energy(images, torch.zeros(2, 4), ctx)
    assert value.shape == (2,) and torch.isfinite(value).all()
    value.sum().backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_matches_the_encoder_by_hand(energy, deca_tar):
    """Energy = angle² between rotvec(E_flame(resize(x))[200:203]) and the target, computed here without the plugin's helpers."""
    images = torch.rand(1, 3, 224, 224)
    enc = FlameEncoder()
    enc.load_state_dict(torch.load(deca_tar, map_location="cpu", weights_only=True)["E_flame"])
    with torch.no_grad():
        rotvec = enc.eval()(images)[:, 200:203]
        value = energy(images, torch.zeros(1, 4))
    r = roma.rotvec_to_rotmat(rotvec)[0]
    target = roma.euler_to_rotmat("XYZ", torch.tensor(CANONICAL))
    cos = ((r.T @ target).trace() - 1) / 2
    assert math.isclose(float(value), float(torch.arccos(cos.clamp(-1, 1))) ** 2, rel_tol=1e-3, abs_tol=1e-6)


def test_conformance_kit(deca_tar):
    registry = registry_with_toy()
    check_energy(registry, f"deca-pose:path={deca_tar}", generator="toy-rgb")


def test_random_state_is_reproducible():
    a, b = random_encoder_state(3), random_encoder_state(3)
    assert all(torch.equal(a[k], b[k]) for k in a)
