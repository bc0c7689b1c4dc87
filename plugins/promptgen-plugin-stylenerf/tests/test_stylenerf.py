"""promptgen-plugin-stylenerf on random-weight pickles in facebookresearch/StyleNeRF's format
(promptgen_plugin_stylenerf.testing).

What is checked against the official code is in ``scripts/conformance.py`` (it needs a checkout of it); these
tests check the reading, the camera, the refusals and the CLI.
"""

from __future__ import annotations

import importlib
import os
import pickle

import numpy as np
import pytest
import torch
from promptgen_plugin_stylegan2.checkpoints import load_generator
from promptgen_plugin_stylegan2.testing import random_generator, write_nvidia_pickle
from promptgen_plugin_stylenerf import StyleNeRFOptions, _build
from promptgen_plugin_stylenerf.generator import StyleNeRFGenerator
from promptgen_plugin_stylenerf.testing import random_stylenerf, write_stylenerf_pickle
from promptgen_plugin_stylenerf.zoo import MODELS
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.core.registry import get_registry, reset_registry
from promptgen.plugin import PromptgenError, SpecError, parse_spec, seeded_noise
from promptgen.testing import TOY_GENDER_PLUGIN, check_generator, install_fake_distribution

#: The FFHQ prior, from conf/model/stylenerf_ffhq.yaml: yaw ~ N(0, 0.3), polar angle ~ N(π/2, 0.155).
YAW_STD, PITCH_STD = 0.3, 0.155


def build(path, **options) -> StyleNeRFGenerator:
    return _build(parse_spec(f"stylenerf:path={path}"), StyleNeRFOptions(path=str(path), **options), None)


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and text
    return text


@pytest.fixture(scope="module")
def model():
    return random_stylenerf(0)


@pytest.fixture(scope="module")
def pkl(tmp_path_factory, model):
    return write_stylenerf_pickle(model, tmp_path_factory.mktemp("stylenerf") / "ffhq_tiny.pkl")


class CameraSpy:
    """A forward hook on the volume renderer: the camera-to-world matrices it was given."""

    def __init__(self, g: StyleNeRFGenerator) -> None:
        self.worlds: list[torch.Tensor] = []
        self.handle = g.module.model.synthesis.V.register_forward_hook(
            lambda m, args, out: self.worlds.append(args[0].clone())
        )

    def yaw_pitch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The camera's yaw (azimuth about +z from +x) and pitch (elevation), radians, from its position."""
        pos = torch.cat(self.worlds)[:, :3, 3]
        return torch.atan2(pos[:, 1], pos[:, 0]), torch.asin(pos[:, 2] / pos.norm(dim=1))


def test_the_pickle_loads_with_every_weight_and_the_configuration(pkl, model):
    g = build(pkl)
    loaded = g.module.model
    assert loaded.cfg == model.cfg
    ours, theirs = loaded.state_dict(), model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert g.latent_shape == (16,) and g.info.resolution == (16, 16) and g.noise_shapes == {"camera_seed": (1,)}


def test_decode_is_the_network_on_the_seeded_camera_and_background(pkl, model):
    g = build(pkl)
    z, seed = torch.randn(3, 16), torch.randn(3, 1)
    drawn = seeded_noise(seed, {"camera": (2,), "background": (8,)})
    with torch.no_grad():
        images = g.decode(z, {"camera_seed": seed})
        expected = ((model(z, drawn["camera"], drawn["background"]) + 1) / 2).clamp(0, 1)
    assert images.shape == (3, 3, 16, 16) and images.min() >= 0 and images.max() <= 1 and images.std() > 0.01
    assert torch.equal(images, expected)


def test_the_seeded_camera_repeats_and_differs_between_seeds(pkl):
    g = build(pkl)
    spy = CameraSpy(g)
    z = torch.randn(2, 16)
    with torch.no_grad():
        a = g.decode(z, {"camera_seed": torch.tensor([[0.25], [0.5]])})
        b = g.decode(z, {"camera_seed": torch.tensor([[0.25], [0.5]])})
        c = g.decode(z, {"camera_seed": torch.tensor([[0.75], [1.5]])})
    assert torch.equal(a, b) and torch.equal(spy.worlds[0], spy.worlds[1])
    assert not torch.equal(spy.worlds[0], spy.worlds[2]) and (a - c).abs().max() > 1e-3


def test_the_prior_camera_has_the_ffhq_spread(tmp_path):
    g = build(write_stylenerf_pickle(random_stylenerf(1, resolution=8, resolution_vol=2), tmp_path / "small.pkl"))
    spy = CameraSpy(g)
    with torch.no_grad():
        g.decode(torch.randn(400, 16), {"camera_seed": torch.arange(400, dtype=torch.float32)[:, None] / 7})
    yaw, pitch = spy.yaw_pitch()
    assert abs(float(yaw.mean())) < 0.05 and abs(float(yaw.std()) - YAW_STD) < 0.04
    assert abs(float(pitch.mean())) < 0.03 and abs(float(pitch.std()) - PITCH_STD) < 0.02


def test_camera_latent_is_the_camera_the_renderer_receives(pkl):
    g = build(pkl, camera="latent")
    assert g.latent_shape == (18,) and g.latent_parts == {"z": (16,), "camera": (2,)}
    spy = CameraSpy(g)
    asked = torch.tensor([[1.0, -0.5], [-2.0, 1.5], [0.0, 0.0]])
    z = torch.randn(3, 16)
    with torch.no_grad():
        g.decode({"z": z, "camera": asked}, {"camera_seed": torch.randn(3, 1)})
    yaw, pitch = spy.yaw_pitch()
    assert torch.allclose(yaw, asked[:, 0] * YAW_STD, atol=1e-5)
    assert torch.allclose(pitch, -asked[:, 1] * PITCH_STD, atol=1e-5)  # a larger polar angle: the camera lower
    expected_yaw, expected_pitch = g.module.model.cfg.camera.yaw_pitch(asked)
    assert torch.allclose(yaw, expected_yaw, atol=1e-5) and torch.allclose(pitch, expected_pitch, atol=1e-5)
    with torch.no_grad():  # another seed moves the background only, not the camera
        g.decode({"z": z, "camera": asked}, {"camera_seed": torch.randn(3, 1)})
    assert torch.equal(spy.worlds[0], spy.worlds[1])


def test_camera_condition_is_the_camera_the_renderer_receives(pkl):
    g = build(pkl, camera="condition")
    assert g.latent_shape == (16,) and g.latent_parts is None
    # 3 standard deviations of the FFHQ prior about its mean: yaw ±0.9, pitch ±0.465 (radians).
    assert g.condition_inputs == {"yaw": (-0.9, 0.9), "pitch": (-0.465, 0.465)}
    spy = CameraSpy(g)
    z, seeds = torch.randn(3, 16), {"camera_seed": torch.randn(3, 1)}
    yaw_asked, pitch_asked = torch.tensor([0.5, -0.8, 0.0]), torch.tensor([0.2, -0.4, 0.1])
    with torch.no_grad():
        g.decode(z, seeds, condition={"yaw": yaw_asked, "pitch": pitch_asked})
        g.decode(z, seeds, condition={"yaw": yaw_asked})  # pitch not set: from the prior, drawn from the seed
        g.decode(z, seeds)  # nothing set: the prior's camera, as camera=prior draws it
    yaw, pitch = spy.yaw_pitch()
    assert torch.allclose(yaw[:3], yaw_asked, atol=1e-5) and torch.allclose(pitch[:3], pitch_asked, atol=1e-5)
    assert torch.allclose(yaw[3:6], yaw_asked, atol=1e-5) and torch.allclose(pitch[3:6], pitch[6:], atol=1e-5)
    prior = build(pkl)
    spy_prior = CameraSpy(prior)
    with torch.no_grad():
        prior.decode(z, seeds)
    assert torch.equal(spy.worlds[2], spy_prior.worlds[0])


def test_conformance_kit(pkl):
    reset_registry()
    check_generator(get_registry(), f"stylenerf:path={pkl}")
    check_generator(get_registry(), f"stylenerf-ffhq-256:path={pkl},camera=latent,psi=0.7")


def test_a_pickle_with_the_hydra_configuration_in_omegaconf_containers_loads_the_same(tmp_path, model):
    # facebookresearch/StyleNeRF's run_train.py keeps its settings in an OmegaConf DictConfig
    # (args.update({"G_kwargs": dict(**cfg.model.G_kwargs)})), so the networks' kwargs, and the lists the
    # CameraRay stored, are DictConfig / ListConfig objects in its pickles. Built here the same way, with the real
    # library; the loader reads them as plain data and never imports omegaconf.
    from omegaconf import OmegaConf

    p = model.cfg.camera
    cfg = OmegaConf.create({"num_fp16_res": 0, "spec": {"map": model.cfg.mapping_layers}, "model": {"G_kwargs": {
        "class_name": "training.networks.Generator", "z_dim": model.cfg.z_dim, "w_dim": model.cfg.w_dim,
        "mapping_kwargs": {"num_layers": "${spec.map}"},
        "synthesis_kwargs": {
            "num_fp16_res": "${num_fp16_res}", "channel_base": 1,
            "camera_kwargs": {"range_v": list(p.range_v), "range_u": list(p.range_u), "range_radius": [p.radius, p.radius],
                              "depth_range": list(model.cfg.depth_range), "fov": p.fov, "gaussian_camera": True},
            "upsampler_kwargs": {"channel_base": "${model.G_kwargs.synthesis_kwargs.channel_base}"},
        },
    }}})
    args = OmegaConf.create({})
    args.update({"G_kwargs": dict(**cfg.model.G_kwargs)})
    camera = args.G_kwargs.synthesis_kwargs.camera_kwargs
    assert type(camera.range_u).__name__ == "ListConfig"
    extra = {
        "synthesis.C": {k: camera[k] for k in ("range_u", "range_v", "range_radius", "depth_range")},
        "": {"_init_kwargs": dict(**args.G_kwargs)},
    }
    plain = build(write_stylenerf_pickle(model, tmp_path / "plain.pkl"))
    hydra = build(write_stylenerf_pickle(model, tmp_path / "hydra.pkl", extra=extra))
    assert b"omegaconf.listconfig" in (tmp_path / "hydra.pkl").read_bytes()
    assert hydra.module.model.cfg == plain.module.model.cfg
    z, seeds = torch.randn(2, 16), {"camera_seed": torch.randn(2, 1)}
    with torch.no_grad():
        assert torch.equal(hydra.decode(z, seeds), plain.decode(z, seeds))


def test_an_omegaconf_object_that_would_run_code_is_refused(tmp_path, model):
    class Resolver:  # pickles as a call of omegaconf.OmegaConf.register_new_resolver
        def __reduce__(self):
            import omegaconf

            return (omegaconf.OmegaConf.register_new_resolver, ("boom", print))

    path = write_stylenerf_pickle(model, tmp_path / "evil.pkl", extra={"synthesis.C": {"fov": Resolver()}})
    with pytest.raises(PromptgenError) as e:
        build(path)
    assert "omegaconf.OmegaConf" in one_line(e) and "refusing to load it" in one_line(e)


def test_a_stylegan2_pickle_is_named_and_refused(tmp_path):
    path = write_nvidia_pickle(random_generator(0), tmp_path / "sg2.pkl")
    with pytest.raises(SpecError) as e:
        build(path)
    assert "is a StyleGAN2 network pickle, not StyleNeRF" in one_line(e) and "stylegan2:path=" in one_line(e)


def test_a_stylenerf_pickle_given_to_stylegan2_is_named_and_refused(pkl):
    with pytest.raises(PromptgenError) as e:
        load_generator(pkl)
    assert "StyleNeRF" in one_line(e) and "stylenerf:path=" in one_line(e) and "could run code" not in one_line(e)


def test_a_truncated_pickle_is_refused_in_one_line(pkl, tmp_path):
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(pkl.read_bytes()[: pkl.stat().st_size // 2])
    with pytest.raises(SpecError) as e:
        build(cut)
    assert "damaged or truncated" in one_line(e) and str(cut) in one_line(e)


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"

    class Hostile:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "hostile.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Hostile()}))
    with pytest.raises(SpecError) as e:
        build(path)
    assert "could run code" in one_line(e) and "StyleNeRF" in one_line(e)
    assert not marker.exists()


def test_a_variant_the_implementation_does_not_run_is_refused(tmp_path, model):
    # ray_align_corner=True samples other pixel positions: refused by name rather than rendered differently.
    path = write_stylenerf_pickle(model, tmp_path / "variant.pkl", extra={"synthesis.C": {"ray_align_corner": True}})
    with pytest.raises(SpecError) as e:
        build(path)
    assert "ray_align_corner" in one_line(e) and "not supported" in one_line(e)




@pytest.fixture
def faces(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PROMPTGEN_OFFLINE", "1")
    (tmp_path / "site").mkdir()
    install_fake_distribution(
        tmp_path / "site", "promptgen-plugin-toy-faces", "0.2.0", "toy_faces", TOY_GENDER_PLUGIN, "a-toy-faces"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    reset_registry()
    yield tmp_path
    reset_registry()


def test_compose_debias_gender_runs_and_sampling_with_a_seed_repeats(faces):
    pkl = write_stylenerf_pickle(tiny_model(), faces / "ffhq_8.pkl")
    runner = CliRunner()
    out = faces / "prompt"
    result = runner.invoke(
        app,
        [
            "compose",
            "--gen",
            f"stylenerf-ffhq-256:path={pkl}",
            "--energy",
            "debias:gender",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--eval-batch",
            "4",
            "--transforms",
            "2",
            "--hidden",
            "8",
            "--out",
            str(out),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    files = []
    for i in range(2):
        target = faces / f"s{i}.npz"
        result = runner.invoke(app, ["sample", str(out), "-n", "4", "--seed", "3", "-o", str(target)])
        assert result.exit_code == 0, result.output
        files.append(target.read_bytes())
    assert files[0] == files[1] and np.load(faces / "s0.npz")["images"].shape[0] == 4
    other = faces / "s2.npz"
    assert runner.invoke(app, ["sample", str(out), "-n", "4", "--seed", "4", "-o", str(other)]).exit_code == 0
    assert not np.array_equal(np.load(other)["images"], np.load(faces / "s0.npz")["images"])


def tiny_model():
    # The smallest model (volume 2², image 8², narrow, 3 + 3 + 2 samples): compose draws thousands of images.
    return random_stylenerf(
        2, resolution=8, resolution_vol=2, fg_hidden=8, fg_blocks=2, bg_hidden=4, n_ray_samples=3, n_bg_samples=2,
        rgb_out_dim=8, rgb_out_dim_bg=8, channel_max=8, n_freq=2,
    )


def test_compose_with_a_tiny_clip_then_sample_repeats_camera_included(faces, tmp_path):
    # The zoo name with its file in the cache, as a download leaves it; CLIP a tiny open_clip with random weights.
    import json

    import open_clip

    configs = tmp_path / "clip-configs"
    configs.mkdir()
    (configs / "promptgen-tiny-clip-nerf.json").write_text(json.dumps({
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }))
    open_clip.add_model_config(configs)
    cache = faces / "home" / "stylenerf"
    cache.mkdir(parents=True)
    write_stylenerf_pickle(tiny_model(), cache / MODELS["stylenerf-ffhq-256"].weights.filename)
    runner = CliRunner()
    out = faces / "smile"
    result = runner.invoke(app, [
        "compose", "--gen", "stylenerf-ffhq-256", "--energy", "clip:a smiling face,model=promptgen-tiny-clip-nerf,pretrained=none,augs=2",
        "--steps", "2", "--batch-size", "4", "--eval-batch", "4", "--check-samples", "0", "--transforms", "2", "--hidden", "8",
        "--out", str(out), "-q",
    ])
    assert result.exit_code == 0, result.output
    grids = []
    for name in ("a", "b"):
        result = runner.invoke(app, ["sample", str(out), "-n", "4", "--seed", "5", "-o", str(faces / f"{name}.npz")])
        assert result.exit_code == 0, result.output
        grids.append(np.load(faces / f"{name}.npz")["images"])
    assert np.array_equal(grids[0], grids[1])  # the camera is drawn from each image's seed


def test_a_conditional_prompt_sets_the_camera_and_a_sweep_turns_it(faces, monkeypatch):
    pkl = write_stylenerf_pickle(tiny_model(), faces / "ffhq_8.pkl")
    runner = CliRunner()
    out = faces / "turn"
    gen = f"stylenerf-ffhq-256:path={pkl},camera=condition"
    small = ["--steps", "2", "--batch-size", "4", "--eval-batch", "4", "--check-samples", "8", "--transforms", "2",
             "--hidden", "8", "-q"]
    result = runner.invoke(app, ["compose", "--gen", gen, "--energy", "debias:gender", "--cond", "yaw=-0.5:0.5", *small,
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    # The renderer's camera is the swept yaw, column by column, for every row; pitch is the prior's, per noise.
    seen: list[torch.Tensor] = []
    real = StyleNeRFGenerator.decode

    def spy(self, z, noise=None, condition=None):
        handle = self.module.model.synthesis.V.register_forward_hook(lambda m, args, o: seen.append(args[0].clone()))
        try:
            return real(self, z, noise, condition)
        finally:
            handle.remove()

    monkeypatch.setattr(StyleNeRFGenerator, "decode", spy)
    grid = faces / "sweep.npz"
    result = runner.invoke(app, ["sample", str(out), "--sweep", "yaw=-0.5:0.5:3", "-n", "2", "--seed", "1", "-o", str(grid)])
    assert result.exit_code == 0, result.output
    pos = torch.cat(seen[-3:])[:, :3, 3]  # the last three decodes: one per column, two rows each
    yaw = torch.atan2(pos[:, 1], pos[:, 0])
    assert torch.allclose(yaw, torch.tensor([-0.5, -0.5, 0.0, 0.0, 0.5, 0.5]), atol=1e-5)
    pitch = torch.asin(pos[:, 2] / pos.norm(dim=1))
    assert torch.allclose(pitch[0::2], pitch[0].expand(3)) and torch.allclose(pitch[1::2], pitch[1].expand(3))
    images = np.load(grid)["images"]
    assert images.shape[0] == 6 and not np.array_equal(images[0], images[2])  # the same face, turned


@pytest.mark.parametrize(
    ("cond", "said"),
    [
        ([], ("the generator takes yaw, pitch from the prompt's conditions, and none was given; add their training ranges, "
             "e.g. --cond yaw=-0.45:0.45 --cond pitch=-0.23:0.23")),
        (["--cond", "yaw=-1.5:0.5"], "--cond yaw=-1.5:0.5 goes outside the range the generator takes, -0.9:0.9"),
    ],
)
def test_camera_condition_without_a_camera_range_or_beyond_the_prior_is_one_line(faces, cond, said):
    pkl = write_stylenerf_pickle(random_stylenerf(1, resolution=8, resolution_vol=2), faces / "small.pkl")
    result = CliRunner().invoke(app, ["compose", "--gen", f"stylenerf:path={pkl},camera=condition", "--energy", "debias:gender",
                                      *cond, "--out", str(faces / "never")])
    assert result.exit_code == 2 and said in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (faces / "never").exists()


def test_the_zoo_entry_without_its_file_says_to_give_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path))
    monkeypatch.setenv("PROMPTGEN_OFFLINE", "1")
    with pytest.raises(PromptgenError) as e:
        _build(
            parse_spec("stylenerf-ffhq-256"),
            StyleNeRFOptions(),
            None,
            MODELS["stylenerf-ffhq-256"],
        )
    assert "path=" in one_line(e) and "ffhq_256.pkl" in one_line(e)
