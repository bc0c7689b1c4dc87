"""Download a plugin's weights once into promptgen's cache folder.

Every plugin that needs a large file (a StyleGAN2 checkpoint, classifier
weights) calls :func:`fetch` from its ``build``, never at import time::

    WEIGHTS = RemoteFile("https://example.org/res34.pt", "res34.pt", sha256=None)  # or the published sha256
    path = fetch(WEIGHTS, subdir="fairface", path=user_given_path)

The file lands in ``cache_root()/subdir/filename``; ``$PROMPTGEN_HOME`` moves
the cache (e.g. to a shared disk). A cached file is returned without touching
the network; a user who cannot download puts the file there by hand, or passes
``path=``. Every failure is a one-line :class:`DownloadError` that names the
URL, what went wrong and where the file should go, and leaves nothing behind
in the cache.

Implementation choice: plain :mod:`urllib`, not pooch. pooch (with requests)
would download and check hashes, but (as of pooch 1.9) its cache-hit path
re-hashes the file and re-downloads on a mismatch, a missing hash is logged as
advice to the user, failed downloads are retried with sleeps, its progress
hook counts chunk sizes rather than bytes received, and a short transfer or a
hash mismatch surfaces as a requests exception or a multi-sentence
``ValueError`` that would have to be parsed to name the expected and actual
hash. The whole job here is about a hundred lines of the standard library, with
the exact errors and the rich progress bar the rest of promptgen uses.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from rich.console import Console

from promptgen.core.atomic import atomic_path
from promptgen.core.errors import PromptgenError
from promptgen.core.progress import transfer_bar

CHUNK = 1 << 20


def cache_root() -> Path:
    """The folder downloads are cached in.

    ``$PROMPTGEN_HOME`` if it is set and not empty (``~`` and ``$VARS``
    expanded), else the user cache folder of the platform
    (``~/.cache/promptgen`` on Linux).
    """
    home = os.environ.get("PROMPTGEN_HOME", "").strip()
    if home:
        return Path(os.path.expandvars(os.path.expanduser(home)))
    return platformdirs.user_cache_path("promptgen")


class DownloadError(PromptgenError):
    """A file that could not be downloaded, failed its check, or was not where the user said."""


@dataclass(frozen=True)
class RemoteFile:
    """A file published at a URL.

    Attributes:
        url: where to download it from (http or https).
        filename: its name in the cache folder.
        sha256: the published SHA-256 in lowercase hex, or None when the
            publisher gives none (then only the size is checked).
        size: the published size in bytes, checked after the transfer (for files
            whose publisher gives no checksum), or None.
    """

    url: str
    filename: str
    sha256: str | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        if not self.filename or Path(self.filename).name != self.filename or self.filename in (".", ".."):
            raise ValueError(f"RemoteFile.filename must be a bare file name, got {self.filename!r}")
        if self.sha256 is not None and (len(self.sha256) != 64 or self.sha256.strip("0123456789abcdef")):
            raise ValueError(f"RemoteFile.sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if self.size is not None and (not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0):
            raise ValueError(f"RemoteFile.size must be a whole number of bytes >= 0, got {self.size!r}")


#: Set to 1 to forbid downloads: a file that is not cached is a one-line error instead.
OFFLINE_VARIABLE = "PROMPTGEN_OFFLINE"


def offline() -> bool:
    """Whether downloads are forbidden (``$PROMPTGEN_OFFLINE`` set to anything but empty, 0, false or no)."""
    return os.environ.get(OFFLINE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def fetch(
    remote: RemoteFile,
    *,
    subdir: str,
    path: str | Path | None = None,
    progress: bool = True,
    console: Console | None = None,
    timeout: float = 60.0,
) -> Path:
    """The local path of ``remote``: ``path`` if given, else the cached copy, downloading it once.

    Args:
        remote: what to download.
        subdir: the plugin's folder inside :func:`cache_root`, e.g. ``"fairface"``.
        path: a local copy the user gave instead (a ``path=`` option); it must exist.
        progress: show a progress bar (bytes) while downloading.
        console: where the bar goes (rich's default console if None).
        timeout: seconds to wait for the server to connect or send more data.

    Raises:
        DownloadError: ``path`` does not exist; the file is not cached and
            ``$PROMPTGEN_OFFLINE`` is set; the download failed (offline,
            HTTP error, timeout, short transfer) or the checksum did not match.
    """
    if path is not None:
        given = Path(path).expanduser()
        if given.is_file():
            return given
        problem = "is a folder, not a file" if given.is_dir() else "does not exist"
        raise DownloadError(
            f"{str(given)!r} {problem}; pass path= an existing file or drop path= to download {remote.url}"
        )
    sub = Path(subdir)
    if not subdir or sub.is_absolute() or ".." in sub.parts:
        raise ValueError(f"subdir must be a relative folder name inside the cache, got {subdir!r}")
    target = cache_root() / sub / remote.filename
    if target.is_file():
        return target
    if offline():
        raise DownloadError(
            f"{remote.filename} is not in the cache and {OFFLINE_VARIABLE} is set, so {remote.url} is not downloaded; "
            f"put the file at {target} by hand, pass path= a local copy, or unset {OFFLINE_VARIABLE}"
        )

    created = _missing_parents(target.parent)
    by_hand = f"put the file at {target} by hand or pass path= a local copy"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot download {remote.url}: cannot create the cache folder {str(target.parent)!r} "
            f"({exc.strerror or exc}); set PROMPTGEN_HOME to a folder you can write to, or pass path= a local copy"
        ) from None
    try:
        with atomic_path(target) as tmp:
            _download(remote, tmp, by_hand=by_hand, progress=progress, console=console, timeout=timeout)
    except BaseException:
        for folder in created:  # deepest first; only the ones this call made, and only if empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return target


#: Errors of the disk being written, not of the network (full, over quota, file too large, read-only).
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def _missing_parents(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    out = []
    while not folder.exists() and folder.parent != folder:
        out.append(folder)
        folder = folder.parent
    return out


def _download(
    remote: RemoteFile, tmp: Path, *, by_hand: str, progress: bool, console: Console | None, timeout: float
) -> None:
    """Stream ``remote.url`` into ``tmp``, checking its size and checksum."""
    url = remote.url

    def fail(reason: str) -> DownloadError:
        return DownloadError(f"cannot download {url}: {reason}; {by_hand}")

    request = urllib.request.Request(url, headers={"User-Agent": "promptgen (python urllib)"})
    digest = hashlib.sha256()
    received = 0
    expected: int | None = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            expected = _content_length(response)
            kind = response.headers.get("Content-Type", "")
            if kind.startswith("text/html") and not remote.filename.lower().endswith((".html", ".htm")):
                raise fail(
                    "the server sent a web page instead of the file (a sign-in or confirmation page?); "
                    "open the URL in a browser"
                )
            with tmp.open("wb") as out, transfer_bar(console, progress) as bar:
                task = bar.add_task(remote.filename, total=expected)
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(task, advance=len(chunk))
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        raise fail(f"the server answered HTTP {exc.code} {exc.reason}".rstrip()) from None
    except urllib.error.URLError as exc:
        raise fail(_why(exc.reason, url, timeout)) from None
    except http.client.IncompleteRead as exc:
        received += len(exc.partial)
        raise fail(_short(received, expected)) from None
    except (OSError, http.client.HTTPException) as exc:
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:  # writing the cache failed, not the network
            raise DownloadError(
                f"cannot download {url}: cannot write the cache file beside {str(tmp.parent)!r} after {received:,} bytes "
                f"({exc.strerror}); free some space there, or set PROMPTGEN_HOME to a folder on another disk"
            ) from None
        if received or expected is not None:
            raise fail(f"{_why(exc, url, timeout)} after {received:,} bytes") from None
        raise fail(_why(exc, url, timeout)) from None
    except ValueError as exc:  # e.g. "unknown url type"
        raise fail(str(exc)) from None
    if expected is not None and received != expected:
        raise fail(_short(received, expected))
    if remote.size is not None and received != remote.size:
        raise DownloadError(
            f"{url}: {received:,} bytes arrived, but the file is published as {remote.size:,} bytes; nothing was saved; "
            f"the file changed or was damaged on the way: try again, or {by_hand}"
        )
    if remote.sha256 is not None:
        actual = digest.hexdigest()
        if actual != remote.sha256:
            raise DownloadError(
                f"{url}: sha256 mismatch, expected {remote.sha256}, got {actual}; nothing was saved; "
                f"the file changed or was damaged on the way: try again, or {by_hand} whose sha256 matches"
            )


def _content_length(response: http.client.HTTPResponse) -> int | None:
    text = response.headers.get("Content-Length")
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _short(received: int, expected: int | None) -> str:
    of = f" of {expected:,}" if expected is not None else ""
    return f"the transfer stopped after {received:,}{of} bytes (connection lost?); try again"


def _why(reason: object, url: str, timeout: float) -> str:
    """A few words on why a connection failed."""
    host = urllib.parse.urlsplit(url).netloc or url
    if isinstance(reason, socket.gaierror):
        return f"cannot look up {host} (offline, or a typo in the host name?)"
    if isinstance(reason, ConnectionRefusedError):
        return f"{host} refused the connection"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"{host} sent nothing for {timeout:g} s (timed out)"
    if isinstance(reason, ssl.SSLError):
        return f"secure connection to {host} failed ({reason.reason or reason})"
    if isinstance(reason, ConnectionError):
        return f"the connection to {host} was lost ({type(reason).__name__})"
    if isinstance(reason, OSError):
        return str(reason.strerror or reason)
    return " ".join(str(reason).split()) or type(reason).__name__
