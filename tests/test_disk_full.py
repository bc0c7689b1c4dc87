"""Issue 25: a full disk is reported as the file being written, never as standard output, and loses nothing.

Each command runs as the real ``promptgen`` command on a small tmpfs filled to the last byte, mounted in a
private mount namespace (``unshare -rm``: no root needed where user namespaces are allowed). The driver
below runs inside that namespace, because the mount is gone when it ends, and prints one JSON object: each
case's exit code, standard error, and whether any file already on the disk changed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from adversarial import build_pristine

from promptgen.testing.tally import record

PROMPTGEN = shutil.which("promptgen") or str(Path(sys.executable).parent / "promptgen")
UNSHARE = shutil.which("unshare")

DRIVER = r'''
import hashlib, json, os, shutil, subprocess, sys
from pathlib import Path

cfg = json.loads(sys.argv[1])
mnt, pristine, promptgen = Path(cfg["mnt"]), Path(cfg["pristine"]), cfg["promptgen"]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
for name in ("p", "r"):
    shutil.copytree(pristine / name, mnt / name)
(mnt / "old.png").write_bytes(b"an image the user had")
(mnt / "imgs").mkdir()


def fill():
    with open(mnt / "filler", "ab", buffering=0) as f:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass


def snapshot():
    out = {}
    for dirpath, _, names in os.walk(mnt):
        for name in names:
            p = Path(dirpath) / name
            if p.name != "filler":
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


small = ["--steps", "1", "--batch-size", "4", "--eval-batch", "4", "--check-samples", "0", "-q"]
cases = {
    "sample -o PNG": ["sample", f"{mnt}/p", "-n", "16", "-o", f"{mnt}/grid.png", "-q"],
    "sample -o NPZ": ["sample", f"{mnt}/p", "-n", "16", "-o", f"{mnt}/grid.npz", "-q"],
    "sample -o a folder": ["sample", f"{mnt}/p", "-n", "4", "-o", f"{mnt}/imgs", "-q"],
    "sample over an old file": ["sample", "--gen", "mnist", "-n", "16", "-o", f"{mnt}/old.png", "-q"],
    "sample --cost-json": ["sample", f"{mnt}/p", "-n", "2", "-o", "/dev/null.png", "--cost-json", f"{mnt}/cost.json", "-q"],
    "compose --overwrite": ["compose", "--energy", "classifier:digit=3", "--out", f"{mnt}/p", "--overwrite", "--seed", "5", *small],
    "compose a new folder": ["compose", "--energy", "classifier:digit=3", "--out", f"{mnt}/new", *small],
    "compose --resume": ["compose", "--resume", f"{mnt}/r", "-q"],
    "eval -o": ["eval", f"{mnt}/p", "-n", "4", "-o", f"{mnt}/eval.json", "-q"],
    "report -o": ["report", f"{mnt}/p", "-n", "4", "-o", f"{mnt}/report.html", "-q"],
}
results = {}
for name, args in cases.items():
    fill()
    before = snapshot()
    proc = subprocess.run([promptgen, *args], capture_output=True, text=True, timeout=300)
    results[name] = {"code": proc.returncode, "stderr": proc.stderr, "changed": sorted(
        k for k, v in before.items() if snapshot().get(k) != v)}
print(json.dumps(results))
'''


def mount_reason(tmp_path: Path) -> str | None:
    """Why this machine cannot mount a small tmpfs for the test, or None."""
    if UNSHARE is None:
        return "no `unshare` command to make a private mount namespace"
    probe = tmp_path / "probe"
    probe.mkdir()
    proc = subprocess.run([UNSHARE, "-rm", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                          check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        return f"this machine lets no test mount a tmpfs (`unshare -rm mount -t tmpfs` said: {proc.stderr.strip()[:120]})"
    return None


def test_a_full_disk_names_the_file_being_written_and_changes_nothing(tmp_path):
    reason = mount_reason(tmp_path)
    if reason is not None:
        pytest.skip(reason)
    pristine = build_pristine(tmp_path / "pristine")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    cfg = {"mnt": str(mnt), "pristine": str(pristine), "promptgen": PROMPTGEN}
    proc = subprocess.run([UNSHARE, "-rm", sys.executable, str(driver), json.dumps(cfg)], check=False, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == 10
    for name, r in results.items():
        lines = r["stderr"].strip().splitlines()
        problems = [*(["traceback"] if "Traceback" in r["stderr"] else []), *([f"changed files: {r['changed']}"] if r["changed"] else []),
                    *([] if r["code"] == 2 and len(lines) == 1 and "No space left" in r["stderr"] else [f"not one line: {r['stderr'][:200]}"])]
        record("full disk", name, problems)
        assert r["code"] == 2, (name, r)
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, r["stderr"])
        assert "standard output" not in lines[0], (name, lines[0])
        assert "No space left on device" in lines[0] and str(mnt) in lines[0], (name, lines[0])
        assert r["changed"] == [], (name, r["changed"])
