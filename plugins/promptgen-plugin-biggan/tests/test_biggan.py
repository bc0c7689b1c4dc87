"""Loading, the latent parts, class=, truncation, bad files, and agreement with pytorch-pretrained-BigGAN."""

from __future__ import annotations

import json
import pickle

import pytest
import pytorch_pretrained_biggan as reference  # the reference implementation: pip install pytorch-pretrained-biggan scipy
import torch
from promptgen_plugin_biggan.config import OFFICIAL, parse_config
from promptgen_plugin_biggan.network import BigGAN
from promptgen_plugin_biggan.testing import TINY, random_state_dict

from promptgen import plugin
from promptgen.core.registry import get_registry
from promptgen.testing import check_generator


def build(spec):
    return get_registry().build_generator(spec)


def reference_images(folder, z, class_vector=None, embedding=None, truncation=0.4):
    ref = reference.BigGAN.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        if embedding is None:
            embedding = ref.embeddings(class_vector)
        return (ref.generator(torch.cat([z, embedding], 1), truncation) + 1) / 2


def test_the_official_configurations_and_keys_are_the_references():
    from pytorch_pretrained_biggan.convert_tf_to_pytorch import BigGAN128, BigGAN256, BigGAN512

    for res, cfg in [(128, BigGAN128), (256, BigGAN256), (512, BigGAN512)]:
        assert parse_config(json.loads(cfg.to_json_string()), "x") == OFFICIAL[res]
    ref = reference.BigGAN(reference.BigGANConfig(**{**TINY.model_dump(), "layers": [list(x) for x in TINY.layers]}))
    ours = BigGAN(TINY)
    assert {k: tuple(v.shape) for k, v in ref.state_dict().items()} == {k: tuple(v.shape) for k, v in ours.state_dict().items()}


@pytest.mark.parametrize("truncation", [0.4, 1.0, 0.137])
def test_images_match_the_reference(tiny, truncation):
    gen = build(f"biggan:path={tiny},truncation={truncation}")
    assert gen.latent_shape == (32,) and gen.info.resolution == (32, 32) and gen.info.channels == 3
    torch.manual_seed(0)
    eps = 1.5 * torch.randn(5, 32)
    x = gen.decode(eps)
    scale = gen.inner.module.class_scale
    expected = reference_images(tiny, truncation * eps[:, :16].clamp(-2, 2), embedding=scale * eps[:, 16:], truncation=truncation)
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=0)
    assert float(x.std()) > 0.01  # not a flat image: the comparison means something


def test_a_file_saved_by_the_reference_loads(tmp_path):
    torch.manual_seed(3)
    ref = reference.BigGAN(reference.BigGANConfig(**{**TINY.model_dump(), "layers": [list(x) for x in TINY.layers]}))
    ref.load_state_dict(random_state_dict(TINY, seed=4))
    ref.eval()
    folder = tmp_path / "saved"
    folder.mkdir()
    torch.save(ref.state_dict(), folder / "pytorch_model.bin")  # as convert_tf_to_pytorch.py saves it
    (folder / "config.json").write_text(ref.config.to_json_string())
    gen = build(f"biggan:path={folder / 'pytorch_model.bin'},class=207")  # the .bin, config.json beside it
    z = torch.randn(3, 16)
    one_hot = torch.zeros(3, 1000)
    one_hot[:, 207] = 1
    with torch.no_grad():
        expected = (ref(0.4 * z.clamp(-2, 2), one_hot, 0.4) + 1) / 2
    torch.testing.assert_close(gen.decode(z), expected, atol=1e-5, rtol=0)


def test_latent_parts_and_the_class_scale(tiny):
    gen = build(f"biggan:path={tiny}")
    assert gen.inner.latent_parts == {"z": (16,), "class": (16,)}
    assert gen.controlled_size == 32 and gen.noise_size == 0
    net = gen.inner.module.net
    w = net.embeddings.weight
    assert float(gen.inner.module.class_scale) == pytest.approx(float(w.pow(2).mean().sqrt()))
    # The class part moves the image; so does z; z beyond ±2 is clamped (the paper's truncation).
    eps = torch.randn(2, 32)
    other_class = eps.clone()
    other_class[:, 16:] = torch.randn(2, 16)
    assert not torch.allclose(gen.decode(eps), gen.decode(other_class))
    big = eps.clone()
    big[:, :16] = 5.0
    clamped = eps.clone()
    clamped[:, :16] = 2.0
    assert torch.equal(gen.decode(big), gen.decode(clamped))
    # The class part at class i's embedding (in units of the scale) is that class's image.
    fixed = build(f"biggan:path={tiny},class=207")
    as_part = torch.cat([eps[:, :16], (w[:, 207] / gen.inner.module.class_scale).expand(2, -1)], 1)
    torch.testing.assert_close(gen.decode(as_part), fixed.decode(eps[:, :16]), atol=1e-6, rtol=0)


def test_class_by_index_and_by_name(tiny):
    by_name = build(f"biggan:path={tiny},class=golden retriever")
    by_index = build(f"biggan:path={tiny},class=207")
    assert by_name.latent_shape == by_index.latent_shape == (16,)
    assert getattr(by_name, "latent_parts", None) is None
    z = torch.randn(2, 16)
    assert torch.equal(by_name.decode(z), by_index.decode(z))
    assert torch.equal(build(f"biggan:path={tiny},class=Golden_Retriever").decode(z), by_index.decode(z))
    assert "golden retriever" in by_name.info.description
    one_hot = torch.zeros(2, 1000)
    one_hot[:, 207] = 1
    torch.testing.assert_close(by_name.decode(z), reference_images(tiny, 0.4 * z.clamp(-2, 2), one_hot), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("class=golden retreiver", ["not an ImageNet class", "golden retriever"]),
        ("class=1000", ["out of range", "0-999"]),
        ("truncation=0", ["truncation"]),
        ("truncation=1.5", ["truncation"]),
        ("clas=3", ["did you mean 'class'"]),
        # issue 25: ImageNet's two cranes and two maillots: the name alone says both choices
        ("class=crane", ["two classes named 'crane'", "the machine (517)", "'crane bird' (134)", "class=517"]),
        ("class=Maillot", ["two classes named 'Maillot'", "(638)", "'maillot tank suit' (639)"]),
    ],
)
def test_option_errors_are_one_line(tiny, option, words):
    with pytest.raises(plugin.PromptgenError) as info:
        build(f"biggan:path={tiny},{option}")
    text = str(info.value)
    assert "\n" not in text
    for w in words:
        assert w in text, text


def test_the_disambiguated_names_and_indices_pick_one_class(tiny):
    assert "crane bird" in build(f"biggan:path={tiny},class=crane bird").info.description
    assert "crane" in build(f"biggan:path={tiny},class=517").info.description
    assert "maillot tank suit" in build(f"biggan:path={tiny},class=maillot_tank_suit").info.description


def _copy(tiny, dest):
    dest.mkdir()
    for name in ("config.json", "pytorch_model.bin"):
        (dest / name).write_bytes((tiny / name).read_bytes())
    return dest


class Evil:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('ran')",))


def test_bad_files_are_one_line_errors_and_nothing_runs(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = {}
    truncated = _copy(tiny, tmp_path / "truncated")
    data = (truncated / "pytorch_model.bin").read_bytes()
    (truncated / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    cases["truncated"] = (truncated, ["damaged or truncated"])
    evil = _copy(tiny, tmp_path / "evil")
    with open(evil / "pytorch_model.bin", "wb") as f:
        pickle.dump({"generator.gen_z.bias": Evil()}, f)
    cases["evil"] = (evil, ["asks to run builtins.exec", "refused, and nothing ran"])
    evil_zip = _copy(tiny, tmp_path / "evil_zip")
    torch.save({"x": Evil()}, evil_zip / "pytorch_model.bin")
    cases["evil_zip"] = (evil_zip, ["asks to run", "refused, and nothing ran"])
    other = _copy(tiny, tmp_path / "other")  # another architecture's weights
    torch.save({"encoder.layer.0.weight": torch.zeros(3, 3), "decoder.bias": torch.zeros(3)}, other / "pytorch_model.bin")
    cases["other architecture"] = (other, ["is not the BigGAN-deep", "missing", "not BigGAN-deep's"])
    missing = _copy(tiny, tmp_path / "missing")
    state = torch.load(missing / "pytorch_model.bin", weights_only=True)
    del state["generator.bn.weight"]
    torch.save(state, missing / "pytorch_model.bin")
    cases["missing key"] = (missing, ["1 of its", "generator.bn.weight"])
    mismatched = _copy(tiny, tmp_path / "mismatched")
    cfg = json.loads((mismatched / "config.json").read_text())
    cfg["channel_width"] = 8
    (mismatched / "config.json").write_text(json.dumps(cfg))
    cases["config of another model"] = (mismatched, ["does not match", "shape"])
    bert = _copy(tiny, tmp_path / "bert")
    (bert / "config.json").write_text(json.dumps({"vocab_size": 30522, "hidden_size": 768, "num_attention_heads": 12}))
    cases["other config"] = (bert, ["not a BigGAN-deep config", "vocab_size"])
    broken = _copy(tiny, tmp_path / "broken_json")
    (broken / "config.json").write_text("{ not json")
    cases["bad json"] = (broken, ["not valid JSON"])
    bad_layers = _copy(tiny, tmp_path / "bad_layers")
    cfg = json.loads((bad_layers / "config.json").read_text())
    cfg["output_dim"] = 64
    (bad_layers / "config.json").write_text(json.dumps(cfg))
    cases["inconsistent config"] = (bad_layers, ["output_dim", "32 px"])
    empty = tmp_path / "empty"
    empty.mkdir()
    cases["empty folder"] = (empty, ["no config.json", "pytorch_model.bin"])
    cases["no such path"] = (tmp_path / "nowhere", ["does not exist"])
    for name, (path, words) in cases.items():
        with pytest.raises(plugin.PromptgenError) as info:
            build(f"biggan:path={path}")
        text = str(info.value)
        assert "\n" not in text and "Traceback" not in text, (name, text)
        for w in words:
            assert w in text, (name, text)
    assert not (tmp_path / "PWNED").exists()


def test_size_option(tiny):
    gen = build(f"biggan:path={tiny},size=16")
    assert gen.info.resolution == (16, 16) and gen.decode(torch.randn(2, 32)).shape == (2, 3, 16, 16)


def test_the_conformance_kit(tiny):
    check_generator(get_registry(), f"biggan:path={tiny}")
    check_generator(get_registry(), f"biggan:path={tiny},class=golden retriever,truncation=0.7")


def test_the_zoo_names_the_official_files():
    from promptgen_plugin_biggan.zoo import MODELS
    from pytorch_pretrained_biggan.model import PRETRAINED_CONFIG_ARCHIVE_MAP, PRETRAINED_MODEL_ARCHIVE_MAP

    assert set(MODELS) == set(PRETRAINED_MODEL_ARCHIVE_MAP)
    for name, m in MODELS.items():
        assert m.weights.url == PRETRAINED_MODEL_ARCHIVE_MAP[name]
        assert m.config.url == PRETRAINED_CONFIG_ARCHIVE_MAP[name]
        assert "Apache-2.0" in m.licence and m.resolution == int(name.rsplit("-", 1)[1])


def test_names_that_differ_only_in_case_are_told_apart():
    from promptgen_plugin_biggan.classes import class_index

    spec = plugin.parse_spec("biggan-deep-128")
    assert class_index(spec, "Cardigan", 1000) == 264  # the corgi
    assert class_index(spec, "cardigan", 1000) == 474  # the sweater
    with pytest.raises(plugin.SpecError, match=r"names 2 ImageNet classes: 'Cardigan' \(264\) or 'cardigan' \(474\)"):
        class_index(spec, "CARDIGAN", 1000)
