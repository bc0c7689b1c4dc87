"""``promptgen app``: the local web app over a folder of prompts (:mod:`promptgen.app`; needs the ``app`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promptgen.cli.app import app, out_console, user_errors


@app.command("app")
@user_errors
def app_(
    folder: Annotated[Path, typer.Argument(help="The folder whose prompts the app shows (searched recursively)")] = Path("runs"),
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 opens the app to the network")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on")] = 7860,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
) -> None:
    """Serve a local web app to browse, sample, sweep, judge and compose the prompts under FOLDER (needs the app extra)."""
    from promptgen.app import serve
    from promptgen.core.errors import printable

    def ready(url: str) -> None:
        out_console.print(f"promptgen app: the prompts under [bold]{printable(folder)}[/bold] at {url} (Ctrl+C stops it)",
                          highlight=False, soft_wrap=True)

    serve(folder, host=host, port=port, device=device, ready=ready)
