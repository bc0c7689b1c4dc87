"""``promptgen push``: a prompt folder to the Hugging Face Hub (loading one back is ``--gen prompt:hf://OWNER/NAME``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promptgen.cli.app import app, out_console, user_errors
from promptgen.core.errors import printable


@app.command()
@user_errors
def push(
    prompt: Annotated[Path, typer.Argument(help="Prompt folder made by `promptgen compose`")],
    repo_id: Annotated[str, typer.Argument(help="The Hub repo to upload to, OWNER/NAME, e.g. alice/mnist-threes")],
    private: Annotated[
        bool, typer.Option("--private", help="Create the repo private (an existing repo keeps its visibility)")
    ] = False,
    revision: Annotated[
        str | None,
        typer.Option("--revision", "--branch", help="Upload to this branch (created if missing) instead of main"),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="A Hub token that may write to the repo; by default the one of `hf auth login` or $HF_TOKEN"),
    ] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="The commit message")] = None,
) -> None:
    """Upload a prompt (manifest, weights, sample grid, and a model card made from its manifest) to the Hugging Face Hub."""
    from promptgen.artifacts.hub import push_prompt

    result = push_prompt(prompt, repo_id, private=private, revision=revision, token=token, message=message)
    out_console.print(
        f"[green]✓[/green] {len(result.files)} files -> [bold]{printable(result.url)}[/bold]",
        highlight=False,
        soft_wrap=True,
    )
    spec = f"prompt:{result.ref}" if result.revision is None else f"'prompt:\"{result.ref}\"'"
    out_console.print(
        f"  sample it: promptgen sample --gen {printable(spec)} -n 64 -o samples.png", highlight=False, soft_wrap=True
    )
