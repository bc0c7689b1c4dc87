"""``promptgen app``: a local web page over the prompts under one folder (issue 29).

Pick a prompt, sample it beside its generator on the same noise (a seed, a count, one slider per condition of a
conditional prompt), sweep a condition, judge it as ``promptgen eval`` does, download the grid and the samples.
See docs/app.md.

The page is built with Gradio, an optional dependency (``pip install promptgen-core[app]``). Nothing in
promptgen imports it but :func:`serve`; :mod:`promptgen.app.library` does the work without it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from promptgen.core.errors import PromptgenError

#: What to install for the app, said in one line when Gradio is missing.
INSTALL = "pip install 'promptgen-core[app]'"
DEFAULT_PORT = 7860


def require_gradio() -> None:
    """Refuse, in one line, to run the app without Gradio."""
    import importlib

    try:
        importlib.import_module("gradio")
    except ImportError:
        raise PromptgenError(f"promptgen app needs Gradio, which is not installed: {INSTALL}") from None


def check_port(host: str, port: int) -> None:
    """Refuse, in one line naming it, a port that is already in use (or a host this machine does not have)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise PromptgenError(f"--host {host!r}: not an address of this machine ({exc}); use 127.0.0.1 or 0.0.0.0") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                raise PromptgenError(f"port {port} on {host} is already in use; stop what uses it or choose another with --port") from None
            raise PromptgenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --host or --port") from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(folder: str | Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT, device: str = "auto",
          ready: Callable[[str], None] | None = None) -> None:
    """Serve the app over the prompts under ``folder`` at ``http://HOST:PORT`` until interrupted."""
    require_gradio()
    from promptgen.app.library import Library

    library = Library(folder, device=device)
    check_port(host, port)
    # Gradio's own files (the images it serves) go to a private temporary folder, removed on the way out.
    scratch = Path(tempfile.mkdtemp(prefix="promptgen-app-"))
    stack = contextlib.ExitStack()
    os.environ["GRADIO_TEMP_DIR"] = str(scratch / "gradio")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        from promptgen.app.training import TrainingQueue
        from promptgen.app.ui import CSS, build

        downloads = scratch / "downloads"
        downloads.mkdir()
        training = TrainingQueue(library)
        stack.callback(training.stop)
        demo = build(library, downloads, training)
        demo.queue(default_concurrency_limit=1)
        if threading.current_thread() is threading.main_thread():  # `kill` stops it as Ctrl+C does: runs stopped, files removed
            signal.signal(signal.SIGTERM, _interrupt)
        if ready is not None:
            ready(f"http://{host}:{port}")
        demo.launch(server_name=host, server_port=port, quiet=True, show_error=False, ssr_mode=False, css=CSS,
                    inbrowser=False, share=False, footer_links=[])
    finally:
        stack.close()
        shutil.rmtree(scratch, ignore_errors=True)


__all__ = ["DEFAULT_PORT", "INSTALL", "check_port", "require_gradio", "serve"]
