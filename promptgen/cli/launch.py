"""``compose --nproc N``: the same command relaunched under torchrun, safely and with one-line errors."""

from __future__ import annotations

import os
import sys

#: Most images one command takes (-n); memory sets the real limit, checked once the image size is known.
from promptgen.cli.app import RELAUNCHED, err_console
from promptgen.core.errors import PromptgenError


def _relaunch_with_torchrun(nproc: int) -> int:
    """Run this same ``compose`` command under ``torchrun`` with ``nproc`` processes; its exit code.

    Neither the launcher nor its processes import from the current folder
    (``python -P`` and ``PYTHONSAFEPATH``): a ``rich.py`` or ``torch.py`` lying
    there must not run. A process that fails has said why in one line; the
    launcher's own traceback about it is not shown.
    """
    import subprocess

    argv = sys.argv[1:]
    if "compose" not in argv:
        raise PromptgenError("--nproc works from the command line (promptgen compose ... --nproc N); from Python, use torchrun")
    args = argv[argv.index("compose") + 1 :]
    clean, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            clean.append(a)
    # `python -P` (3.11+) and PYTHONSAFEPATH keep the current folder off the import path; on 3.10, which has
    # neither, each stub removes it itself before importing anything else. torchrun starts the processes
    # with --no-python, as `python -c WORKER compose ...`, so they never run `-m` from the current folder.
    clean_path = _clean_path()
    launch = clean_path + "from promptgen.cli import launch_torchrun; sys.exit(launch_torchrun(sys.argv[1:]))"
    worker = clean_path + "sys.argv = ['promptgen', *sys.argv[1:]]; from promptgen.cli import main; main()"
    safe = ["-P"] if sys.version_info >= (3, 11) else []
    cmd = [sys.executable, *safe, "-c", launch, "--standalone", f"--nproc_per_node={nproc}", "--no-python",
           sys.executable, *safe, "-c", worker, "compose", *clean]
    # LOGLEVEL: torchrun's own log lines (which process failed, with what exit code) would follow the
    # failing process's one-line error; that line says it all.
    env = {**os.environ, "PYTHONSAFEPATH": "1", "LOGLEVEL": "CRITICAL", RELAUNCHED: "1"}
    # torchrun would set 1 thread per process and warn about it; share the cores instead.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.run(cmd, check=False, env=env).returncode


def _clean_path() -> str:
    """The start of the relaunch's `python -c` stubs: the current folder off the import path, whatever the Python.

    Unless the current folder is where this promptgen is imported from (a clone installed editable puts its root
    on the import path, and a run started in the clone must find the package there)."""
    import promptgen

    here = os.path.dirname(os.path.dirname(os.path.abspath(promptgen.__file__ or "")))
    return f"import os, sys; sys.path[:] = [p for p in sys.path if p not in ('', '.') and (p != os.getcwd() or p == {here!r})]; "


def launch_torchrun(argv: list[str]) -> int:
    """``torchrun ARGV`` in this process; the first failing process's exit code instead of a traceback."""
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # Which process failed with which exit code: the process's own one line already said why.
    for name in ("torch.distributed.elastic", "torch.distributed.elastic.multiprocessing.api", "torch.distributed.run",
                 "torch.distributed.launcher.api", "torch.distributed.elastic.agent.server.api"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        run(parse_args(argv))
    except ChildFailedError as exc:
        codes = {rank: f.exitcode for rank, f in exc.failures.items()}
        if 2 in codes.values():  # a mistake: the process said it in one line
            return 2
        rank, code = min(codes.items())
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        err_console.print(f"[bold red]error:[/bold red] training process {rank} {how}; see its output above", highlight=False)
        return code if 0 < code < 256 else 1
    return 0
