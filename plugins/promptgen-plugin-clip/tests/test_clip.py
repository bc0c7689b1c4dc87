"""The clip energy on random-weight open_clip models with the real tokenizer (no downloads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import promptgen_plugin_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from promptgen_plugin_clip.energy import DEFAULT_WEIGHT, ClipComponent, ClipEnergy
from promptgen_plugin_clip.models import ClipLoadError
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.core.registry import get_registry
from promptgen.plugin import capabilities
from promptgen.testing import one_line_error

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def build_clip_energy(spec: str) -> ClipEnergy:
    """The energy as `--energy SPEC` builds it: options checked by the core, then the plugin's build."""
    return get_registry().build_energy(spec)


@pytest.fixture(scope="module")
def vit_b32():
    """ViT-B-32 with random weights, built through the spec as a user would."""
    torch.manual_seed(0)
    return build_clip_energy('clip:"a photo of a cat",pretrained=none,aug=none')


def test_energy_equals_a_direct_open_clip_computation(vit_b32):
    import open_clip

    model = vit_b32.components[0][0].model
    _, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in ((224, 224), (256, 320))]
    with torch.no_grad():
        text = F.normalize(model.encode_text(tokenizer(["a photo of a cat"])), dim=-1)
        for p in pixels:
            direct_img = F.normalize(model.encode_image(preprocess(Image.fromarray(p))[None]), dim=-1)
            direct = 1 - (direct_img @ text.T)[0, 0]
            ours = vit_b32(torch.from_numpy(p).permute(2, 0, 1)[None].float() / 255, None)[0]
            if p.shape[:2] == (224, 224):  # no resizing: the same numbers
                torch.testing.assert_close(ours, direct, atol=1e-5, rtol=0)
            else:  # PIL's bicubic resize against torch's antialiased one
                assert abs(float(ours - direct)) < 2e-3


def test_text_features_are_computed_once(vit_b32, monkeypatch):
    assert vit_b32.text_encoder_calls == 1
    calls = []
    monkeypatch.setattr(vit_b32.components[0][0].model, "encode_text", lambda *a, **k: calls.append(1))
    vit_b32(torch.rand(2, 3, 64, 64), None)
    vit_b32(torch.rand(2, 3, 64, 64), None)
    assert calls == []


def test_needs_no_fitting_and_is_bounded_below(vit_b32):
    caps = capabilities(vit_b32)
    assert not caps.fittable and caps.bounded and caps.lower_bound() == 0.0


def test_an_image_made_to_match_the_text_has_lower_energy(tiny_clip):
    torch.manual_seed(0)
    energy = build_clip_energy(f"clip:a red circle,model={tiny_clip},pretrained=none,aug=none")
    logits = torch.zeros(1, 3, 32, 32, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(150):  # pixels pushed towards the text's embedding
        loss = energy(torch.sigmoid(logits), None).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        made = energy(torch.sigmoid(logits), None)
        random = energy(torch.rand(64, 3, 32, 32), None)
    assert float(made.max()) < float(random.min()) - 0.1


def test_negative_texts_raise_the_energy(tiny_clip):
    torch.manual_seed(0)
    pos = build_clip_energy(f"clip:smiling,model={tiny_clip},pretrained=none,aug=none")
    torch.manual_seed(0)
    both = build_clip_energy(f'clip:"smiling"-"blurry",model={tiny_clip},pretrained=none,aug=none')
    torch.manual_seed(0)
    opt = build_clip_energy(f"clip:smiling,neg=blurry,model={tiny_clip},pretrained=none,aug=none")
    comp = both.components[0][0]
    x = torch.rand(4, 3, 32, 32)
    cos_neg = comp.image_features(comp.preprocess.resize(x)) @ comp.negative.T
    torch.testing.assert_close(both(x, None), pos(x, None) + cos_neg[:, 0])
    torch.testing.assert_close(opt(x, None), both(x, None))
    assert both.lower_bound() == -1.0 and pos.lower_bound() == 0.0


def test_templates_several_texts_and_several_models(tiny_clip):
    torch.manual_seed(0)
    e = build_clip_energy(f'clip:cat,dog,template="a photo of a {{}}|a drawing of a {{}}",model={tiny_clip},pretrained=none,aug=none')
    comp = e.components[0][0]
    assert comp.positive.shape[0] == 4 and e.text_encoder_calls == 1
    torch.manual_seed(0)
    two = build_clip_energy(f"clip:cat,model={tiny_clip}*3+{tiny_clip}*1,pretrained=none,aug=none")
    (a, wa), (b, wb) = two.components
    assert (wa, wb) == (0.75, 0.25)
    x = torch.rand(2, 3, 32, 32)

    def one(c):
        f = c.image_features(c.preprocess.resize(x))
        return 1 - (f @ c.positive.T).mean(1)

    torch.testing.assert_close(two(x, None), 0.75 * one(a) + 0.25 * one(b))


def test_gradients_reach_the_generators_latent(tiny_clip):
    gen = get_registry().build_generator("mnist")
    energy = build_clip_energy(f"clip:the digit seven,model={tiny_clip},pretrained=none,augs=3")
    z = torch.randn(2, 32, requires_grad=True)
    energy(gen.decode(z), z).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_bfloat16_image_tower_is_close_to_float32(tiny_clip):
    torch.manual_seed(0)
    full = build_clip_energy(f"clip:cat,model={tiny_clip},pretrained=none,aug=none")
    torch.manual_seed(0)
    half = build_clip_energy(f"clip:cat,model={tiny_clip},pretrained=none,aug=none,dtype=bfloat16")
    assert next(half.components[0][0].model.visual.parameters()).dtype == torch.bfloat16
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(half(x, None), full(x, None), atol=0.03, rtol=0)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("clip:neg=blurry", ["give the text"]),
        ("clip:cat,augs=0", ["augs=0", "at least 1"]),
        ("clip:cat,aug=rotate", ["rotate", "color"]),
        ("clip:cat,dtype=int8", ["dtype='int8'", "'float32'"]),
        ("clip:cat,template=a photo", ["{}"]),
        ("clip:cat,modle=RN50", ["did you mean 'model'"]),
        ("clip:cat,model=ViT-B-33,pretrained=none", ["unknown CLIP model", "ViT-B-32"]),
        ("clip:cat,pretrained=nosuchtag", ["no pretrained weights", "openai"]),
        ("clip:cat,model=ViT-B-32*-1", ["positive"]),
        ("clip:cat,path=/nonexistent/clip.pt", ["does not exist"]),
    ],
)
def test_bad_specs_get_one_line(spec, words, tmp_path):
    one_line_error(run("compose", "--gen", "mnist", "--energy", spec, "--out", tmp_path / "out"), *words)
    assert not (tmp_path / "out").exists()


def test_a_local_checkpoint_loads_with_path(tiny_clip, tmp_path):
    import open_clip

    torch.manual_seed(3)
    model = open_clip.create_model(tiny_clip, pretrained=None)
    torch.save(model.state_dict(), tmp_path / "mine.pt")
    e = build_clip_energy(f"clip:cat,model={tiny_clip},path={tmp_path / 'mine.pt'},aug=none")
    loaded = e.components[0][0].model
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ClipLoadError) as err:
        build_clip_energy(f"clip:cat,model={tiny_clip},path={tmp_path / 'broken.pt'}")
    assert "cannot load CLIP weights" in str(err.value) and "\n" not in str(err.value)


def test_offline_without_cached_weights_is_one_line_and_exit_2(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "promptgen", "compose", "--gen", "mnist", "--energy", "clip:smiling", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    for word in ("ViT-B-32/openai", str(tmp_path / "hf"), "HF_HUB_OFFLINE", "path="):
        assert word in lines[0], word
    assert not (tmp_path / "out").exists()


def test_compose_with_clip_and_debias_then_sample_without_clip(tiny_clip, tmp_path, monkeypatch):
    calls = []
    original = ClipComponent.encode_texts

    def counting(self, tokenizer, texts):
        calls.append(list(texts))
        return original(self, tokenizer, texts)

    monkeypatch.setattr(ClipComponent, "encode_texts", counting)
    out = tmp_path / "seven"
    result = run(
        "compose", "--gen", "mnist", "--energy", f"clip:the digit seven,model={tiny_clip},pretrained=none,augs=2@50",
        "--energy", "debias:thickness", "--steps", 4, "--batch-size", 8, "--eval-every", 2, "--eval-batch", 16, "--out", out, "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert calls == [["the digit seven"]]  # the text tower ran once, for the whole run
    manifest = json.loads((out / "manifest.json").read_text())
    specs = [e["spec"] for e in manifest["energies"]]
    assert specs[0].startswith("clip:the digit seven") and specs[0].endswith("@50") and specs[1] == "debias:thickness"
    assert manifest["energies"][0]["plugin"].startswith("promptgen-plugin-clip")
    # Sampling needs no energy model: run it where open_clip cannot even be imported.
    blocker = tmp_path / "blocker"
    (blocker / "open_clip").mkdir(parents=True)
    (blocker / "open_clip" / "__init__.py").write_text("raise ImportError('open_clip must not be needed to sample')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "promptgen", "sample", str(out), "-n", "8", "-o", str(tmp_path / "grid.png")],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_registered_default_weight_is_the_energys():
    assert promptgen_plugin_clip.DEFAULT_WEIGHT == DEFAULT_WEIGHT == get_registry().energy("clip").default_weight


@pytest.fixture
def no_dns(tmp_path, monkeypatch):
    """No network (the hub's name does not resolve), no HF_HUB_OFFLINE, no proxy, an empty hub cache in tmp_path;
    every back-off sleep of huggingface_hub is recorded."""
    import socket
    import time

    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)

    def fail(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    return sleeps


@pytest.mark.filterwarnings("ignore:QuickGELU mismatch")  # open_clip's, about the openai tag's config
def test_no_network_reads_the_cache_at_once_instead_of_retrying(no_dns, tmp_path):
    import open_clip
    from huggingface_hub import constants
    from promptgen_plugin_clip.models import load_clip

    # Not cached: the one-line error, without huggingface_hub's five retries per file.
    with pytest.raises(ClipLoadError, match=r"could not be downloaded from https://huggingface.co/.*\(no connection\)"):
        load_clip("ViT-B-32", "openai")
    assert no_dns == [] and constants.HF_HUB_OFFLINE is False
    # Cached (here a damaged file, in the hub cache's layout): read from the cache, so the error is about the file.
    repo, name = os.path.split(open_clip.get_pretrained_cfg("ViT-B-32", "openai")["hf_hub"])
    folder = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "snapshots" / commit / (name or "open_clip_pytorch_model.bin")).write_bytes(b"not a checkpoint")
    with pytest.raises(ClipLoadError, match="cannot load CLIP weights ViT-B-32/openai"):
        load_clip("ViT-B-32", "openai")
    assert no_dns == [] and constants.HF_HUB_OFFLINE is False


def test_behind_a_proxy_the_hub_is_not_probed(no_dns, monkeypatch):
    from promptgen_plugin_clip.models import _hub_unreachable

    assert _hub_unreachable()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert not _hub_unreachable()  # the proxy resolves names, not this machine
