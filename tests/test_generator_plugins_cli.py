"""Issue 16's commands through the real CLI, on the zoo names, with random-weight models in the official formats.

    promptgen compose --gen biggan-deep-128 --energy classifier:gender=female
    promptgen compose --gen nvae-ffhq-256 --energy debias:gender

The zoo files are put in the cache (``$PROMPTGEN_HOME``) as a download would
leave them, but small: a tiny BigGAN-deep (``config.json`` +
``pytorch_model.bin``) and a tiny NVAE (``checkpoint.pt`` as NVAE's train.py
writes it). The ``gender`` attribute comes from a tiny classifier installed as
a third-party plugin (FairFace's ResNet-34 would make de-biasing's fit of 2,048
base images too slow for the tests).
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from promptgen_plugin_biggan.testing import write_model
from promptgen_plugin_biggan.zoo import MODELS as BIGGAN
from promptgen_plugin_nvae.testing import random_decoder, write_checkpoint
from promptgen_plugin_nvae.zoo import MODELS as NVAE
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.core.registry import reset_registry
from promptgen.testing import TOY_GENDER_PLUGIN, install_fake_distribution

runner = CliRunner()



@pytest.fixture
def zoo(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("PROMPTGEN_HOME", str(home))
    monkeypatch.setenv("PROMPTGEN_OFFLINE", "1")  # the cache must serve everything
    big = BIGGAN["biggan-deep-128"]
    folder = write_model(tmp_path / "biggan-files")
    (home / "biggan").mkdir(parents=True)
    (folder / "config.json").rename(home / "biggan" / big.config_filename)
    (folder / "pytorch_model.bin").rename(home / "biggan" / big.weights_filename)
    # The FFHQ command's distinctive flags, at a tiny size: groups that shrink with the scale, 5-bit output.
    decoder, args = random_decoder(ada_groups=True, num_groups_per_scale=4, min_groups_per_scale=2, num_x_bits=5)
    (home / "nvae").mkdir()
    write_checkpoint(decoder, args, home / "nvae" / NVAE["nvae-ffhq-256"].filename)
    # "a-" sorts before "fairface": the toy is the first classifier that provides gender.
    (tmp_path / "site").mkdir()
    install_fake_distribution(tmp_path / "site", "promptgen-plugin-toy-faces", "0.2.0", "toy_faces", TOY_GENDER_PLUGIN, "a-toy-faces")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    reset_registry()
    yield tmp_path
    reset_registry()


@pytest.mark.parametrize(
    ("gen", "energy"),
    [("biggan-deep-128", "classifier:gender=Female"), ("nvae-ffhq-256", "debias:gender")],
)
def test_the_issues_commands_run_and_sampling_repeats(zoo, gen, energy):
    out = zoo / "prompt"
    result = runner.invoke(app, ["compose", "--gen", gen, "--energy", energy, "--steps", "2", "--batch-size", "4",
                                 "--eval-batch", "4", "--transforms", "2", "--hidden", "8", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    files = []
    for i in range(2):
        target = zoo / f"s{i}.npz"
        result = runner.invoke(app, ["sample", str(out), "-n", "4", "--seed", "3", "-o", str(target)])
        assert result.exit_code == 0, result.output
        files.append(np.load(target)["images"])
    assert np.array_equal(files[0], files[1]) and files[0].shape[0] == 4
    other = zoo / "s2.npz"
    assert runner.invoke(app, ["sample", str(out), "-n", "4", "--seed", "4", "-o", str(other)]).exit_code == 0
    assert not np.array_equal(np.load(other)["images"], files[0])
