"""User-facing errors.

Every error a user can cause (a typo in a spec, a missing prompt folder, a path
that cannot be written) is a :class:`PromptgenError`. Its message is one line
that names what was wrong and what to type instead; the CLI prints it and exits
with code 2, never with a traceback. Anything else that escapes is a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# What str.splitlines() breaks at: a message holding one of these would not be one line.
_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


class PromptgenError(Exception):
    """A problem with the user's input, reported as one line (exit code 2).

    A line break inside the message (from a path or a value the user or a file
    gave) is kept as its escape, so the message stays one line whoever built it.

    >>> str(PromptgenError("no folder 'a\\u2028b'; see promptgen list"))
    "no folder 'a\\\\u2028b'; see promptgen list"
    """

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            args = (args[0].translate(_LINE_BREAKS), *args[1:])
        super().__init__(*args)


class SpecError(PromptgenError):
    """A spec string (``--gen`` or ``--energy``) that does not parse or does not fit."""


class SettingsError(SpecError, ValueError):
    """Settings a promptgen model refused when built directly (``TrainConfig(steps=-1)``); ``errors()`` gives
    pydantic's list, for callers that name the option behind the field."""

    def __init__(self, message: str, errors: list | None = None) -> None:
        super().__init__(message)
        self._errors = list(errors or [])

    def errors(self) -> list:
        return self._errors


def first_error(exc: Exception) -> dict:
    """The first of a pydantic ``ValidationError``'s errors, with a :class:`SettingsError` that a nested settings
    model (a manifest's ``flow``, a run's ``train``) raised unwrapped: its own first error, at its full location
    (``flow.mask_seed``, not ``flow``)."""
    err = exc.errors()[0]  # type: ignore[attr-defined]
    inner = (err.get("ctx") or {}).get("error")
    if isinstance(inner, SettingsError) and inner.errors():
        nested = inner.errors()[0]
        return {**nested, "loc": (*err["loc"], *nested["loc"])}
    return err


class UnknownNameError(PromptgenError):
    """A generator, energy, classifier, attribute or class name that nothing provides."""


class ArtifactError(PromptgenError):
    """A prompt folder that is missing, damaged, or from a newer promptgen, or that does not fit its generator."""


class TrainingDiverged(PromptgenError):
    """Training kept producing non-finite losses or gradients after every rollback."""


def one_line(text: str) -> str:
    """Collapse a (possibly multi-line) message onto one line.

    >>> one_line("first\\n  second\\r\\n\\u2028third")
    'first second third'
    """
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def inline(text: object) -> str:
    """``text`` as it is if it prints as one plain line, else its ``repr`` (for paths and names inside messages).

    >>> inline("runs/three"), inline("runs/a\\nb")
    ('runs/three', "'runs/a\\\\nb'")
    """
    text = str(text)
    return text if text.isprintable() else repr(text)


def printable(text: object) -> str:
    """``text`` safe to print on a rich console: markup escaped, control characters shown as escapes.

    Names and messages can come from a stranger's manifest or a plugin; printed
    raw, ``[/x]`` would crash rich's markup parser and an ANSI escape sequence
    would drive the user's terminal.

    >>> printable("a [/red] b\\x1b[2J")
    'a \\\\[/red] b\\\\x1b[2J'
    """
    from rich.markup import escape

    return escape("".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text)))


def closest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known names closest to ``name`` (best first), for "did you mean" hints."""
    known = sorted(set(known))
    hits = difflib.get_close_matches(name, known, n=n, cutoff=0.65)  # 0.5 offered 'slant' for 'stylegan'
    if not hits:
        hits = [k for k in known if name.lower() in k.lower() or k.lower() in name.lower()][:n]
    return hits


def unknown_name(kind: str, name: str, known: Iterable[str], hint: str = "") -> UnknownNameError:
    """Build the one-line error for an unknown ``kind`` called ``name``."""
    known = sorted(set(known))
    near = closest(name, known)
    if near:
        tail = "did you mean " + " or ".join(repr(k) for k in near) + "?"
    elif len(known) > 12:
        tail = f"no installed name is close to it ({len(known)} are installed)"
    elif known:
        tail = "known: " + ", ".join(known)
    else:
        tail = "none is installed"
    msg = f"unknown {kind} {name!r}; {tail}"
    if hint:
        msg += f" ({hint})"
    return UnknownNameError(msg)
