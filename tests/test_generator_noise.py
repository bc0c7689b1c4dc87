"""Generators with latents in named parts and noise of their own (promptgen.core.latents).

The toy draws a 1×2×2 image: pixel a from latent part ``a``, pixel b from part
``b``, and the bottom row from its own noise ``grain``, which no prompt controls.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import pytest
import torch
from torch import nn

from promptgen.artifacts.manifest import MANIFEST
from promptgen.artifacts.prompt import load_prompt, sample_images
from promptgen.composing import compose
from promptgen.core.errors import PromptgenError
from promptgen.core.latents import BoundGenerator, bind, noise_size
from promptgen.core.registry import build_registry
from promptgen.plugin import ClassifierEntry, GeneratorEntry, GeneratorInfo, ModuleGenerator, hookimpl, split_latent
from promptgen.sampling.baselines import langevin_sample
from promptgen.training.trainer import TrainConfig


class Grainy(nn.Module):
    def forward(self, parts: dict[str, torch.Tensor], grain: torch.Tensor) -> torch.Tensor:
        a = torch.sigmoid(6 * (parts["a"][:, 0] - 1))  # on for 16 % of the prior
        b = torch.sigmoid(6 * parts["b"][:, 0])  # on for half
        bottom = torch.sigmoid(grain.flatten(1)[:, :2])  # the generator's own randomness
        return torch.stack([a, b, bottom[:, 0], bottom[:, 1]], 1).view(-1, 1, 2, 2)


class GrainyGenerator(ModuleGenerator):
    """Two latent parts (``a``, ``b``) and noise of its own (``grain``)."""

    latent_parts: ClassVar = {"a": (1,), "b": (1,)}
    noise_shapes: ClassVar = {"grain": (1, 2, 1)}
    seen: ClassVar[list[torch.Tensor]] = []  # every noise batch decode received

    def decode(self, z, noise=None):
        grain = noise["grain"] if noise is not None else torch.randn(z["a"].shape[0], 1, 2, 1)
        GrainyGenerator.seen.append(grain.detach().clone())
        return self.module(z, grain)


class PixelClassifier:
    attributes: ClassVar = {"a": ["off", "on"], "b": ["off", "on"]}

    def log_probs(self, images):
        flat = images.flatten(1)
        out = {}
        for name, i in (("a", 0), ("b", 1)):
            logit = (flat[:, i] - 0.5) * 30
            out[name] = torch.stack([nn.functional.logsigmoid(-logit), nn.functional.logsigmoid(logit)], 1)
        return out

    def to(self, device):
        return self


class GrainyPlugin:
    @hookimpl
    def promptgen_generators(self):
        build = lambda spec, options, registry: GrainyGenerator(Grainy(), (2,), GeneratorInfo("grainy", (2, 2), 1))
        return [GeneratorEntry("grainy", build, summary="two latent parts and its own noise")]

    @hookimpl
    def promptgen_attribute_classifiers(self):
        return [ClassifierEntry("grainy-ab", PixelClassifier.attributes, lambda options, registry: PixelClassifier())]


@pytest.fixture(scope="module")
def registry():
    return build_registry(extra_plugins=[("grainy", GrainyPlugin())])


KW = {"flow": {"transforms": 2, "hidden": 8}, "progress": False, "preview": 0}  # two couplings: each part moves


def train(steps=12):
    return TrainConfig(steps=steps, batch_size=16, eval_every=4, checkpoint_every=4, fit_samples=256, eval_batch=16)


def test_the_registry_binds_parts_and_noise_into_one_flat_latent(registry):
    gen = registry.build_generator("grainy")
    assert isinstance(gen, BoundGenerator)
    assert gen.latent_shape == (4,) and gen.controlled_size == 2 and noise_size(gen) == 2
    flat = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    parts, noise = gen.split(flat)
    assert parts["a"].tolist() == [[1.0]] and parts["b"].tolist() == [[2.0]]
    assert noise["grain"].shape == (1, 1, 2, 1) and noise["grain"].flatten().tolist() == [3.0, 4.0]
    assert split_latent(flat, {"x": (2, 2)})["x"].shape == (1, 2, 2)


def test_a_plain_generator_is_not_wrapped(registry):
    gen = registry.build_generator("mnist")
    assert bind(gen) is gen and noise_size(gen) == 0


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"latent_parts": {"a": (3,)}}, r"latent_shape \(2,\) must be \(3,\)"),
        ({"noise_shapes": {"grain": (0,)}}, "is not a shape of positive sizes"),
        ({"noise_shapes": {}}, "non-empty mapping"),
        ({"latent_parts": {"a": (1,), "b": (1,)}, "noise_shapes": {"a": (1,)}}, "both a latent part and noise"),
    ],
)
def test_a_wrong_declaration_is_one_line(attrs, message):
    gen = GrainyGenerator(Grainy(), (2,), GeneratorInfo("grainy", (2, 2), 1))
    for key, value in attrs.items():
        setattr(gen, key, value)
    with pytest.raises(PromptgenError, match=message) as info:
        bind(gen)
    assert "\n" not in str(info.value)


def test_the_flow_controls_the_parts_and_passes_the_noise_through(registry, tmp_path):
    long = TrainConfig(steps=300, batch_size=64, lr=0.01, fit_samples=256, eval_batch=16)
    prompt = compose("grainy", ["classifier:a=on"], tmp_path / "p", train=long, registry=registry, **KW)
    assert prompt.manifest.flow.features == 2 and prompt.manifest.flow.passthrough == 2
    assert prompt.manifest.generator.latent_shape == (4,)
    eps = torch.randn(64, 4)
    z = prompt.latents(eps)
    assert torch.equal(z[:, 2:], eps[:, 2:])  # the noise is the generator's, untouched
    assert not torch.allclose(z[:, :2], eps[:, :2])  # the parts were trained
    # Asked for a=on, the prompt draws it far more often than the prior's 16 %.
    images = sample_images(load_prompt(tmp_path / "p", registry), 500, seed=1)
    assert (images.flatten(1)[:, 0] > 0.5).float().mean() > 0.5


def test_sampling_with_a_seed_repeats_the_noise_too(registry, tmp_path):
    compose("grainy", ["classifier:a=on"], tmp_path / "p", train=train(4), registry=registry, **KW)
    prompt = load_prompt(tmp_path / "p", registry)
    first, again, other = (sample_images(prompt, 16, seed=s) for s in (3, 3, 4))
    assert torch.equal(first, again)
    assert not torch.equal(first[:, :, 1], other[:, :, 1])  # the bottom row is the noise: it changes with the seed


def test_training_draws_fresh_noise_at_every_step(registry, tmp_path):
    GrainyGenerator.seen.clear()
    config = train(6).model_copy(update={"eval_batch": 24})  # the watch's readings reuse their samples on purpose
    compose("grainy", ["classifier:a=on"], tmp_path / "p", train=config, registry=registry, **KW)
    batches = [s for s in GrainyGenerator.seen if s.shape[0] == 16]
    assert len(batches) >= 6
    for earlier, later in itertools.pairwise(batches):
        assert not torch.equal(earlier, later)


def test_an_interrupted_run_resumes_to_the_same_weights(registry, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    compose("grainy", ["classifier:a=on"], tmp_path / "whole", train=train(), registry=registry, **KW)
    calls = []
    real = GrainyGenerator.decode

    def crash(self, z, noise=None):
        calls.append(1)
        if len(calls) > 12:  # the probe, the checks, steps 1–8 and their evaluations: this is after the step-8 checkpoint
            raise KeyboardInterrupt
        return real(self, z, noise)

    monkeypatch.setattr(GrainyGenerator, "decode", crash)
    with pytest.raises(KeyboardInterrupt):
        compose("grainy", ["classifier:a=on"], tmp_path / "cut", train=train(), registry=registry, **KW)
    assert not (tmp_path / "cut" / MANIFEST).exists() and (tmp_path / "cut" / "checkpoint.pt").exists()
    monkeypatch.setattr(GrainyGenerator, "decode", real)
    resumed = compose(None, None, tmp_path / "cut", resume=True, progress=False, registry=registry)
    assert resumed.manifest.training.resumed_at
    whole, cut = load_file(str(tmp_path / "whole" / "flow.safetensors")), load_file(str(tmp_path / "cut" / "flow.safetensors"))
    assert all(torch.equal(whole[k], cut[k]) for k in whole)


def test_a_mixture_and_a_chain_keep_the_noise_last(registry, tmp_path):
    mixture = compose("grainy", ["debias:a,mode=mixture"], tmp_path / "m", train=train(8), registry=registry, **KW)
    assert mixture.latent_shape == (5,) and mixture.noise_size == 2  # (ε of the parts, u, noise)
    eps = torch.randn(32, 5)
    assert torch.equal(mixture.latents(eps)[:, 2:], eps[:, 3:])  # u is taken out; the noise passes through
    child = compose(f"prompt:{tmp_path / 'm'}", ["classifier:b=on"], tmp_path / "c", train=train(4), registry=registry, **KW)
    assert child.manifest.flow.features == 3 and child.manifest.flow.passthrough == 2
    assert torch.equal(sample_images(child, 8, seed=0), sample_images(load_prompt(tmp_path / "c", registry), 8, seed=0))


def test_langevin_moves_the_latent_and_keeps_each_chains_noise(registry):
    from promptgen.composing import build_energy
    from promptgen.training.ebm import EnergyBasedModel

    gen = registry.build_generator("grainy")
    ebm = EnergyBasedModel(gen, [build_energy("classifier:a=on", registry)])
    GrainyGenerator.seen.clear()
    images, _ = langevin_sample(ebm, 4, steps=6, seed=0, batch_size=4, progress=False)
    assert images.shape == (4, 1, 2, 2)
    chains = [s for s in GrainyGenerator.seen if s.shape[0] == 4]
    assert len(chains) >= 6 and all(torch.equal(chains[0], s) for s in chains)


def test_seeded_noise_differs_for_every_float32_number():
    # torch's CPU generator keeps 32 bits of a seed, and a float32 widened to float64 has zeros there:
    # seeded from torch, 10,000 images would share a handful of noise maps.
    from promptgen.plugin import seed_of, seeded_noise

    u = torch.randn(10_000, 1)
    assert len(set(seed_of(u))) == 10_000
    noise = seeded_noise(u, {"x": (4,)})["x"]
    assert len({tuple(row.tolist()) for row in noise}) == 10_000
    assert abs(float(noise.mean())) < 0.05 and abs(float(noise.std()) - 1) < 0.05
    again = seeded_noise(u[:5], {"x": (4,)})["x"]
    assert torch.equal(again, noise[:5])
    uniform = seeded_noise(u[:1000], {"x": (8,)}, distribution="uniform")["x"]
    assert float(uniform.min()) >= 0 and float(uniform.max()) < 1
