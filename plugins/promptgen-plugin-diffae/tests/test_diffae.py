"""promptgen-plugin-diffae on random-weight checkpoints in phizaz/diffae's format (promptgen_plugin_diffae.testing).

What is checked against phizaz/diffae's own code is in ``scripts/conformance.py`` (it needs a checkout of it);
these tests check the reading, the refusals, the two step counts, the noise and the CLI.
"""

from __future__ import annotations

import importlib
import os
import pickle

import numpy as np
import pytest
import torch
from promptgen_plugin_diffae import DiffAEOptions, _build
from promptgen_plugin_diffae.generator import DiffAEGenerator
from promptgen_plugin_diffae.sampling import DDIM, ddim_timesteps
from promptgen_plugin_diffae.testing import (
    TINY,
    hyper_parameters,
    lightning_checkpoint,
    random_networks,
    save_lightning,
    write_checkpoint,
    write_stats,
)
from promptgen_plugin_diffae.zoo import MODELS
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.core.registry import reset_registry
from promptgen.plugin import PromptgenError, SpecError, parse_spec
from promptgen.testing import TOY_GENDER_PLUGIN, install_fake_distribution

FAST = {"steps": 2, "latent_steps": 2, "sample_steps": 4, "sample_latent_steps": 4}


def build(spec: str, **options) -> DiffAEGenerator:
    parsed = parse_spec(spec)
    return _build(parsed, DiffAEOptions(**{**FAST, **options}), None)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("diffae") / "last.ckpt")


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and text
    return text


def test_reads_the_configuration_and_samples_images(ckpt):
    g = build(f"diffae:path={ckpt}", path=str(ckpt))
    assert g.latent_shape == (16,) and g.info.resolution == (16, 16) and g.info.channels == 3
    with torch.no_grad():
        images = g.decode(torch.randn(3, 16), {"noise_seed": torch.randn(3, 1)})
    assert images.shape == (3, 3, 16, 16) and images.min() >= 0 and images.max() <= 1 and images.std() > 0.05


def test_training_runs_the_few_steps_with_gradients_and_sampling_the_many(ckpt):
    g = build(f"diffae:path={ckpt}", path=str(ckpt), checkpointing=False)  # no recomputation to count
    calls = {"unet": 0, "latent": 0}
    for name, module in (("unet", g.module.unet), ("latent", g.module.latent_net)):
        module.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    z = torch.randn(2, 16, requires_grad=True)
    g.decode(z, {"noise_seed": torch.randn(2, 1)}).mean().backward()
    assert calls == {"unet": 2, "latent": 2}  # steps=2, latent_steps=2
    assert z.grad is not None and z.grad.abs().sum() > 0
    calls.update(unet=0, latent=0)
    with torch.no_grad():
        g.decode(torch.randn(2, 16), {"noise_seed": torch.randn(2, 1)})
    assert calls == {"unet": 4, "latent": 4}


def test_checkpointing_recomputes_the_image_steps_and_keeps_the_gradient(ckpt):
    grads, calls = [], []
    for checkpointing in (False, True):
        g = build(f"diffae:path={ckpt}", path=str(ckpt), checkpointing=checkpointing)
        count = [0]
        g.module.unet.register_forward_pre_hook(lambda *_, count=count: count.__setitem__(0, count[0] + 1))  # recomputation stops early
        z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        g.decode(z, {"noise_seed": torch.tensor([[0.5], [1.5]])}).square().mean().backward()
        grads.append(z.grad)
        calls.append(count[0])
    # The gradient reaches z through the semantic code, not through x_T, and checkpointing still engages.
    assert calls == [2, 4]
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and grads[0].abs().sum() > 0


def test_the_semantic_code_is_denormalised_with_the_stored_statistics(ckpt):
    g = build(f"diffae:path={ckpt}", path=str(ckpt))
    from promptgen_plugin_diffae.checkpoints import read_lightning

    raw = read_lightning(ckpt)["state_dict"]
    z = torch.randn(4, 16)
    with torch.no_grad():
        normalised = g.module.latent["4"](z, g.module.latent_net)
        assert torch.allclose(g.module.semantic(z, 4), normalised * raw["conds_std"] + raw["conds_mean"])


def test_x_t_is_seeded_noise_or_fixed_per_prompt(ckpt):
    g = build(f"diffae:path={ckpt}", path=str(ckpt))
    assert g.noise_shapes == {"noise_seed": (1,)}
    z = torch.randn(1, 16).repeat(3, 1)
    seeds = torch.tensor([[0.5], [0.5], [-1.0]])
    with torch.no_grad():
        images = g.decode(z, {"noise_seed": seeds})
    assert torch.equal(images[0], images[1]) and not torch.equal(images[0], images[2])
    fixed = build(f"diffae:path={ckpt},x_t_seed=7", path=str(ckpt), x_t_seed=7)
    assert fixed.noise_shapes is None and "x_t_seed=7" in fixed.info.description
    with torch.no_grad():
        a, b = fixed.decode(z), fixed.decode(z)
    assert torch.equal(a, b) and torch.allclose(a[0], a[2], atol=1e-5)  # one x_T for every image of the prompt
    assert torch.equal(fixed.x_t(z)[0], torch.randn((3, 16, 16), generator=torch.Generator().manual_seed(7)))


def test_ddim_spacing_is_phizaz_diffaes():
    assert ddim_timesteps(5) == [0, 200, 400, 600, 800]
    assert ddim_timesteps(100) == list(range(0, 1000, 10))
    assert ddim_timesteps(999) is None
    ddim = DDIM("linear", 5, clip=True)
    # The last step goes to ᾱ = 1: the output is the clipped x̂_0.
    x, eps = torch.randn(2, 3, 4, 4) * 3, torch.randn(2, 3, 4, 4)
    out = ddim.step(eps, x, 0)
    x0 = ddim.sqrt_recip[0] * x - ddim.sqrt_recipm1[0] * eps
    assert torch.allclose(out, x0.clamp(-1, 1), atol=1e-6)


def test_an_autoencoder_alone_needs_its_latent_model_and_statistics(tmp_path):
    alone = write_checkpoint(tmp_path / "ae" / "last.ckpt", latent=False, stats=False)
    with pytest.raises(SpecError) as e:
        build(f"diffae:path={alone}", path=str(alone))
    assert "without its latent DDIM" in one_line(e) and "latent_path=" in one_line(e)
    latent = write_checkpoint(tmp_path / "lat" / "last.ckpt", stats=False)
    with pytest.raises(SpecError) as e:
        build(f"diffae:path={alone}", path=str(alone), latent_path=str(latent))
    assert "no latent statistics" in one_line(e) and "stats=" in one_line(e)
    stats = write_stats(tmp_path / "ae" / "latent.pkl")
    g = build(f"diffae:path={alone}", path=str(alone), latent_path=str(latent), stats=str(stats))
    want = torch.load(stats, weights_only=True)
    assert torch.allclose(g.module.conds_mean[0], want["conds_mean"]) and torch.allclose(g.module.conds_std[0], want["conds_std"])


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"x": Payload()}}, path)
    with pytest.raises(SpecError) as e:
        build(f"diffae:path={path}", path=str(path))
    assert "asks to run posix.system" in one_line(e) and not marker.exists()


def test_a_truncated_file_is_one_line(ckpt, tmp_path):
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(SpecError) as e:
        build(f"diffae:path={cut}", path=str(cut))
    assert "damaged or truncated" in one_line(e)


def test_weights_that_do_not_fit_the_configuration_are_one_line(tmp_path):
    unet, mlp = random_networks(TINY)
    ema = {**unet.state_dict(), **{f"latent_net.{k}": v for k, v in mlp.state_dict().items()}}
    ema["out.2.weight"] = ema["out.2.weight"][:, :4]
    from promptgen_plugin_diffae.testing import random_stats

    path = save_lightning(lightning_checkpoint(ema, TINY, stats=random_stats(16)), tmp_path / "bad.ckpt")
    with pytest.raises(SpecError) as e:
        build(f"diffae:path={path}", path=str(path))
    assert "'out.2.weight' has shape" in one_line(e)


@pytest.mark.parametrize(("option", "value", "expected"), [("steps", 999, "cannot be spaced evenly"), ("sample_steps", 1000, None)])
def test_step_counts_are_checked_against_ddim_spacing(ckpt, option, value, expected):
    if expected is None:
        assert build(f"diffae:path={ckpt}", path=str(ckpt), **{option: value}).module.sample_steps == value
        return
    with pytest.raises(SpecError) as e:
        build(f"diffae:path={ckpt}", path=str(ckpt), **{option: value})
    assert expected in one_line(e) and "give one of" in one_line(e)


def test_a_step_count_above_the_models_training_steps(tmp_path):
    unet, mlp = random_networks(TINY)
    from promptgen_plugin_diffae.testing import random_stats

    ckpt = lightning_checkpoint({**unet.state_dict(), **{f"latent_net.{k}": v for k, v in mlp.state_dict().items()}}, TINY,
                                stats=random_stats(16))
    ckpt["hyper_parameters"] = {**hyper_parameters(TINY), "T": 100}
    path = save_lightning(ckpt, tmp_path / "t100.ckpt")
    with pytest.raises(SpecError) as e:
        build(f"diffae:path={path}", path=str(path), sample_steps=200)
    assert "more than the 100 steps" in one_line(e)


def test_zoo_names_read_the_cache_or_say_where_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path / "home"))
    model = MODELS["diffae-ffhq-256"]
    with pytest.raises(PromptgenError) as e:
        _build(parse_spec("diffae-ffhq-256"), DiffAEOptions(**FAST), None, model)
    text = one_line(e)
    assert model.weights.page in text and str(tmp_path / "home" / "diffae" / model.weights.filename) in text
    write_checkpoint(tmp_path / "home" / "diffae" / model.weights.filename)
    g = _build(parse_spec("diffae-ffhq-256"), DiffAEOptions(**FAST), None, model)
    assert g.info.licence.startswith("MIT") and g.info.source == model.weights.page




def test_compose_diffae_ffhq_256_with_debias_gender_then_sample_repeatably(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("PROMPTGEN_HOME", str(home))
    monkeypatch.setenv("PROMPTGEN_OFFLINE", "1")
    write_checkpoint(home / "diffae" / MODELS["diffae-ffhq-256"].weights.filename)
    (tmp_path / "site").mkdir()
    install_fake_distribution(tmp_path / "site", "promptgen-plugin-toy-faces", "0.2.0", "toy_faces", TOY_GENDER_PLUGIN, "a-toy-faces")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    reset_registry()
    try:
        runner, out = CliRunner(), tmp_path / "prompt"
        gen = "diffae-ffhq-256:steps=2,latent_steps=2,sample_steps=4,sample_latent_steps=4"
        result = runner.invoke(app, ["compose", "--gen", gen, "--energy", "debias:gender", "--steps", "2", "--batch-size", "4",
                                     "--eval-batch", "4", "--transforms", "2", "--hidden", "8", "--out", str(out), "-q"])
        assert result.exit_code == 0, result.output
        files = []
        for i, seed in enumerate([3, 3, 4]):
            target = tmp_path / f"s{i}.npz"
            result = runner.invoke(app, ["sample", str(out), "-n", "4", "--seed", str(seed), "-o", str(target)])
            assert result.exit_code == 0, result.output
            files.append(np.load(target)["images"])
        assert np.array_equal(files[0], files[1]) and not np.array_equal(files[0], files[2])
    finally:
        reset_registry()


def test_the_placeholder_for_lightnings_callback_runs_nothing():
    from promptgen_plugin_diffae.checkpoints import ModelCheckpoint

    assert ModelCheckpoint.__module__ == "pytorch_lightning.callbacks.model_checkpoint"
    assert [k for k in vars(ModelCheckpoint) if not k.startswith("__")] == []  # no methods: nothing a file could call
    assert pickle.loads(pickle.dumps(1)) == 1
