"""Issue 25: one run per folder. A second compose on a folder another process is writing is refused in one
line and changes nothing; a killed run's lock does not block the next one."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptgen.cli import app
from promptgen.core.errors import ArtifactError
from promptgen.core.lock import LOCK, run_lock
from promptgen.testing.tally import record

sys.path.insert(0, str(Path(__file__).parent))
from adversarial import build_pristine, snapshot

runner = CliRunner()

HOLD = """
import sys, time
from pathlib import Path
from promptgen.core.lock import run_lock
with run_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_the_lock_is_exclusive_and_leaves_no_file(tmp_path):
    with run_lock(tmp_path):
        assert (tmp_path / LOCK).is_file()
        with pytest.raises(ArtifactError, match="another promptgen compose is running in .* \\(process [0-9]+\\)"), run_lock(tmp_path):
            pass
    assert not (tmp_path / LOCK).exists()
    with run_lock(tmp_path):  # free again
        pass


@pytest.fixture
def work(tmp_path) -> Path:
    return build_pristine(tmp_path / "ws")


def test_a_second_compose_on_a_running_folder_is_refused_and_a_killed_one_does_not_block(work):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(work / "r")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        before = snapshot(work)
        for args in (["compose", "--resume", str(work / "r"), "-q"],
                     ["compose", "--energy", "classifier:digit=3", "--steps", "1", "--batch-size", "4", "--eval-batch", "4",
                      "--out", str(work / "p"), "--overwrite", "-q"]):
            if args[1] == "--energy":  # the prompt p, locked by a run of its own
                other = subprocess.Popen([sys.executable, "-c", HOLD, str(work / "p")], stdout=subprocess.PIPE, text=True)
                assert other.stdout is not None and other.stdout.readline().strip() == "locked"
                before = snapshot(work)
            result = runner.invoke(app, args)
            lines = result.stderr.strip().splitlines()
            ok = result.exit_code == 2 and len(lines) == 1 and snapshot(work) == before
            record("concurrent runs", " ".join(args[:2]), [] if ok else [f"not refused in one line: {result.stderr[:200]}"])
            assert result.exit_code == 2 and len(lines) == 1 and "another promptgen compose is running" in lines[0], result.stderr
            assert snapshot(work) == before
        other.kill()
        other.wait()
    finally:
        holder.send_signal(signal.SIGKILL)  # as kill -9: the lock file stays, the lock does not
        holder.wait()
    assert (work / "r" / LOCK).exists()
    result = runner.invoke(app, ["compose", "--resume", str(work / "r"), "-q"])
    assert result.exit_code == 0, result.stderr
    assert (work / "r" / "manifest.json").is_file() and not (work / "r" / LOCK).exists()
