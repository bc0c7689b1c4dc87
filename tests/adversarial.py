"""The adversarial catalog (issue 14): bad input that must get one line and exit code 2, and change nothing.

Each :class:`Case` is a command line run in a fresh *workspace* (see
:func:`make_workspace`): a folder holding a small trained prompt ``p``, an
unfinished run ``r`` (``run.json`` and ``checkpoint.pt``, for ``--resume``),
good and bad data files, special files (a FIFO, a device where the tests run
as root, links to ``/dev/null``, to ``/proc/self/fd/1`` and to nowhere), and
hostile pickles. A case may damage the workspace first (``setup``).

What every case must show (:func:`check`):

- exit code 2;
- exactly one line on stderr, starting ``error:``; no traceback anywhere;
- every entry of the workspace as it was after ``setup`` (type, mode, bytes, link target);
- no marker file from a payload (a pickle or a module that would write it if run).

``tests/test_adversarial.py`` runs the catalog in-process for CI;
``scripts/adversarial_report.py`` runs it through the real ``promptgen``
command and prints the counts as JSON.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import stat
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

#: Where a payload would leave its mark if it ran.
MARKER = "PAYLOAD_RAN"

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass
class Case:
    """One bad command line: ``args`` (``{ws}`` is the workspace), extra environment, a damage to apply first."""

    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    words: tuple[str, ...] = ()
    klass: str = ""  # the class of mistake it belongs to (set by all_cases when not given)

    def argv(self, ws: Path) -> list[str]:
        return [a.replace("{ws}", str(ws)) for a in self.args]


# --- the workspace ----------------------------------------------------------------------------------------


def build_pristine(root: Path) -> Path:
    """A trained prompt ``p`` and an unfinished run ``r`` under ``root`` (made once per test session)."""
    from promptgen.composing import compose
    from promptgen.training.trainer import TrainConfig

    config = TrainConfig(steps=2, eval_every=1, eval_batch=8, batch_size=8, fit_samples=16, checkpoint_every=1)
    flow = {"transforms": 2, "hidden": 8}
    compose("mnist", ["classifier:digit=3"], root / "p", train=config, flow=flow, preview=0, progress=False)
    compose("mnist", ["classifier:digit=3"], root / "r", train=config, flow=flow, preview=0, progress=False)
    for name in ("manifest.json", "flow.safetensors"):  # what a run killed before its end has not written
        (root / "r" / name).unlink()
    return root


class Evil:
    """A pickle that writes the marker when unpickled by anything that runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def make_workspace(pristine: Path, ws: Path) -> Path:
    """A fresh workspace in ``ws`` (see the module's notes)."""
    ws.mkdir(parents=True, exist_ok=True)
    shutil.copytree(pristine / "p", ws / "p", symlinks=True)
    shutil.copytree(pristine / "r", ws / "r", symlinks=True)
    (ws / "file.txt").write_text("a file the user had\n")
    (ws / "priv.png").write_bytes(b"private")
    os.chmod(ws / "priv.png", 0o600)
    (ws / "dir").mkdir()
    (ws / "dir.png").mkdir()
    (ws / "dir.json").mkdir()
    (ws / "dir.html").mkdir()
    (ws / "notprompt").mkdir()
    (ws / "notprompt" / "keep.txt").write_text("keep")
    for name in ("fifo", "fifo.png", "fifo.npz", "fifo.json", "fifo.html"):
        os.mkfifo(ws / name)
    if ROOT:  # a character device like /dev/full, made where only root can
        for name in ("dev.png", "dev.json", "dev.html"):
            os.mknod(ws / name, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    for name, target in (("null.png", "/dev/null"), ("stdout.png", "/proc/self/fd/1"), ("nowhere.png", "nowhere/x"),
                         ("null.json", "/dev/null"), ("stdout.json", "/proc/self/fd/1"), ("null.html", "/dev/null")):
        os.symlink(target, ws / name)
    # --data files
    good = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    buf = io.BytesIO()
    np.savez(buf, images=good)
    whole = buf.getvalue()
    (ws / "half.npz").write_bytes(whole[: len(whole) // 2])
    (ws / "notzip.npz").write_bytes(b"not a zip file at all")
    _npz(ws / "nokey.npz", other=good)
    _npz(ws / "shape.npz", images=good[:, 0])
    _npz(ws / "ints.npz", images=(good * 255).astype(np.uint8))
    _npz(ws / "big.npz", images=good * 300)
    _npz(ws / "nan.npz", images=np.full_like(good, np.nan))
    _npz(ws / "one.npz", images=good[:1])
    _npz(ws / "pickled.npz", images=np.array([Evil(ws / MARKER)], dtype=object))
    (ws / "emptydir").mkdir()
    (ws / "truncgz").mkdir()
    (ws / "truncgz" / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 20)
    (ws / "truncgz" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 20)
    # hostile network pickles
    (ws / "tib.pkl").write_bytes(b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b".")
    (ws / "evil.pkl").write_bytes(pickle.dumps(Evil(ws / MARKER)))
    (ws / "empty.pkl").write_bytes(b"")
    (ws / "garbage.pkl").write_bytes(os.urandom(256))
    # modules that would run if the current folder were on the import path
    for mod in ("rich", "torch", "typer", "pydantic", "numpy", "promptgen", "zuko"):
        (ws / f"{mod}.py").write_text(f"open({str(ws / MARKER)!r}, 'w').write('{mod}')\n")
    return ws


def _npz(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def snapshot(ws: Path) -> dict[str, tuple]:
    """Every entry under ``ws``: kind, permission bits and content hash or link target."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(ws):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[str(p)] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[str(p)] = ("file", mode, hashlib.sha256(p.read_bytes()).hexdigest())
            elif stat.S_ISDIR(st.st_mode):
                out[str(p)] = ("dir", mode)
            else:
                out[str(p)] = ("special", stat.S_IFMT(st.st_mode), mode, getattr(st, "st_rdev", 0))
    return out


#: (case name, problems) of every case run in this process, for :func:`summary`.
RESULTS: list[tuple[str, list[str]]] = []


def summary(results: list[tuple[str, list[str]]]) -> dict[str, object]:
    """The counts the issue asks each run to report."""
    def count(word: str) -> int:
        return sum(any(word in p for p in problems) for _, problems in results)

    clean = sum(not problems for _, problems in results)
    return {
        "cases": len(results),
        "tracebacks": count("traceback"),
        "damaged_files": count("changed files"),
        "code_executions": count("a payload ran"),
        "one_line_exit_2": clean,
        "one_line_exit_2_share": round(clean / len(results), 4) if results else None,
        "failing": [name for name, problems in results if problems][:20],
    }


def check(case: Case, ws: Path, code: int, stdout: str, stderr: str, before: dict, after: dict) -> list[str]:
    """What is wrong with how ``case`` ended (empty when it ended as promised)."""
    problems = []
    if "Traceback" in stdout + stderr:
        problems.append("traceback")
    if code != 2:
        problems.append(f"exit code {code}")
    lines = [line for line in stderr.splitlines() if line.strip()]
    if len(lines) != 1 or not lines[0].startswith("error:"):
        problems.append(f"stderr is not one error line: {stderr[:300]!r}")
    for w in case.words:
        if w not in stderr:
            problems.append(f"{w!r} not in {stderr[:200]!r}")
    if before != after:
        changed = sorted(set(before.items()) ^ set(after.items()))
        problems.append(f"changed files: {[c[0] for c in changed][:5]}")
    if (ws / MARKER).exists():
        problems.append("a payload ran")
    return problems


# --- checkpoint and run.json damage -------------------------------------------------------------------------


def edit_checkpoint(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(ws: Path) -> None:
        path = ws / "r" / "checkpoint.pt"
        state = torch.load(path, weights_only=True)
        change(state)
        torch.save(state, path)

    return apply


def edit_json(rel: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    """A damage that loads the workspace's JSON file ``rel``, changes it and writes it back."""
    def apply(ws: Path) -> None:
        path = ws / rel
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    return apply


def edit_run(change: Callable[[dict], object]) -> Callable[[Path], None]:
    return edit_json("r/run.json", change)


def write(rel: str, data: bytes) -> Callable[[Path], None]:
    def apply(ws: Path) -> None:
        path = ws / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        path.write_bytes(data)

    return apply


def replace_with(rel: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    def apply(ws: Path) -> None:
        path = ws / rel
        path.unlink()
        make(path)

    return apply


def _set(d: dict, keys: tuple, value: object) -> None:
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


def setting(*keys_and_value) -> Callable[[dict], None]:
    *keys, value = keys_and_value
    return lambda d: _set(d, tuple(keys), value)


def popping(*keys) -> Callable[[dict], None]:
    def apply(d: dict) -> None:
        for k in keys[:-1]:
            d = d[k]
        d.pop(keys[-1])

    return apply


def _first_param_state(d: dict) -> dict:
    return next(iter(d["optimizer"]["state"].values()))


CHECKPOINT_DAMAGE: dict[str, Callable[[dict], object]] = {
    **{f"no {k}": popping(k) for k in (
        "flow", "optimizer", "step", "scheduler", "generator", "torch_rng", "energies", "fits", "history",
        "adaptations", "eval_eps", "skipped", "rollbacks", "resumed_at", "seconds", "checkpoint_seconds")},
    "generator state of 10 bytes": setting("generator", torch.zeros(10, dtype=torch.uint8)),
    "torch_rng of 10 bytes": setting("torch_rng", torch.zeros(10, dtype=torch.uint8)),
    "generator state as floats": setting("generator", torch.zeros(5056)),
    "empty param_groups": setting("optimizer", "param_groups", []),
    "lr as a string": lambda d: d["optimizer"]["param_groups"][0].__setitem__("lr", "0.001"),
    "lr NaN": lambda d: d["optimizer"]["param_groups"][0].__setitem__("lr", float("nan")),
    "lr negative": lambda d: d["optimizer"]["param_groups"][0].__setitem__("lr", -1.0),
    "lr huge": lambda d: d["optimizer"]["param_groups"][0].__setitem__("lr", 1e30),
    "params renumbered": lambda d: d["optimizer"]["param_groups"][0].__setitem__("params", [99, 100]),
    "betas as a string": lambda d: d["optimizer"]["param_groups"][0].__setitem__("betas", "0.9"),
    "moment of another shape": lambda d: _first_param_state(d).__setitem__("exp_avg", torch.zeros(3)),
    "moment NaN": lambda d: _first_param_state(d).__setitem__("exp_avg_sq", torch.full_like(_first_param_state(d)["exp_avg_sq"], float("nan"))),
    "optimizer state of strings": lambda d: d["optimizer"]["state"].__setitem__(0, {"step": "x", "exp_avg": "y", "exp_avg_sq": "z"}),
    "scheduler of strings": lambda d: d.__setitem__("scheduler", {k: "x" for k in d["scheduler"]}),
    "scheduler missing a key": lambda d: d["scheduler"].pop(next(iter(d["scheduler"]))),
    "scheduler base_lrs empty": setting("scheduler", "base_lrs", []),
    "eval_eps of another shape": setting("eval_eps", torch.zeros(3, 5)),
    "eval_eps as integers": lambda d: d.__setitem__("eval_eps", d["eval_eps"].long()),
    "eval_eps NaN": lambda d: d.__setitem__("eval_eps", torch.full_like(d["eval_eps"], float("nan"))),
    "state for an energy that keeps none": setting("energies", {"classifier:digit=3": {"beta": [1.0, 2.0]}}),
    "state for an energy the run lacks": setting("energies", {"debias:digit": {"beta": [1.0]}}),
    "energies as a list": setting("energies", [1, 2]),
    "bank of mismatched lengths": setting("bank", {"latents": torch.zeros(5, 32), "log_weights": torch.zeros(4)}),
    "bank of another latent shape": setting("bank", {"latents": torch.zeros(5, 7), "log_weights": torch.zeros(5)}),
    "bank latents NaN": setting("bank", {"latents": torch.full((5, 32), float("nan")), "log_weights": torch.zeros(5)}),
    "step beyond the run": setting("step", 10**6),
    "step negative": setting("step", -1),
    "step as a string": setting("step", "2"),
    "step as a float": setting("step", 2.0),
    "skipped negative": setting("skipped", -3),
    "flow tensor of another shape": lambda d: d["flow"].__setitem__(next(iter(d["flow"])), torch.zeros(3)),
    "flow tensor NaN": lambda d: d["flow"][next(k for k, v in d["flow"].items() if v.is_floating_point())].fill_(float("nan")),
    "flow tensor missing": lambda d: d["flow"].pop(next(iter(d["flow"]))),
    "other training settings": setting("config", "steps", 999),
    "newer checkpoint format": setting("version", 99),
    "history of strings": setting("history", ["x"]),
    "seconds infinite": setting("seconds", float("inf")),
}

RUN_DAMAGE: dict[str, Callable[[dict], object]] = {
    "flow with an unknown key": setting("flow", {"evil": 1}),
    "flow of a bogus kind": setting("flow", {"kind": "bogus"}),
    "flow of a huge width": setting("flow", {"hidden": 10**9}),
    "flow with 0 layers": setting("flow", {"transforms": 0}),
    "flow not a dict": setting("flow", [1, 2]),
    "device meta": setting("device", "meta"),
    "device bogus": setting("device", "tpu:0; rm -rf ~"),
    "device cuda:99999": setting("device", "cuda:99999"),
    "preview -5": setting("preview", -5),
    "preview 10^9": setting("preview", 10**9),
    "no energies": setting("energies", []),
    "unknown energy": setting("energies", ["nosuch"]),
    "energy of bad syntax": setting("energies", ["classifier:digit=3@@"]),
    "empty generator": setting("generator", ""),
    "unknown generator": setting("generator", "nosuch"),
    "lr Infinity": setting("train", "lr", float("inf")),
    "seed of 30 digits": setting("train", "seed", 10**30),
    "batch of 10^12": setting("train", "batch_size", 10**12),
    "unknown training key": setting("train", "evil", 1),
    "unknown top key": setting("evil", 1),
    "missing generator": popping("generator"),
}


def _resume(name: str, setup: Callable[[Path], None], words: tuple[str, ...] = ()) -> Case:
    return Case(f"resume: {name}", ["compose", "--resume", "{ws}/r", "-q"], setup=setup, words=words)


def resume_cases() -> list[Case]:
    cases = [_resume(f"checkpoint {k}", edit_checkpoint(v)) for k, v in CHECKPOINT_DAMAGE.items()]
    cases += [_resume(f"run.json {k}", edit_run(v)) for k, v in RUN_DAMAGE.items()]
    cases += [
        _resume("checkpoint is a folder", lambda ws: ((ws / "r/checkpoint.pt").unlink(), (ws / "r/checkpoint.pt").mkdir())),
        _resume("checkpoint is a FIFO", replace_with("r/checkpoint.pt", os.mkfifo)),
        _resume("checkpoint links outside", lambda ws: ((ws / "r/checkpoint.pt").rename(ws / "outside.pt"),
                                                         os.symlink(ws / "outside.pt", ws / "r/checkpoint.pt"))),
        _resume("checkpoint empty", write("r/checkpoint.pt", b"")),
        _resume("checkpoint garbage", write("r/checkpoint.pt", os.urandom(512))),
        _resume("checkpoint truncated", lambda ws: (ws / "r/checkpoint.pt").write_bytes((ws / "r/checkpoint.pt").read_bytes()[:300])),
        _resume("checkpoint runs code", lambda ws: (ws / "r/checkpoint.pt").write_bytes(pickle.dumps(Evil(ws / MARKER)))),
        _resume("checkpoint claims 1 TiB", write("r/checkpoint.pt", b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b".")),
        _resume("checkpoint a list", lambda ws: torch.save([1, 2], ws / "r/checkpoint.pt")),
        _resume("run.json is not JSON", write("r/run.json", b"{not json")),
        _resume("run.json truncated", lambda ws: (ws / "r/run.json").write_bytes((ws / "r/run.json").read_bytes()[:40])),
        _resume("run.json a list", write("r/run.json", b"[1, 2]")),
        _resume("run.json of 2 MB", write("r/run.json", b" " * (2 << 20) + b"{}")),
        _resume("run.json nested deeply", write("r/run.json", b"[" * 100_000 + b"]" * 100_000)),
        _resume("run.json binary", write("r/run.json", bytes(range(256)))),
        _resume("run.json missing", lambda ws: (ws / "r/run.json").unlink()),
        _resume("run.json is a folder", lambda ws: ((ws / "r/run.json").unlink(), (ws / "r/run.json").mkdir())),
        _resume("run.json is a FIFO", replace_with("r/run.json", os.mkfifo)),
        _resume("run.json links outside", lambda ws: ((ws / "r/run.json").rename(ws / "outside.json"),
                                                       os.symlink(ws / "outside.json", ws / "r/run.json"))),
        _resume("run.json with a 400-digit number", lambda ws: (ws / "r/run.json").write_text(
            (ws / "r/run.json").read_text().replace('"preview": 0', '"preview": ' + "9" * 400))),
    ]
    return cases


# --- command-line values --------------------------------------------------------------------------------------

INT_BAD = ["-1", "99999999999999999999999", "-99999999999999999999999", "1.5", "abc", "", "0x10", "nan"]
# Seeds may be negative: torch takes -2**63 to 2**64 - 1.
SEED_BAD = ["18446744073709551616", "-9223372036854775809", *INT_BAD[1:]]
FLOAT_BAD = ["nan", "inf", "-inf", "1e400", "-1", "abc", ""]
DEVICES_BAD = ["meta", "mps", "xpu", "bogus", "", "cuda:-1", "ipu", "hpu", "lazy", "vulkan", "cuda:99999"]

# Small settings first, so a case that is wrongly accepted ends in seconds (the bad value comes last and wins).
SMALL = ["--steps", "1", "--batch-size", "4", "--eval-batch", "4"]
COMPOSE = ["compose", "--energy", "classifier:digit=3", "--out", "{ws}/o", "-q", *SMALL]
COMPOSE_OPTIONS: dict[str, list[str]] = {
    "--steps": ["0", "10000001", *INT_BAD],
    "--batch-size": ["0", "65537", "1000000000000", *INT_BAD],
    "--accumulate": ["0", "1025", *INT_BAD],
    "--lr": ["0", "1e-400", "11", *FLOAT_BAD],
    "--clip-grad": FLOAT_BAD,
    "--warmup": ["1.5", "-0.1", *FLOAT_BAD],
    "--forward-weight": ["1e7", *FLOAT_BAD],
    "--seed": SEED_BAD,
    "--transforms": ["0", "65", *INT_BAD],
    "--hidden": ["0", "8193", "100000", *INT_BAD],
    "--eval-every": ["0", *INT_BAD],
    "--eval-batch": ["0", "65537", "1000000000000", *INT_BAD],
    "--checkpoint-every": ["0", *INT_BAD],
    "--nproc": ["0", "257", *INT_BAD],
    "--flow": ["bogus", "", "spline", "AFFINE-COUPLING"],
    "--device": DEVICES_BAD,
}

SAMPLE = ["sample", "--gen", "mnist", "-n", "2", "-o", "{ws}/ok.png", "-q"]
SAMPLE_PROMPT = ["sample", "{ws}/p", "-n", "2", "-o", "{ws}/ok.png", "-q"]
SAMPLE_OPTIONS: dict[str, list[str]] = {
    "-n": ["0", "10000001", *INT_BAD],
    "--seed": SEED_BAD,
    "--device": DEVICES_BAD,
    "--method": ["bogus", "", "FLOW"],
    "--accept": ["bogus", ""],
    "--max-draws": ["0", "1000000000001", *INT_BAD],
    "--steps": ["0", "10000001", *INT_BAD],
    "--step-size": ["0", *FLOAT_BAD],
}
EVAL = ["eval", "{ws}/p", "-n", "4", "-q"]
REPORT = ["report", "{ws}/p", "-n", "4", "-o", "{ws}/ok.html", "-q"]
EVAL_OPTIONS: dict[str, list[str]] = {
    "-n": ["1", "10000001", *INT_BAD],
    "--seed": SEED_BAD,
    "--batch-size": ["0", "65537", *INT_BAD],
    "--device": DEVICES_BAD,
}

OUT_TARGETS_PNG = ["fifo.png", "null.png", "stdout.png", "nowhere.png", "dir.png", "file.txt/x.png", "missing/x.png",
                   "x" * 300 + ".png", "x.jpg", "file.txt", "fifo.npz", "p/flow.safetensors/x.png"]
OUT_TARGETS_JSON = ["fifo.json", "null.json", "stdout.json", "dir.json", "file.txt/x.json", "missing/x.json",
                    "x" * 300 + ".json"]
OUT_TARGETS_HTML = ["fifo.html", "null.html", "dir.html", "file.txt/x.html", "missing/x.html", "x" * 300 + ".html", "x.png"]
if ROOT:
    OUT_TARGETS_PNG.append("dev.png")
    OUT_TARGETS_JSON.append("dev.json")
    OUT_TARGETS_HTML.append("dev.html")

PROMPTS_BAD = ["{ws}/nonexistent", "{ws}/file.txt", "{ws}/fifo", "{ws}/dir", "{ws}/notprompt", "{ws}/p/manifest.json",
               "{ws}/r", "", "{ws}/p\x00x"]

ENERGIES_BAD = [
    "", ":", "@", "nosuch", "classifier", "classifier:", "classifier:digit", "classifier:digit=", "classifier:digit=10",
    "classifier:digit=abc", "classifier:digit=3,digit!=3", "classifier:digit=3,digit=4", "classifier:nosuch=3",
    "classifier:digit=3@", "classifier:digit=3@-1", "classifier:digit=3@nan", "classifier:digit=3@inf",
    "classifier:digit=3@1e308", "classifier:digit=3@1e7", "classifier:digit=3@abc", "classifier:digit=3@1@2",
    "classifier:digit=3,model=nosuch", "classifier:digit=3,realism=-1", "classifier:digit=3,realism=nan",
    "classifier:digit='3", 'classifier:digit="3', "classifier:digit=3,,", "classifier:,digit=3",
    "classifier:digit==3", ",".join(f"classifier:digit!={d}" for d in range(10)).replace(",classifier:", ","),
    "classifier:digit=3\x00", "classifier:digit=3\x1b[2J", "a" * 10_000, "classifier:" + "x=1," * 2000,
    "debias", "debias:", "debias:nosuch", "debias:digit,mode=bogus", "debias:digit,mode=auto,refit=1",
    "debias:digit,digit", "debias:digit@-1", "ink:nosuch", "ink:thick=2", "clip:", "classifier:digit=3,realism=1e400",
    "classifier:thickness=3", "debias:digit*", "debias:*",
    *(f"classifier:gender=female,path={{ws}}/{name}" for name in (
        "file.txt", "garbage.pkl", "empty.pkl", "evil.pkl", "tib.pkl", "fifo", "dir", "nonexistent.pt", "half.npz")),
]
GENERATORS_BAD = [
    "", "nosuch", "mnist@3", "mnist:foo=1", "mnist:", "prompt:", "prompt:{ws}/nonexistent", "prompt:{ws}/file.txt",
    "prompt:{ws}/r", "prompt:{ws}/notprompt", "prompt:{ws}/p@2", "stylegan2:path={ws}/nonexistent.pkl",
    "stylegan2:path={ws}/tib.pkl", "stylegan2:path={ws}/evil.pkl", "stylegan2:path={ws}/empty.pkl",
    "stylegan2:path={ws}/garbage.pkl", "stylegan2:path={ws}/file.txt", "stylegan2:path={ws}/fifo",
    "stylegan2:path={ws}/dir", "mnist,x", "m" * 10_000, "panel-nosuch",
]
DATA_BAD = ["half.npz", "notzip.npz", "nokey.npz", "shape.npz", "ints.npz", "big.npz", "nan.npz", "one.npz",
            "pickled.npz", "emptydir", "truncgz", "file.txt", "fifo.npz", "nonexistent.npz"]
ATTRS_BAD = ["nosuch", "", "digit*", "*", "digit*nosuch", "nosuch*digit", "skin_tone", "digit**digit"]
TIMEOUTS_BAD = ["1e300", "-1", "abc", "nan", "inf", "99999999"]


def option_cases() -> list[Case]:
    cases = []
    for opt, values in COMPOSE_OPTIONS.items():
        cases += [Case(f"compose {opt} {v[:30]!r}", [*COMPOSE, opt, v]) for v in values]
    for opt, values in SAMPLE_OPTIONS.items():
        cases += [Case(f"sample {opt} {v[:30]!r}", [*SAMPLE_PROMPT, "--method", "langevin", opt, v]
                       if opt in ("--steps", "--step-size") else [*SAMPLE, opt, v]) for v in values]
    for opt, values in EVAL_OPTIONS.items():
        cases += [Case(f"eval {opt} {v[:30]!r}", [*EVAL, opt, v]) for v in values]
        cases += [Case(f"report {opt} {v[:30]!r}", [*REPORT, opt, v]) for v in values]
    cases += [
        Case("compose --batch-size 3 --nproc 2", [*COMPOSE, "--batch-size", "3", "--nproc", "2"]),
        # --nproc: caught before torchrun starts (in-process, a relaunch would print outside the capture)
        *(Case(f"compose --nproc 2, {what}", [*COMPOSE, "--nproc", "2", *extra]) for what, extra in (
            ("an unknown energy", ["--energy", "nosuch"]), ("an unknown generator", ["--gen", "nosuch"]),
            ("a contradictory energy", ["--energy", "classifier:digit=3,digit!=3"]), ("--lr 0", ["--lr", "0"]),
            ("--device meta", ["--device", "meta"]), ("--out a prompt", ["--out", "{ws}/p"]),
            ("--out a file", ["--out", "{ws}/file.txt"]), ("--hidden 100000", ["--hidden", "100000"]),
            ("a bad weight", ["--energy", "classifier:digit=3@1e308"]))),
        Case("compose --nproc 2 --resume a damaged run", ["compose", "--resume", "{ws}/r", "--nproc", "2"],
             setup=edit_run(setting("preview", -5))),
        Case("compose --resume with --energy", ["compose", "--resume", "{ws}/r", "--energy", "classifier:digit=3"]),
        Case("compose --resume a finished prompt", ["compose", "--resume", "{ws}/p"]),
        Case("compose --resume nothing", ["compose", "--resume", "{ws}/nonexistent"]),
        Case("compose --resume a file", ["compose", "--resume", "{ws}/file.txt"]),
        Case("compose --resume a plain folder", ["compose", "--resume", "{ws}/notprompt"]),
        Case("compose without energies", ["compose", "--out", "{ws}/o"]),
        Case("compose --out a file", ["compose", "--energy", "classifier:digit=3", "--out", "{ws}/file.txt"]),
        Case("compose --out a FIFO", ["compose", "--energy", "classifier:digit=3", "--out", "{ws}/fifo"]),
        Case("compose --out a non-prompt folder", ["compose", "--energy", "classifier:digit=3", "--out", "{ws}/notprompt"]),
        Case("compose --out a non-prompt folder --overwrite", ["compose", "--energy", "classifier:digit=3", "--out",
                                                               "{ws}/notprompt", "--overwrite"]),
        Case("compose --out a prompt without --overwrite", ["compose", "--energy", "classifier:digit=3", "--out", "{ws}/p"]),
        Case("compose --out an unfinished run", ["compose", "--energy", "classifier:digit=3", "--out", "{ws}/r"]),
        Case("compose --out a name too long", ["compose", "--energy", "classifier:digit=3", "--out", "{ws}/" + "x" * 300]),
        Case("compose --out inside a file", ["compose", "--energy", "classifier:digit=3", "--out", "{ws}/file.txt/o"]),
        Case("compose --out the parent prompt", ["compose", "--gen", "prompt:{ws}/p", "--energy", "classifier:digit=3",
                                                 "--out", "{ws}/p", "--overwrite"]),
        Case("compose --keep-parent without a prompt", [*COMPOSE, "--keep-parent"]),
        Case("sample without a source", ["sample", "-n", "2"]),
        Case("sample with both sources", ["sample", "{ws}/p", "--gen", "mnist"]),
        Case("sample --gen with langevin", ["sample", "--gen", "mnist", "--method", "langevin"]),
        Case("unknown command", ["nosuch"]),
        Case("unknown option", ["sample", "--nosuch"]),
        Case("option without its value", ["sample", "--gen"]),
        Case("extra argument", ["info", "{ws}/p", "extra"]),
        Case("info without a prompt", ["info"]),
        Case("list with an argument", ["list", "x"]),
    ]
    # issue 25: distributed variables inherited from a cluster job's environment, without torchrun's
    for i, env in enumerate([
        {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"},
        {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"},
        {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1"},
        {"WORLD_SIZE": "2", "RANK": "5", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"},
        {"WORLD_SIZE": "2", "RANK": "-1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"},
        {"WORLD_SIZE": "0"},
        {"WORLD_SIZE": "two"},
        {"WORLD_SIZE": "2", "RANK": "1.5"},
        {"WORLD_SIZE": "1", "RANK": "1"},
        {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "x", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"},
    ]):
        shown = " ".join(f"{k}={v}" for k, v in env.items())
        cases.append(Case(f"compose with {shown} inherited ({i})", COMPOSE, env=env, words=("environment",),
                          klass="inherited distributed variables"))
        if i < 2:
            cases.append(Case(f"compose --nproc 2 with {shown} inherited", [*COMPOSE, "--nproc", "2"], env=env,
                              words=("environment",), klass="inherited distributed variables"))
            cases.append(Case(f"compose --resume with {shown} inherited", ["compose", "--resume", "{ws}/r", "-q"], env=env,
                              words=("environment",), klass="inherited distributed variables"))
    # issue 25: a file compose would write over is a link or a special file: refused before anything is written
    for name, make in (
        ("samples.png", lambda p: os.symlink("/dev/null", p)),
        ("samples.png", lambda p: os.symlink("../file.txt", p)),
        ("samples.png", lambda p: os.mkfifo(p)),
        ("samples.png", lambda p: p.mkdir()),
        ("checkpoint.pt", lambda p: os.symlink("../file.txt", p)),
        (".tilt-flow.safetensors", lambda p: os.symlink("../file.txt", p)),
        ("flow.safetensors", None),
        ("manifest.json", None),
    ):
        def damage(ws: Path, name=name, make=make) -> None:
            path = ws / "p" / name
            if make is None:  # the prompt's own file becomes a link to a copy of itself elsewhere
                (ws / f"copy-{name}").write_bytes(path.read_bytes())
                path.unlink()
                os.symlink(ws / f"copy-{name}", path)
            else:
                path.unlink(missing_ok=True)
                make(path)

        kind = "a link" if make is None else "a link, FIFO or folder"
        cases.append(Case(f"compose --overwrite a prompt whose {name} is {kind} ({len(cases)})",
                          ["compose", "--energy", "classifier:digit=3", "--out", "{ws}/p", "--overwrite", "-q", *SMALL,
                           "--seed", "7"], setup=damage, klass="overwrite of a prompt with links"))
    # --overwrite of a prompt with a bad setting: the old prompt must stay exactly as it was (run.json included)
    for opt, value in (("--seed", "99999999999999999999999"), ("--batch-size", "1000000000000"), ("--hidden", "100000"),
                       ("--lr", "inf"), ("--lr", "0"), ("--energy", "nosuch"), ("--device", "meta"), ("--flow", "x")):
        cases.append(Case(f"compose --overwrite a prompt, {opt} {value[:20]}",
                          ["compose", "--energy", "classifier:digit=3", "--out", "{ws}/p", "--overwrite", "-q", *SMALL, opt, value]))
    return cases


def target_cases() -> list[Case]:
    cases = []
    for t in OUT_TARGETS_PNG:
        cases.append(Case(f"sample -o {t[:40]}", ["sample", "--gen", "mnist", "-n", "2", "-o", "{ws}/" + t, "-q"]))
    for t in OUT_TARGETS_JSON:
        cases.append(Case(f"sample --cost-json {t[:40]}", [*SAMPLE, "--cost-json", "{ws}/" + t]))
        cases.append(Case(f"eval -o {t[:40]}", [*EVAL, "-o", "{ws}/" + t]))
    def link_among_images(ws: Path) -> None:
        (ws / "imgs").mkdir()
        (ws / "imgs" / "000000.png").write_bytes(b"an image the user had")
        os.symlink("/dev/null", ws / "imgs" / "000001.png")

    cases.append(Case("sample -o a folder holding a link among its names",
                      ["sample", "--gen", "mnist", "-n", "3", "-o", "{ws}/imgs", "-q"], setup=link_among_images))
    for t in OUT_TARGETS_HTML:
        cases.append(Case(f"report -o {t[:40]}", ["report", "{ws}/p", "-n", "4", "-q", "-o", "{ws}/" + t]))
    return cases


def input_cases() -> list[Case]:
    cases = []
    for p in PROMPTS_BAD:
        shown = p.replace("{ws}/", "")[:30]
        cases.append(Case(f"sample {shown!r}", ["sample", p, "-n", "2", "-o", "{ws}/ok.png"]))
        cases.append(Case(f"info {shown!r}", ["info", p]))
        cases.append(Case(f"eval {shown!r}", ["eval", p, "-n", "4"]))
        cases.append(Case(f"report {shown!r}", ["report", p, "-n", "4", "-o", "{ws}/ok.html"]))
    for e in ENERGIES_BAD:
        cases.append(Case(f"compose --energy {e[:40]!r}", ["compose", "--energy", e, "--out", "{ws}/o", "-q", *SMALL]))
    for g in GENERATORS_BAD:
        shown = g.replace("{ws}/", "")[:40]
        cases.append(Case(f"compose --gen {shown!r}", ["compose", "--gen", g, "--energy", "classifier:digit=3",
                                                       "--out", "{ws}/o", "-q", *SMALL]))
        cases.append(Case(f"sample --gen {shown!r}", ["sample", "--gen", g, "-n", "2", "-o", "{ws}/ok.png", "-q"]))
    for d in DATA_BAD:
        cases.append(Case(f"eval --data {d}", [*EVAL, "--data", "{ws}/" + d]))
        cases.append(Case(f"report --data {d}", [*REPORT, "--data", "{ws}/" + d]))
    for a in ATTRS_BAD:
        cases.append(Case(f"eval --attr {a!r}", [*EVAL, "--attr", a]))
        cases.append(Case(f"report --attr {a!r}", [*REPORT, "--attr", a]))
    for t in TIMEOUTS_BAD:
        env = {"PROMPTGEN_PLUGIN_TIMEOUT": t}
        cases.append(Case(f"list, timeout {t}", ["list"], env=env))
        cases.append(Case(f"sample, timeout {t}", SAMPLE, env=env))
        cases.append(Case(f"compose, timeout {t}", COMPOSE, env=env))
    return cases


def manifest_edit(change: Callable[[dict], object]) -> Callable[[Path], None]:
    return edit_json("p/manifest.json", change)


PROMPT_DAMAGE: dict[str, Callable[[Path], None]] = {
    "format_version of 400 digits": lambda ws: (ws / "p/manifest.json").write_text(
        (ws / "p/manifest.json").read_text().replace('"format_version": 1', '"format_version": ' + "9" * 400)),
    "energy weight Infinity": manifest_edit(lambda m: m["energies"][0].__setitem__("weight", float("inf"))),
    "energy weight NaN": manifest_edit(lambda m: m["energies"][0].__setitem__("weight", float("nan"))),
    "energy weight 1e308": manifest_edit(lambda m: m["energies"][0].__setitem__("weight", 1e308)),
    "generator of another latent": manifest_edit(lambda m: m["generator"].__setitem__("spec", "panel-vae")),
    "generator spec unknown": manifest_edit(lambda m: m["generator"].__setitem__("spec", "nosuch")),
    "generator spec a loop": lambda ws: manifest_edit(lambda m: m["generator"].__setitem__("spec", f"prompt:{ws}/p"))(ws),
    "weights unreadable name": manifest_edit(lambda m: m.__setitem__("weights_file", "x" * 300)),
    "manifest links to /dev/zero": lambda ws: ((ws / "p/manifest.json").unlink(), os.symlink("/dev/zero", ws / "p/manifest.json")),
    "weights link to /dev/zero": lambda ws: ((ws / "p/flow.safetensors").unlink(), os.symlink("/dev/zero", ws / "p/flow.safetensors")),
    "weights header claims 1 TiB": write("p/flow.safetensors", struct.pack("<Q", 1 << 40) + b"{}"),
    "weights a zip": lambda ws: write("p/flow.safetensors", _zip_bytes())(ws),
}


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x", "y")
    return buf.getvalue()


def prompt_cases() -> list[Case]:
    cases = []
    for name, damage in PROMPT_DAMAGE.items():
        cases.append(Case(f"sample, {name}", ["sample", "{ws}/p", "-n", "2", "-o", "{ws}/ok.png", "-q"], setup=damage))
        if not name.startswith("generator"):  # info checks a prompt without building its generator
            cases.append(Case(f"info, {name}", ["info", "{ws}/p"], setup=damage))
        cases.append(Case(f"eval, {name}", ["eval", "{ws}/p", "-n", "4", "-q"], setup=damage))
        cases.append(Case(f"compose on it, {name}", ["compose", "--gen", "prompt:{ws}/p", "--energy", "classifier:digit=3",
                                                     "--out", "{ws}/o", "-q", *SMALL], setup=damage))
    # issue 25: a manifest edited so that the rejection and Langevin samplers would sample something else
    for name, change in (
        ("no energies", lambda m: m.__setitem__("energies", [])),
        ("a target of another class", lambda m: m["energies"][0]["targets"][0].__setitem__("asked", ["4"])),
        ("a target of another attribute", lambda m: m["energies"][0]["targets"][0].__setitem__("attribute", "thickness")),
        ("one target too many", lambda m: m["energies"][0]["targets"].append(dict(m["energies"][0]["targets"][0]))),
    ):
        for method in ("rejection", "langevin"):
            cases.append(Case(f"sample --method {method}, manifest with {name}",
                              ["sample", "{ws}/p", "--method", method, "-n", "2", "--steps", "2", "-o", "{ws}/ok.png", "-q"],
                              setup=manifest_edit(change), klass="edited manifests and the samplers"))
    return cases


#: The class of each catalog function's cases (a case may name its own).
CLASSES = {
    "option_cases": "command-line options", "target_cases": "output targets", "input_cases": "input files and specs",
    "resume_cases": "resume", "prompt_cases": "prompt folders",
}


def all_cases() -> list[Case]:
    cases = []
    for make in (option_cases, target_cases, input_cases, resume_cases, prompt_cases):
        for c in make():
            c.klass = c.klass or CLASSES[make.__name__]
            cases.append(c)
    for c in cases:  # small settings right after the command: a case's own values come later and win
        if c.args[:1] == ["compose"] and "--resume" not in c.args:
            c.args = ["compose", *SMALL, *c.args[1:]]
    return cases
