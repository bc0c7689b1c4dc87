"""The conformance kit (promptgen.testing): every registered entry passes it, and it catches broken toys."""

from __future__ import annotations

import os
import types
from typing import ClassVar, Literal

import pytest
import torch
from pydantic import ConfigDict
from torch import nn

from promptgen.core import download
from promptgen.core.entries import LegacyGeneratorEntry
from promptgen.core.registry import build_registry, get_registry
from promptgen.plugin import (
    ClassifierEntry,
    DownloadError,
    EnergyBase,
    EnergyEntry,
    GeneratorEntry,
    GeneratorInfo,
    ModuleGenerator,
    Options,
    PromptgenError,
    RemoteFile,
    adapt_images,
    fetch,
    hookimpl,
    option,
)
from promptgen.testing import (
    SKIPPED_BY_DEFAULT,
    check_classifier,
    check_energy,
    check_entry,
    check_generator,
    check_registered,
    offline,
    registered_entries,
)

# -- every entry the installed plugins register ---------------------------------------------------------------

INSTALLED = build_registry()
ENTRIES = registered_entries(INSTALLED)
PANEL = [
    f"generator:{n}"
    for p in INSTALLED.plugins
    if p.distribution == "promptgen-plugin-digit-panel"
    for n in p.generators
]
#: Entries that run offline here and must really be checked, not reported as needing files.
MUST_CHECK = {
    "generator:mnist",
    "energy:classifier",
    "energy:debias",
    "classifier:mnist-digit",
    "classifier:mnist-digit-evaluator",
    "classifier:mnist-stroke",
    "classifier:mnist-stroke-evaluator",
    *PANEL,
}
NEEDS_FILES_WORDS = ("download", "offline", "path", "cache")


@pytest.fixture(scope="module")
def tiny_prompt(tmp_path_factory):
    """A prompt folder trained for 3 steps on mnist, for the ``prompt`` generator."""
    from promptgen.composing import compose
    from promptgen.training.trainer import TrainConfig

    folder = tmp_path_factory.mktemp("conformance") / "three"
    config = TrainConfig(steps=3, batch_size=8, eval_every=3, checkpoint_every=3, fit_samples=16, eval_batch=16)
    compose(
        "mnist",
        ["classifier:digit=3"],
        folder,
        train=config,
        flow={"transforms": 1, "hidden": 8},
        progress=False,
        preview=0,
    )
    return folder


def test_the_entries_that_must_be_checked_are_installed():
    assert PANEL, "promptgen-plugin-digit-panel is not installed"
    assert MUST_CHECK <= set(ENTRIES)


@pytest.mark.parametrize("entry", ENTRIES)
def test_registered_entry_conforms(entry, request):
    kind, name = entry.split(":", 1)
    spec = None
    if entry == "generator:prompt":
        spec = f"prompt:{request.getfixturevalue('tiny_prompt')}"
    result = check_entry(get_registry(), kind, name, spec=spec)
    assert result.status in ("passed", "needs files"), result
    if entry in MUST_CHECK or entry == "generator:prompt":
        assert result.status == "passed", result
    if result.status == "needs files":
        assert result.reason and len(result.reason.splitlines()) == 1
        assert any(w in result.reason.lower() for w in NEEDS_FILES_WORDS), result.reason


def test_check_registered_reports_every_entry():
    report = check_registered()
    assert set(report.passed) >= MUST_CHECK
    assert report.skipped == SKIPPED_BY_DEFAULT
    assert len(report.results) == len(registered_entries())
    for reason in report.needs_files.values():
        assert len(reason.splitlines()) == 1
    if "generator:stylegan2-ffhq" in ENTRIES:
        assert "generator:stylegan2-ffhq" in report.needs_files or "generator:stylegan2-ffhq" in report.passed


def test_a_stylegan2_checkpoint_given_by_path_conforms(tmp_path):
    import promptgen_plugin_stylegan2.testing as sg  # installed with every plugin (scripts/test.sh)

    pkl = sg.write_nvidia_pickle(sg.random_generator(), tmp_path / "tiny.pkl")
    check_generator(get_registry(), f"stylegan2:path={pkl},psi=0.7")


def test_offline_refuses_downloads_and_restores_everything(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTGEN_HOME", str(tmp_path))
    real, env = download._download, os.environ.get("HF_HUB_OFFLINE")
    with offline(), pytest.raises(DownloadError, match="offline"):
        fetch(RemoteFile("https://example.invalid/w.pt", "w.pt"), subdir="toy", progress=False)
    assert download._download is real and os.environ.get("HF_HUB_OFFLINE") == env
    assert not (tmp_path / "toy").exists()


def test_meta_is_not_a_device():
    with pytest.raises(ValueError, match="meta"):
        check_generator(get_registry(), "mnist", devices=("meta",))


# -- toys: one correct, and each kind of mistake ---------------------------------------------------------------


class ToyNet(nn.Module):
    """Latent (B, 4) -> (B, 1, 8, 8) in [0, 1], the same weights every time (seed 1)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(1)
            self.linear = nn.Linear(4, 64)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(z)).view(-1, 1, 8, 8)


class ToyGenerator(ModuleGenerator):
    def __init__(self, name: str, flaw: str = "", scale: float = 1.0) -> None:
        super().__init__(ToyNet(), (4,), GeneratorInfo(name, (8, 8), 1))
        self.flaw, self.scale = flaw, scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.flaw == "no-grad":
            with torch.no_grad():
                return self.module(z * self.scale)
        images = self.module(z * self.scale)
        if self.flaw == "shape":
            return images[..., :4, :4]
        if self.flaw == "range":
            return images * 2 - 0.5
        if self.flaw == "detach":
            return images.detach()
        if self.flaw == "random":
            return (images + 0.05 * torch.rand_like(images)).clamp(0, 1)
        return images

    def to(self, device):
        super().to(device)
        return ToyGenerator(self.info.name, self.flaw, self.scale) if self.flaw == "copy" else self


class ToyOptions(Options):
    scale: float = option(1.0, gt=0, le=2, help="latent scale")


class LooseOptions(ToyOptions):
    model_config = ConfigDict(**{**Options.model_config, "extra": "allow"})


class EnergyOptions(Options):
    target: float = option(0.5, ge=0, le=1, help="mean ink to aim for")
    reduce: Literal["mean", "max"] = option("mean", help="how to measure ink")


class ToyEnergy:
    """((ink - target) / 0.1)² per image; with a flaw, wrong."""

    def __init__(self, label: str, flaw: str, target: float = 0.5) -> None:
        self.label, self.flaw, self.target = label, flaw, target
        self.own = torch.Generator().manual_seed(0)  # never reseeded: drawing from it is not deterministic

    def __call__(self, images: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        value = ((images.mean((1, 2, 3)) - self.target) / 0.1) ** 2
        if self.flaw == "shape":
            return value[:, None]
        if self.flaw == "no-grad":
            return value.detach()
        if self.flaw == "random":
            return value + torch.rand(value.shape, generator=self.own)
        return value

    def lower_bound(self) -> float:
        return 0.0

    def to(self, device):
        return self


class ToyClassifier:
    """'tone' of an image (dark, mid, light) from its mean, any size and channels."""

    attributes: ClassVar[dict[str, list[str]]] = {"tone": ["dark", "mid", "light"]}

    def __init__(self, flaw: str = "", temperature: float = 1.0) -> None:
        self.flaw, self.temperature = flaw, temperature
        self.centres = torch.tensor([0.2, 0.5, 0.8])

    def log_probs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.flaw != "fixed-size":
            images = adapt_images(images, (8, 8), 1)
        logits = -((images.reshape(images.shape[0], 64).mean(1, keepdim=True) - self.centres) ** 2) / (
            0.01 * self.temperature
        )
        return {"tone": logits + 1 if self.flaw == "unnormalised" else logits.log_softmax(1)}

    def to(self, device):
        self.centres = self.centres.to(device)
        return self


class ClassifierOptions(Options):
    temperature: float = option(1.0, gt=0, le=10, help="softness")


class NoisyToy:
    """A generator with latent parts and noise of its own (bound: one flat latent, noise last)."""

    latent_shape = (4,)
    latent_parts: ClassVar[dict[str, tuple[int, ...]]] = {"z": (2,), "label": (2,)}
    noise_shapes: ClassVar[dict[str, tuple[int, ...]]] = {"grain": (1, 8, 8)}

    def __init__(self, name: str, flaw: str = "") -> None:
        self.net, self.info, self.flaw = ToyNet(), GeneratorInfo(name, (8, 8), 1), flaw

    @property
    def device(self) -> torch.device:
        return self.net.linear.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.net.linear.weight.dtype

    def decode(self, z, noise=None):
        flat = torch.cat([z["z"], z["label"]], 1)
        own = noise is None or self.flaw == "own-noise"  # the flaw: ignores the noise it is given
        grain = torch.randn(flat.shape[0], 1, 8, 8, device=flat.device) if own else noise["grain"]
        return (self.net(flat) + 0.01 * grain).clamp(0, 1)

    def to(self, device):
        self.net.to(device)
        return self


def _generator(name: str, flaw: str = "", options: type[Options] = ToyOptions) -> GeneratorEntry:
    return GeneratorEntry(name, lambda spec, o, registry: ToyGenerator(name, flaw, o.scale), options=options)


def _raises(exc: Exception):
    def build(spec, options, registry):
        raise exc

    return build


TOY = types.SimpleNamespace(
    promptgen_generators=hookimpl(
        lambda: [
            _generator("toy-good"),
            *(_generator(f"toy-{flaw}", flaw) for flaw in ("shape", "range", "no-grad", "detach", "random", "copy")),
            _generator("toy-loose", options=LooseOptions),
            GeneratorEntry("toy-noisy", lambda spec, o, registry: NoisyToy("toy-noisy")),
            GeneratorEntry("toy-noisy-own", lambda spec, o, registry: NoisyToy("toy-noisy-own", "own-noise")),
            LegacyGeneratorEntry("toy-legacy", lambda spec: ToyGenerator("toy-legacy")),
            GeneratorEntry(
                "toy-zoo",
                _raises(DownloadError("cannot download https://example.org/w.pkl: offline; pass path= a local copy")),
            ),
            GeneratorEntry("toy-refusing", _raises(PromptgenError("the moon is in the wrong phase"))),
            GeneratorEntry("toy-crashing", _raises(KeyError("weights"))),
        ]
    ),
    promptgen_energies=hookimpl(
        lambda: [
            EnergyEntry(
                f"toy-energy{'-' + flaw if flaw else ''}",
                lambda spec, o, registry, flaw=flaw: ToyEnergy(spec.format(), flaw, o.target),
                options=EnergyOptions,
                example=f"toy-energy{'-' + flaw if flaw else ''}:target=0.3",
            )
            for flaw in ("", "shape", "no-grad", "random")
        ]
    ),
    promptgen_attribute_classifiers=hookimpl(
        lambda: [
            ClassifierEntry(
                f"toy-tone{'-' + flaw if flaw else ''}",
                ToyClassifier.attributes,
                lambda o, registry, flaw=flaw: ToyClassifier(flaw, o.temperature),
                options=ClassifierOptions,
            )
            for flaw in ("", "unnormalised", "fixed-size")
        ]
    ),
)


@pytest.fixture(scope="module")
def toys():
    registry = build_registry(extra_plugins=[("toy", TOY)])
    assert not registry.failures, registry.failures
    return registry


def test_a_correct_toy_generator_energy_and_classifier_pass_every_check(toys):
    gen = check_generator(toys, "toy-good:scale=1.5")
    assert gen.info.name == "toy-good"
    bound = check_generator(toys, "toy-noisy")
    assert (bound.latent_shape, bound.noise_size) == ((68,), 64)
    check_energy(toys, "toy-energy:target=0.3", generator="toy-noisy")
    check_energy(toys, "toy-energy:target=0.3,reduce=max@5", generator="toy-good")
    check_energy(toys, "toy-energy:target=0.3", generator=gen)
    check_classifier(toys, "toy-tone", {"temperature": "2"})
    for kind, name in (("generator", "toy-good"), ("energy", "toy-energy"), ("classifier", "toy-tone")):
        assert check_entry(toys, kind, name, generator="toy-good").status == "passed"


@pytest.mark.parametrize(
    ("check", "name", "match"),
    [
        ("generator", "toy-shape", r"toy-shape.*shape \(2, 1, 4, 4\).*promises \(2, 1, 8, 8\)"),
        ("generator", "toy-range", r"toy-range.*pixel values from -0\.\d+ to 1\.\d+.*\[0, 1\]"),
        ("generator", "toy-no-grad", r"toy-no-grad.*no gradient reaches the latent"),
        ("generator", "toy-detach", r"toy-detach.*no gradient reaches the latent"),
        ("generator", "toy-random", r"toy-random.*decode is not deterministic"),
        ("generator", "toy-noisy-own", r"toy-noisy-own.*decode is not deterministic"),
        ("generator", "toy-copy", r"toy-copy.*to\('cpu'\) returned ToyGenerator.*not the object itself"),
        ("generator", "toy-legacy", r"toy-legacy:no_such_option=1.*an unknown option.*accepted silently"),
        ("energy", "toy-energy-shape", r"toy-energy-shape.*returned shape \(2, 1\) for 2 images"),
        ("energy", "toy-energy-no-grad", r"toy-energy-no-grad.*no gradient reaches the images"),
        ("energy", "toy-energy-random", r"toy-energy-random.*is not deterministic"),
        ("classifier", "toy-tone-unnormalised", r"toy-tone-unnormalised.*log_probs\['tone'\] are not normalised"),
        ("classifier", "toy-tone-fixed-size", r"toy-tone-fixed-size.*log_probs of images \(2, 3, 32, 32\) raised"),
    ],
)
def test_the_kit_catches_a_broken_toy(toys, check, name, match):
    with pytest.raises(AssertionError, match=match) as info:
        if check == "generator":
            check_generator(toys, name)
        elif check == "energy":
            check_energy(toys, f"{name}:target=0.3", generator="toy-good")
        else:
            check_classifier(toys, name)
    assert len(str(info.value).splitlines()) == 1


def test_an_options_model_that_allows_extra_keys_still_refuses_an_unknown_option(toys):
    # The core checks each key against the model's fields before pydantic sees them, so extra="allow"
    # cannot let an unknown option through a current entry (only a 0.1 entry parses its own options).
    check_generator(toys, "toy-loose")


def test_an_entry_that_needs_files_is_reported_and_one_that_cannot_be_built_fails(toys):
    result = check_entry(toys, "generator", "toy-zoo")
    assert (result.status, result.spec) == ("needs files", "toy-zoo")
    assert "pass path=" in result.reason
    with pytest.raises(AssertionError, match=r"toy-refusing.*cannot be built from 'toy-refusing'.*wrong phase"):
        check_entry(toys, "generator", "toy-refusing")
    with pytest.raises(
        AssertionError, match=r"toy-crashing.*building raised KeyError.*one-line promptgen PromptgenError"
    ):
        check_entry(toys, "generator", "toy-crashing")


def test_check_registered_fails_listing_every_broken_entry(toys):
    toy_ids = [e for e in registered_entries(toys) if e.split(":", 1)[1].startswith("toy-")]
    others = [e for e in registered_entries(toys) if e not in toy_ids]
    with pytest.raises(AssertionError) as info:
        check_registered(toys, skip=others, generator="toy-good")
    lines = str(info.value).splitlines()
    broken = [
        e
        for e in toy_ids
        if e.split(":", 1)[1] not in ("toy-good", "toy-loose", "toy-noisy", "toy-energy", "toy-tone", "toy-zoo")
    ]
    assert lines[0] == f"{len(broken)} of {len(toy_ids)} entries checked failed:"
    assert len(lines) == 1 + len(broken)
    good = check_registered(
        toys, skip=[e for e in registered_entries(toys) if e not in ("generator:toy-good", "generator:toy-zoo")]
    )
    assert (good.passed, list(good.needs_files)) == (["generator:toy-good"], ["generator:toy-zoo"])


class _TwinDistance(EnergyBase):
    """A contextual energy: distance to the twin at the reference condition, plus the condition's first value."""

    def __init__(self, noisy: bool = False):
        super().__init__("twin")
        self.noisy = noisy
        self.own = torch.Generator().manual_seed(0)  # its own stream: the kit's seeding cannot make it repeat

    def __call__(self, images, latents):
        raise PromptgenError("twin needs a conditional prompt")

    def context_energy(self, images, latents, context):
        e = (images - context.reference).pow(2).flatten(1).mean(1) + context.condition[:, 0]
        return e + torch.rand(e.shape, generator=self.own) if self.noisy else e


class _TwinPlugin:
    @hookimpl
    def promptgen_energies(self):
        return [
            EnergyEntry("twin", lambda spec, options, registry: _TwinDistance()),
            EnergyEntry("twin-noisy", lambda spec, options, registry: _TwinDistance(noisy=True)),
        ]


def test_a_contextual_energy_is_checked_the_way_conditional_prompts_call_it():
    registry = build_registry(extra_plugins=[("twin", _TwinPlugin())])
    check_energy(registry, "twin", generator="mnist")  # its plain call would raise: the kit passes a context
    with pytest.raises(AssertionError, match="not deterministic"):
        check_energy(registry, "twin-noisy", generator="mnist")
