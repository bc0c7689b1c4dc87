"""The progress bars of long work (training, sampling, evaluating, downloading), on rich."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


def progress_bar(console: Console | None, enabled: bool, label: str | None = None) -> Progress:
    """A bar with count, elapsed and remaining time.

    With ``label`` the bar is titled by it and each task's description follows
    the bar (live numbers, e.g. the loss); without, each task's description is
    its title.
    """
    title = TextColumn(f"[bold]{label}[/bold]" if label else "[bold]{task.description}[/bold]")
    tail = [TextColumn("{task.description}")] if label else []
    return Progress(
        title,
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *tail,
        console=console,
        disable=not enabled,
        transient=False,
    )


def transfer_bar(console: Console | None, enabled: bool) -> Progress:
    """A bar for a download: bytes received of the total, speed, remaining time.

    Each task's description is its title (the file name); a task whose total
    is None (no Content-Length) shows a pulsing bar and the bytes so far.
    """
    return Progress(
        TextColumn("[bold]{task.description}[/bold]"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )
