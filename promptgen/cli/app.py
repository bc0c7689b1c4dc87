"""The command group: one-line errors, the consoles, and how a command turns a PromptgenError into exit code 2."""

from __future__ import annotations

import errno
import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

try:  # Typer vendors its own click from 0.22 on
    from typer._click import exceptions as click
except ImportError:  # pragma: no cover - older Typer uses click itself
    from click import exceptions as click  # type: ignore[no-redef]

#: Most images one command takes (-n); memory sets the real limit, checked once the image size is known.
from promptgen.core.errors import PromptgenError, one_line, printable
from promptgen.core.limits import MAX_IMAGES  # noqa: F401 (re-exported for the commands)


def _default(model: type, name: str) -> Any:
    return model.model_fields[name].default

#: click raises this for a bare ``promptgen`` from 8.2 on; older click prints the help itself.
_NO_ARGS_IS_HELP = getattr(click, "NoArgsIsHelpError", ())

#: Set in the environment of the processes ``compose --nproc`` starts (see :func:`_relaunch_with_torchrun`).
RELAUNCHED = "PROMPTGEN_RELAUNCHED"

#: What a failed write to the terminal or a pipe looks like (``> /dev/full``, a closed pipe).
_STREAM_ERRNOS = {errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EBADF}


class OneLineErrors(TyperGroup):
    """The command group: every mistake on the command line is one line on stderr and exit code 2.

    Typer draws a usage mistake (``-n 0``, ``--lr nan``, an unknown option) as a
    multi-line panel; here it is ``error: <what>; see `promptgen CMD --help```.
    An operating-system error that escapes a command (a name too long for the
    file system, a full disk, a full or closed standard output) is one line too.
    """

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        from promptgen.training.distributed import from_env

        if sys.stderr is None:  # started with 2>&-: nowhere to say anything, but nothing must crash on it
            sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (open for the life of the process)
        if sys.stdout is None:  # started with >&- (Python leaves sys.stdout None): one line, before any work
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
            _error("standard output is closed (>&-); send it somewhere instead, e.g. >/dev/null or >out.txt")
            if not standalone_mode:
                return 2
            sys.exit(2)
        tolerant_streams()
        code: Any = 0
        dist = from_env()
        if dist.active and not dist.main and os.environ.get(RELAUNCHED) == "1":
            # A process `compose --nproc` started, not rank 0: rank 0 meets the same mistakes and says
            # them once, so this one exits quietly on a mistake (after a moment, so that torchrun does not
            # stop rank 0 before it has printed). Anything else is not a mistake of the user's: it shows.
            try:
                code = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
            except (click.ClickException, PromptgenError):
                code = 2
            if code == 2:
                time.sleep(2.0)
            if not standalone_mode:
                return code
            sys.exit(code if isinstance(code, int) else 0)
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
            _flush_stdout()
        except _NO_ARGS_IS_HELP as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else "")
            code = 2
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "promptgen"
            _error(f"{one_line(exc.format_message()).rstrip('.')}; see `{where} --help`")
            code = 2
        except click.ClickException as exc:
            _error(one_line(exc.format_message()))
            code = exc.exit_code
        except typer.Abort:
            _error("aborted")
            code = 1
        except OSError as exc:
            code = _os_error(exc)
        except MemoryError:
            _error("out of memory; ask for fewer images (-n) or a smaller --batch-size")
            code = 2
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


def tolerant_streams() -> None:
    """Let text the terminal's encoding cannot show (``PYTHONIOENCODING=ascii``) print as escapes."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a closed or unusual stream: leave it
                pass


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except (OSError, ValueError) as exc:
        raise OSError(getattr(exc, "errno", errno.EIO), "cannot write to standard output") from exc


def _error(message: str) -> None:
    try:
        err_console.print(f"[bold red]error:[/bold red] {printable(message)}", highlight=False, soft_wrap=True)
    except OSError:  # stderr itself is gone: nothing left to tell
        pass


def _os_error(exc: OSError) -> int:
    """One line for an operating-system error that escaped a command; the exit code."""
    if exc.filename is None and exc.errno in _STREAM_ERRNOS:
        # Standard output failed (a full disk, /dev/full, a closed pipe): say so once, and keep
        # Python from failing again when it flushes stdout on the way out.
        with open(os.devnull, "w") as devnull:
            try:
                os.dup2(devnull.fileno(), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
        _error(f"cannot write to standard output: {exc.strerror or 'write failed'}; write to a file or a terminal instead")
        return 2
    name = f" {str(exc.filename)!r}" if exc.filename is not None else ""
    _error(f"cannot use{name}: {exc.strerror or type(exc).__name__}; choose another path or check its permissions")
    return 2


app = typer.Typer(
    cls=OneLineErrors,
    name="promptgen",
    help="Distributional control of pretrained generators: train a prompt, then sample it in one pass.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out_console = Console()
err_console = Console(stderr=True)


def print_verdict(lines: list[str], met: bool | None, n: int, console: Console = out_console) -> None:
    """A verdict (:func:`promptgen.composing.watch.verdict`): the figures, then a green tick or each red "not met"."""
    from rich.markup import escape

    from promptgen.core.errors import printable

    for line in lines:
        if not line.startswith("not met"):
            console.print(f"  {escape(printable(line))}", soft_wrap=True, highlight=False)
    if met:
        console.print(f"[green]✓ target met[/green] (judged on {n} samples)", highlight=False)
    for line in lines:
        if line.startswith("not met"):
            console.print(f"[red]✗ {escape(printable(line))}[/red]", soft_wrap=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn a PromptgenError into one red line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PromptgenError as exc:
            from promptgen.training.distributed import speaks

            # Under torchrun every process meets the same mistake: one of them says it.
            if speaks():
                # printable: the message may quote a stranger's manifest or a plugin's text.
                err_console.print(f"[bold red]error:[/bold red] {printable(exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]
