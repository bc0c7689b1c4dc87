"""One run per folder: the lock ``compose`` holds on its run folder while it writes there.

Two ``promptgen compose --resume R`` at once would both train and both write
R's checkpoint and prompt. :func:`run_lock` takes an exclusive ``flock`` on
``R/.promptgen.lock``: the operating system releases it when the process ends,
however it ends (``kill -9`` included), so a killed run's lock never blocks the
next one. The file is removed when the lock is released; a process that opened
the old file just before it was removed sees that and takes the lock again on
the new one.

Where ``fcntl`` is missing (Windows), no lock is taken.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from promptgen.core.errors import ArtifactError

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None  # type: ignore[assignment]

#: The lock file inside a run folder.
LOCK = ".promptgen.lock"


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = path.read_text(encoding="utf-8").strip()
        if text.isdigit():
            return f" (process {text})"
    return ""


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s run lock for the block; a one-line :class:`ArtifactError` if another process holds it."""
    if fcntl is None:
        yield
        return
    path = folder / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise ArtifactError(f"cannot lock the run folder {str(folder)!r} ({exc.strerror}); choose a folder you can write to") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ArtifactError(
                f"another promptgen compose is running in {str(folder)!r}{_holder(path)}; wait for it to finish, "
                "or stop it, then run this again"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except OSError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file after we opened it: lock the new one
    try:
        with contextlib.suppress(OSError):  # the process number only helps the message; a full disk must not stop the run
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


__all__ = ["LOCK", "run_lock"]
