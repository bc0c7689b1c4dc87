"""The ``promptgen`` command: one module per group of commands, registered on :data:`app`.

``python -m promptgen`` and the ``promptgen`` script run :func:`main`.
"""

from __future__ import annotations

from promptgen.cli import hub, judging, listing, sampling, train, web  # noqa: F401 - each registers its commands on app
from promptgen.cli.app import OneLineErrors, app, err_console, out_console, tolerant_streams, user_errors
from promptgen.cli.launch import launch_torchrun

__all__ = ["OneLineErrors", "app", "err_console", "launch_torchrun", "main", "out_console", "tolerant_streams", "user_errors"]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
