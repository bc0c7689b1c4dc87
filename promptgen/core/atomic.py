"""Writing files so that a reader never sees half a file and an old file is never lost.

Every file promptgen writes goes through :func:`atomic_path`: the data goes to a
temporary file beside the target, which is renamed onto it only when complete.
The target must be a regular file or not exist yet:

* a device, FIFO, socket or folder is refused (renaming over ``/dev/full``, or
  over a FIFO another program reads, would replace it with a plain file);
* a symbolic link is refused too: following it could replace whatever it
  names (a link to ``/proc/self/fd/1`` names the process's own output);
* a file that exists keeps its permissions (a private 0600 file stays private).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from promptgen.core.errors import PromptgenError

#: Longest file name most file systems take (bytes); a longer one fails only when written.
NAME_MAX = 255


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_name_lengths(path: Path, option: str = "-o") -> None:
    """Refuse a path with a name longer than the file system takes (it would fail only when written)."""
    if any(len(os.fsencode(part)) > NAME_MAX for part in path.parts):
        raise PromptgenError(f"cannot write {str(path)[:80]!r}…: a name in it is longer than {NAME_MAX} bytes; give {option} a shorter name")


def writable_target(path: str | os.PathLike[str], option: str = "-o", fix: str | None = None) -> Path:
    """The file that writing ``path`` will replace, after checking that it can be; nothing is written.

    Raises a one-line :class:`PromptgenError` (naming ``option``) for a target
    that is not a regular file (a symbolic link included), a name longer than
    the file system allows, or a folder that does not exist or cannot be written.
    ``fix`` replaces the advice after the semicolon for a link or a special file
    (where the file is one of several a command writes, not the option's own).
    """
    path = Path(path)
    shown = str(path)
    check_name_lengths(path, option)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        what = "is a file, not a folder" if parent.exists() else "does not exist"
        raise PromptgenError(f"cannot write {shown!r}: folder {str(parent)!r} {what}; create it or choose another {option}")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise PromptgenError(f"cannot write {shown!r}: {exc.strerror}; choose another {option}") from None
    if st is not None and stat.S_ISLNK(st.st_mode):
        # Following it could replace whatever it names (a link to /proc/self/fd/1 names this process's output).
        raise PromptgenError(f"cannot write {shown!r}: it is a symbolic link (to {os.readlink(path)!r}); {fix or f'give {option} the file itself or a new name'}")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise PromptgenError(f"cannot write {shown!r}: it is {_kind(st.st_mode)}, not a regular file; {fix or f'give {option} a file name'}")
    target = path
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PromptgenError(f"cannot write {shown!r}: folder {str(parent)!r} is not writable; choose another {option}")
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is untouched.
    See the module's notes for links, special files and permissions.
    """
    target = writable_target(path)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:64]}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise write_failed(path, exc) from None
    os.close(fd)
    try:
        yield Path(tmp)
        try:
            old = os.stat(target)
        except FileNotFoundError:
            old = None
        if old is not None:
            # An existing file keeps its permissions and, where allowed, its owner.
            os.chmod(tmp, stat.S_IMODE(old.st_mode))
            with contextlib.suppress(OSError, AttributeError):  # AttributeError: no owners on Windows
                if (old.st_uid, old.st_gid) != (os.getuid(), os.getgid()):
                    os.chown(tmp, old.st_uid, old.st_gid)
        else:
            # mkstemp makes the file private (0600); give it the mode a plain open() would.
            os.chmod(tmp, 0o666 & ~_umask())
        if old is not None and not stat.S_ISREG(old.st_mode):  # it changed since the check: still refuse
            raise PromptgenError(f"cannot write {str(path)!r}: it is {_kind(old.st_mode)}, not a regular file")
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # a full disk, a quota, an I/O error: name the file being written, not stdout
            raise write_failed(path, exc) from None
        raise


def write_failed(path: str | os.PathLike[str], exc: OSError) -> PromptgenError:
    """One line for an operating-system error while writing ``path``, with what to do about it."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free some space on that disk or write somewhere else; nothing it held was changed"
    elif exc.errno == errno.EFBIG:
        advice = "the file system takes no file this large; write somewhere else"
    elif exc.errno == errno.EROFS:
        advice = "that file system is read-only; write somewhere else"
    else:
        advice = "check the disk and the folder's permissions, or write somewhere else"
    return PromptgenError(f"cannot write {str(path)!r}: {reason}; {advice}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` and rename the result onto ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    def write(p: Path) -> None:
        p.write_text(text, encoding="utf-8")

    write_atomic(path, write)
