"""Run hostile-file cases in one fresh process and measure each: seconds, memory, and the error's one line.

Issue 25 asks that every hostile configuration be refused within 5 s and 1 GB. A plugin's test writes its
hostile files, then calls :func:`refusals` with the Python statement that loads one (``{path}`` stands for the
file); each case runs in the same child process, one after the other, and the child reports per case the wall
time, the growth of its peak resident memory over what it held after its imports, and the exception it raised.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

_CHILD = r"""
import json, os, resource, sys, time
# ru_maxrss keeps the peak of the process this one was forked from (the test runner's, hundreds of MB), even
# across exec: the cases run in a fork of this fresh interpreter, whose peak starts at its own size.
pid = os.fork()
if pid:
    sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
setup, load, cases = json.loads(sys.argv[1])
exec(setup)
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
base = peak()
out = {}
for name, path in cases.items():
    t = time.perf_counter()
    try:
        exec(load.replace("{path}", repr(path)))
        error, kind = None, None
    except BaseException as exc:
        error, kind = str(exc), type(exc).__mro__
        kind = [k.__name__ for k in kind]
    out[name] = {"seconds": time.perf_counter() - t, "grown_bytes": peak() - base, "error": error, "kinds": kind}
print(json.dumps(out), flush=True)
os._exit(0)
"""


def refusals(setup: str, load: str, cases: Mapping[str, str | Path], timeout: float = 600) -> dict[str, dict]:
    """``{case: {"seconds", "grown_bytes", "error", "kinds"}}`` for each file of ``cases`` loaded by ``load``.

    ``setup`` runs once first (the imports); ``load`` is one statement with ``{path}`` for the case's file.
    ``grown_bytes`` is the child's peak memory after the case minus its peak after ``setup``: cumulative,
    so the last case's figure bounds them all. ``kinds`` names the exception's classes (None if none).
    """
    payload = json.dumps([setup, load, {k: str(v) for k, v in cases.items()}])
    proc = subprocess.run([sys.executable, "-c", _CHILD, payload], capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"the child process failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def budget_problems(result: dict, words: str = "", seconds: float = 5.0, grown: int = 2**30) -> list[str]:
    """What is wrong with one case of :func:`refusals` (for :func:`promptgen.testing.tally.record`): no
    refusal, a foreign exception, not one line, or over the issue's 5 s and 1 GB."""
    problems = []
    if result["error"] is None:
        problems.append("not refused")
    elif "PromptgenError" not in (result["kinds"] or []):
        problems.append(f"foreign exception {result['kinds'][0]}: {result['error'][:200]}")
    elif len(result["error"].splitlines()) != 1 or words not in result["error"]:
        problems.append(f"not the expected line: {result['error'][:200]}")
    if result["seconds"] >= seconds or result["grown_bytes"] >= grown:
        problems.append(f"over budget: {result['seconds']:.1f} s, {result['grown_bytes'] / 2**20:.0f} MiB")
    return problems


__all__ = ["budget_problems", "refusals"]
