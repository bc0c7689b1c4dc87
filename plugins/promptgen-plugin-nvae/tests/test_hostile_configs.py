"""Issue 25: an NVAE checkpoint whose stored training arguments ask for more than its weights hold (200,000
groups a scale, a million channels) is refused in one line within 5 s and 1 GB, before anything is built."""

from __future__ import annotations

from pathlib import Path

import pytest
from promptgen_plugin_nvae.testing import random_decoder, write_checkpoint
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.testing.budget import budget_problems, refusals
from promptgen.testing.tally import record

#: (training-argument changes, words of the one-line refusal)
HOSTILE = {
    "200,000 groups a scale": ({"num_groups_per_scale": 200_000}, "outside 1..64"),
    "100 scales": ({"num_latent_scales": 100}, "outside 1..8"),
    "a million decoder channels": ({"num_channels_dec": 10**6}, "outside 1..4096"),
    "4,000 decoder channels": ({"num_channels_dec": 4000}, "has shape"),
    "twice the latents": ({"num_latent_per_group": 40}, "has shape"),
    "100,000 post-process cells": ({"num_postprocess_cells": 100_000}, "outside 1..16"),
    "a million mixtures": ({"num_mixture_dec": 10**6}, "outside 1..64"),
    "-3 bits": ({"num_x_bits": -3}, "outside 1..16"),
    "groups a string": ({"num_groups_per_scale": "many"}, "is not a whole number"),
    "use_se a number": ({"use_se": 7}, "is not true or false"),
    "a million cells per condition": ({"num_cell_per_cond_dec": 10**6}, "outside 1..16"),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    net, args = random_decoder(seed=0)
    out = {"control": write_checkpoint(net, args, root / "control.pt")}
    for i, (name, (changes, _)) in enumerate(HOSTILE.items()):
        out[name] = write_checkpoint(net, {**args, **changes}, root / f"case{i}.pt")
    return out


def test_every_hostile_checkpoint_is_refused_in_one_line_within_5_s_and_1_gb(files):
    got = refusals("from promptgen_plugin_nvae.checkpoints import load_decoder", "load_decoder({path})", files)
    assert got["control"]["error"] is None
    for name, (_, words) in HOSTILE.items():
        r = got[name]
        record("model configurations from files", f"nvae: {name}", budget_problems(r, words))
        assert r["error"] is not None and "PromptgenError" in r["kinds"], (name, r)
        assert len(r["error"].splitlines()) == 1 and words in r["error"], (name, r["error"])
        assert r["seconds"] < 5, (name, r["seconds"])
    assert max(r["grown_bytes"] for r in got.values()) < 2**30, got


@pytest.mark.parametrize("name", ["200,000 groups a scale", "4,000 decoder channels"])
def test_the_command_line_says_it_in_one_line(files, name, tmp_path):
    result = CliRunner().invoke(app, ["sample", "--gen", f"nvae:path={files[name]}", "-n", "1", "-o", str(tmp_path / "x.png")])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert not (tmp_path / "x.png").exists()
