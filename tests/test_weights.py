"""plugin.load_torch_file: weights only, one-line refusals that name what a file asks to run, nothing runs."""

from __future__ import annotations

import argparse
import os
import pickle
import warnings

import pytest
import torch

from promptgen.plugin import WeightsFileError, load_torch_file


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_weights_and_allowed_classes_load(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.ones(2), "args": argparse.Namespace(a=1)}, path)
    loaded = load_torch_file(path, what="a test file", allow=[argparse.Namespace], mmap=True)
    assert torch.equal(loaded["w"], torch.ones(2)) and loaded["args"].a == 1
    with pytest.raises(WeightsFileError, match="asks to run argparse.Namespace"):
        load_torch_file(path, what="a test file")  # not allowed unless asked for


@pytest.mark.parametrize("zipped", [True, False])
def test_a_pickle_that_would_run_code_is_refused_by_name_and_nothing_runs(tmp_path, zipped):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    if zipped:
        torch.save({"x": Payload(str(marker))}, path)
    else:
        with open(path, "wb") as f:
            pickle.dump({"x": Payload(str(marker))}, f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's own warnings must not reach the user either
        with pytest.raises(WeightsFileError) as info:
            load_torch_file(path, what="a test file")
    text = str(info.value)
    assert "\n" not in text and "asks to run posix.mkdir" in text and "refused, and nothing ran" in text
    assert "weights_only" not in text and "add_safe_globals" not in text  # no advice to turn the check off
    assert not marker.exists()


def test_missing_empty_and_truncated_files_are_one_line(tmp_path):
    with pytest.raises(WeightsFileError, match="is not a file; give a test file"):
        load_torch_file(tmp_path / "nope.pt", what="a test file")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(WeightsFileError, match="is empty"):
        load_torch_file(tmp_path / "empty.pt", what="a test file")
    whole = tmp_path / "whole.pt"
    torch.save({"w": torch.randn(1000)}, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:1500])
    with pytest.raises(WeightsFileError, match="damaged or truncated") as info:
        load_torch_file(cut, what="a test file", mmap=True)
    assert "\n" not in str(info.value)
