"""promptgen-plugin-diffusers on random-weight pipelines written by diffusers' own save_pretrained."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from promptgen_plugin_diffusers.generator import DDIMSampler, auto_block, combine
from promptgen_plugin_diffusers.pipeline import PipelineError
from promptgen_plugin_diffusers.testing import ddim_pipeline_images, write_conditional_pipeline, write_pipeline
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.core.errors import PromptgenError, SpecError
from promptgen.core.registry import get_registry
from promptgen.testing import check_generator


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory) -> Path:
    return write_pipeline(tmp_path_factory.mktemp("pipe") / "ddpm", size=8, channels=3)


def build(spec: str):
    return get_registry().build_generator(spec)


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(("scheduler", "prediction"), [("DDPMScheduler", "epsilon"), ("DDIMScheduler", "v_prediction"), ("PNDMScheduler", "epsilon")])
def test_images_equal_diffusers_own_ddim_pipeline_from_the_same_x_t(tmp_path, scheduler, prediction):
    folder = write_pipeline(tmp_path / "p", scheduler=scheduler, prediction=prediction, seed=3)
    g = build(f"diffusers:path={folder},sample_steps=7")
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = g.decode(x)
    theirs = ddim_pipeline_images(folder, x, 7)
    assert ours.shape == theirs.shape == (3, 3, 8, 8)
    assert torch.allclose(ours, theirs, atol=1e-6), (ours - theirs).abs().max()
    assert ours.std() > 0.01  # not a constant image: the weights matter


def count_unet_calls(g) -> list[int]:
    calls: list[int] = []
    g.module.unet.register_forward_pre_hook(lambda *a: calls.append(1))
    return calls


def test_training_runs_steps_and_sampling_runs_sample_steps(pipeline_dir):
    g = build(f"diffusers:path={pipeline_dir},steps=3,sample_steps=9")
    calls = count_unet_calls(g)
    with torch.no_grad():
        g.decode(torch.randn(2, 3, 8, 8))
    assert len(calls) == 9
    calls.clear()
    z = torch.randn(2, 3, 8, 8, requires_grad=True)
    g.decode(z).mean().backward()
    assert len(calls) == 3 * 2  # three steps, each run again in the backward pass (checkpointing)
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_checkpointing_changes_memory_not_gradients(pipeline_dir):
    z = torch.randn(2, 3, 8, 8)
    grads = []
    for flag in ("true", "false"):
        g = build(f"diffusers:path={pipeline_dir},steps=4,checkpointing={flag}")
        zz = z.clone().requires_grad_(True)
        (g.decode(zz) * torch.linspace(0, 1, 8)).sum().backward()
        grads.append(zz.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_block_latent_keeps_x_t_standard_normal_and_controls_the_block_means(pipeline_dir):
    bound = build(f"diffusers:path={pipeline_dir},latent=blocks,block=4")
    assert bound.latent_shape == (13,) and (bound.controlled_size, bound.noise_size) == (12, 1)  # promptgen's flat view
    g = bound.inner
    assert g.latent_shape == (3, 2, 2) and g.noise_shapes == {"noise_seed": (1,)}
    u = torch.randn(20_000, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    x = g.x_t(u, {"noise_seed": torch.randn(20_000, 1, generator=torch.Generator().manual_seed(1))})
    assert abs(x.mean().item()) < 0.01 and abs(x.var().item() - 1) < 0.01
    cov = torch.cov(x.flatten(1)[:, :8].T)  # neighbours in one block stay uncorrelated
    assert (cov - torch.eye(8)).abs().max() < 0.03
    assert torch.allclose(torch.nn.functional.avg_pool2d(x, 4) * 4, u, atol=1e-5)
    # the same seed gives the same rest of x_T; another seed another
    seed = torch.tensor([[0.25], [0.25], [-3.0]])
    x = g.x_t(torch.zeros(3, 3, 2, 2), {"noise_seed": seed})
    assert torch.equal(x[0], x[1]) and not torch.equal(x[0], x[2])


def test_auto_latent_is_full_when_small_and_blocks_when_large():
    assert auto_block(1, 28, 28) == 1 and auto_block(3, 64, 64) == 2 and auto_block(3, 256, 256) == 8
    u, n = torch.zeros(1, 1, 1, 1), torch.arange(4.0).view(1, 1, 2, 2)
    assert combine(u, n, 2).tolist() == [[[[-1.5, -0.5], [0.5, 1.5]]]]


def test_conformance_kit(pipeline_dir):
    check_generator(get_registry(), f"diffusers:path={pipeline_dir},steps=2,sample_steps=3")
    check_generator(get_registry(), f"diffusers:path={pipeline_dir},steps=2,sample_steps=3,latent=blocks,block=2")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ("steps=0", "steps=0 must be at least 1"),
        ("sample_steps=1001", "at most 1000"),
        ("latent=blocks,block=3", "block=3 does not divide the 8×8 image; give block= one of 2, 4, 8"),
        ("latent=full,block=2", "block=2 is for latent=blocks"),
    ],
)
def test_bad_options_get_one_line(pipeline_dir, options, words):
    with pytest.raises(SpecError, match=words.replace("(", r"\(")) as info:
        build(f"diffusers:path={pipeline_dir},{options}")
    assert "\n" not in str(info.value)


def test_more_steps_than_the_model_was_trained_with(tmp_path):
    folder = write_pipeline(tmp_path / "short", train_steps=100)
    with pytest.raises(SpecError, match="sample_steps=200 is more than the 100 steps the model was trained with; give sample_steps=1..100"):
        build(f"diffusers:path={folder},sample_steps=200")


def corrupt(folder: Path, case: str) -> None:
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    if case == "no model_index":
        (folder / "model_index.json").unlink()
    elif case == "unknown scheduler":
        index = json.loads((folder / "model_index.json").read_text())
        index["scheduler"] = ["diffusers", "EulerDiscreteScheduler"]
        (folder / "model_index.json").write_text(json.dumps(index))
    elif case == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif case == "pickle":
        weights.unlink()

        class Hostile:
            def __reduce__(self):
                return (print, ("this ran",))

        (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"w": Hostile()}))
    elif case == "wrong shapes":
        config = json.loads((folder / "unet" / "config.json").read_text())
        config["block_out_channels"] = [8, 32]
        (folder / "unet" / "config.json").write_text(json.dumps(config))
    elif case == "bad json":
        (folder / "unet" / "config.json").write_text("{not json")


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("no model_index", "model_index.json' is missing: not a diffusers pipeline folder"),
        ("unknown scheduler", "unknown scheduler 'EulerDiscreteScheduler'"),
        ("truncated", "is damaged or truncated"),
        ("pickle", "asks to run builtins.print when it is read.*refused, and nothing ran"),
        ("wrong shapes", "do not fit its config.json"),
        ("bad json", "is not a readable JSON file"),
    ],
)
def test_bad_pipeline_files_get_one_line_and_nothing_runs(tmp_path, case, words, capsys):
    folder = write_pipeline(tmp_path / "p")
    corrupt(folder, case)
    with pytest.raises(PromptgenError, match=words) as info:
        build(f"diffusers:path={folder}")
    assert "\n" not in str(info.value)
    assert "this ran" not in capsys.readouterr().out


def test_an_older_bin_state_dict_loads_through_weights_only(tmp_path, pipeline_dir):
    from safetensors.torch import load_file

    folder = write_pipeline(tmp_path / "p")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(str(weights)), folder / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(build(f"diffusers:path={folder},sample_steps=3").decode(x), build(f"diffusers:path={pipeline_dir},sample_steps=3").decode(x))


def test_conditional_unet_is_refused(tmp_path):
    folder = write_conditional_pipeline(tmp_path / "cond")
    with pytest.raises(PipelineError, match="unet is a UNet2DConditionModel, a conditional or latent model"):
        build(f"diffusers:path={folder}")


def test_cli_error_is_one_line_exit_2(tmp_path):
    result = run("sample", "--gen", f"diffusers:path={tmp_path / 'nowhere'}", "-n", 2, "-o", tmp_path / "g.png")
    assert result.exit_code == 2
    assert "is not a folder" in result.output and "Traceback" not in result.output


def fill_hub_cache(cache: Path, repo: str, source: Path) -> None:
    """The hub's cache layout: models--ORG--NAME/{refs/main, snapshots/COMMIT/...}."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "a" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    for file in source.rglob("*"):
        if file.is_file():
            (snapshot / file.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            (snapshot / file.relative_to(source)).write_bytes(file.read_bytes())


def test_hub_models_load_offline_from_the_cache_and_say_so_when_missing(tmp_path, monkeypatch, pipeline_dir):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(PromptgenError, match="cannot download 'google/ddpm-cifar10-32' from the Hugging Face Hub") as info:
        build("ddpm-cifar10-32")
    assert "\n" not in str(info.value)
    fill_hub_cache(tmp_path / "hub", "google/ddpm-cifar10-32", pipeline_dir)
    g = build("ddpm-cifar10-32:sample_steps=4")
    assert g.info.source == "https://huggingface.co/google/ddpm-cifar10-32" and "Apache-2.0" in g.info.licence
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(g.decode(x), build(f"diffusers:path={pipeline_dir},sample_steps=4").decode(x))


def test_sampler_is_a_function_of_x_t_alone(pipeline_dir):
    g = build(f"diffusers:path={pipeline_dir},sample_steps=5")
    assert isinstance(g.module, DDIMSampler)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        whole = g.decode(x)
        parts = torch.cat([g.decode(x[:1]), g.decode(x[1:])])
    assert torch.allclose(whole, parts, atol=1e-5)
