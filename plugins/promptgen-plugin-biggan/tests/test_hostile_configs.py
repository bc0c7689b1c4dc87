"""Issue 25: a config.json that describes another network than its weights (a huge one, above all) is refused
in one line within 5 s and 1 GB, before anything is allocated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.testing.budget import budget_problems, refusals
from promptgen.testing.tally import record

#: (config.json changes, words of the one-line refusal)
HOSTILE = {
    "z_dim 1e9": ({"z_dim": 10**9}, "does not match"),
    "channel width 1e6": ({"channel_width": 10**6}, "does not match"),
    "1e12 classes": ({"num_classes": 10**12}, "does not match"),
    "attention at 1e9": ({"attention_layer_position": 10**9}, "not BigGAN-deep's"),
    "n_stats 1e9": ({"n_stats": 10**9}, "does not match"),
    "10,000 layers": ({"layers": [[False, 16, 16]] * 9_999 + [[False, 16, 1]]}, "layers"),
    "twice the width": ({"channel_width": 8}, "does not match"),
    "z_dim -1": ({"z_dim": -1}, "z_dim"),
    "z_dim a string": ({"z_dim": "many"}, "z_dim"),
    "z_dim 2.5": ({"z_dim": 2.5}, "z_dim"),
    "output 1e9 px": ({"output_dim": 10**9}, "output_dim"),
    "layers a number": ({"layers": 7}, "layers"),
}


@pytest.fixture(scope="module")
def hostile(tiny, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    out = {}
    base = json.loads((tiny / "config.json").read_text())
    for i, (name, (changes, _)) in enumerate(HOSTILE.items()):
        folder = root / f"case{i}"
        shutil.copytree(tiny, folder)
        (folder / "config.json").write_text(json.dumps({**base, **changes}))
        out[name] = folder
    return out


def test_every_hostile_config_is_refused_in_one_line_within_5_s_and_1_gb(tiny, hostile):
    got = refusals(
        "from promptgen_plugin_biggan.checkpoints import load_biggan\nfrom pathlib import Path",
        "load_biggan(Path({path}) / 'config.json', Path({path}) / 'pytorch_model.bin')",
        {**hostile, "control": tiny},
    )
    assert got["control"]["error"] is None  # the untampered files load
    for name, (_, words) in HOSTILE.items():
        r = got[name]
        record("model configurations from files", f"biggan: {name}", budget_problems(r, words))
        assert r["error"] is not None and "PromptgenError" in r["kinds"], (name, r)
        assert len(r["error"].splitlines()) == 1 and words in r["error"], (name, r["error"])
        assert r["seconds"] < 5, (name, r["seconds"])
    assert max(r["grown_bytes"] for r in got.values()) < 2**30, got


@pytest.mark.parametrize("name", ["z_dim 1e9", "10,000 layers"])
def test_the_command_line_says_it_in_one_line(hostile, name, tmp_path):
    result = CliRunner().invoke(app, ["sample", "--gen", f"biggan:path={hostile[name]}", "-n", "1", "-o", str(tmp_path / "x.png")])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert not (tmp_path / "x.png").exists()
