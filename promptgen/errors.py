"""User-facing errors.

Every error a user can cause (a typo in a spec, a missing prompt folder, a path
that cannot be written) is a :class:`PromptgenError`. Its message is one line
that names what was wrong and what to type instead; the CLI prints it and exits
with code 2, never with a traceback. Anything else that escapes is a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PromptgenError(Exception):
    """A problem with the user's input, reported as one line (exit code 2)."""


class SpecError(PromptgenError):
    """A spec string (``--gen`` or ``--energy``) that does not parse or does not fit."""


class UnknownNameError(PromptgenError):
    """A generator, energy, classifier, attribute or class name that nothing provides."""


class ArtifactError(PromptgenError):
    """A prompt folder that is missing, damaged, or from a newer promptgen."""


def closest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known names closest to ``name`` (best first), for "did you mean" hints."""
    known = sorted(set(known))
    hits = difflib.get_close_matches(name, known, n=n, cutoff=0.5)
    if not hits:
        hits = [k for k in known if name.lower() in k.lower() or k.lower() in name.lower()][:n]
    return hits


def unknown_name(kind: str, name: str, known: Iterable[str], hint: str = "") -> UnknownNameError:
    """Build the one-line error for an unknown ``kind`` called ``name``."""
    known = sorted(set(known))
    near = closest(name, known)
    if near:
        tail = "did you mean " + " or ".join(repr(k) for k in near) + "?"
    elif known:
        tail = "known: " + ", ".join(known)
    else:
        tail = "none is installed"
    msg = f"unknown {kind} {name!r}; {tail}"
    if hint:
        msg += f" ({hint})"
    return UnknownNameError(msg)
