"""The one progress bar of long work (training, sampling, evaluating), on rich."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


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
