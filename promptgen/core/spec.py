"""Spec strings: how a user names a generator or an energy on the command line.

One grammar serves ``--gen`` and ``--energy`` (and the Python API)::

    spec     ::= name [ ":" arg ( "," arg )* ] [ "@" weight ]
    name     ::= letter or digit, then letters, digits, "_", "-", "."
    arg      ::= [ key ( "=" | "!=" ) ] value
    key      ::= letter or "_", then letters, digits, "_", "-", "."
    value    ::= one or more pieces, joined as typed
    piece    ::= quoted | bare
    quoted   ::= '"' text '"'   or   "'" text "'"    (backslash escapes the quote)
    bare     ::= any characters but  , @ = " '  and "!="  (spaces inside are kept,
                 spaces around are dropped)
    weight   ::= a number from 0 to 1e6, such as 600, 2.5 or 1e2

Examples::

    mnist
    stylegan2:path=ffhq.pkl,psi=0.7
    classifier:digit=3
    classifier:digit!=1@50
    clip:"a smiling face"@600
    debias:gender,age

Without ``@weight`` an energy uses its own default weight. Quote a value that
contains one of ``, @ = " '``. The shell removes one level of quotes, so
``--energy clip:"a smiling face"@600`` reaches promptgen as
``clip:a smiling face@600``, which parses the same.

>>> s = parse_spec('classifier:digit!=1@50')
>>> s.name, s.args[0].key, s.args[0].op, s.args[0].value, s.weight
('classifier', 'digit', '!=', '1', 50.0)
>>> parse_spec('clip:"a, b"@600').format()
'clip:"a, b"@600'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from promptgen.core.errors import SpecError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")
# A key may join attribute names with * (a joint target: debias:digit*thickness=...).
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*(\*[A-Za-z_][A-Za-z0-9_.\-]*)*\Z")
_OPS = ("=", "!=")


@dataclass(frozen=True)
class Piece:
    """A run of characters in a value, and whether the user quoted it."""

    text: str
    quoted: bool = False


@dataclass(frozen=True)
class Arg:
    """One argument of a spec: ``key=value``, ``key!=value`` or a bare ``value``."""

    pieces: tuple[Piece, ...]
    key: str | None = None
    op: str = "="

    @property
    def value(self) -> str:
        """The value with quotes removed (pieces joined as typed)."""
        return "".join(p.text for p in self.pieces)

    @property
    def raw(self) -> str:
        """The value as it would be typed, quotes included (for energies with sub-syntax)."""
        return "".join(_format_piece(p) for p in self.pieces)

    def format(self) -> str:
        head = "" if self.key is None else f"{self.key}{self.op}"
        return head + self.raw


@dataclass(frozen=True)
class Spec:
    """A parsed spec string: a registered name, its arguments, an optional weight."""

    name: str
    args: tuple[Arg, ...] = field(default_factory=tuple)
    weight: float | None = None

    @property
    def positional(self) -> list[str]:
        """Values given without a key, in order."""
        return [a.value for a in self.args if a.key is None]

    @property
    def keyed(self) -> list[Arg]:
        """Arguments given as ``key=value`` or ``key!=value``, in order."""
        return [a for a in self.args if a.key is not None]

    def options(self) -> dict[str, str]:
        """``key=value`` arguments as a dict; a repeated key or a ``!=`` is an error."""
        out: dict[str, str] = {}
        for a in self.keyed:
            assert a.key is not None  # keyed arguments have one
            if a.op != "=":
                raise SpecError(f"{self.format()!r}: {a.key}!= is not an option of {self.name!r}; use {a.key}=VALUE")
            if a.key in out:
                raise SpecError(f"{self.format()!r}: option {a.key!r} is given twice; keep one")
            out[a.key] = a.value
        return out

    def format(self) -> str:
        """The canonical text of this spec; ``parse_spec(s.format()) == s``."""
        text = self.name
        if self.args:
            text += ":" + ",".join(a.format() for a in self.args)
        if self.weight is not None:
            text += "@" + _format_weight(self.weight)
        return text

    def with_weight(self, weight: float | None) -> Spec:
        return Spec(self.name, self.args, weight)

    def __str__(self) -> str:
        return self.format()


def _format_weight(w: float) -> str:
    return str(int(w)) if float(w).is_integer() and abs(w) < 1e15 else repr(float(w))


def _format_piece(p: Piece) -> str:
    if not p.quoted:
        return p.text
    return '"' + p.text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fail(text: str, pos: int, what: str) -> SpecError:
    return SpecError(f"malformed spec {text!r} at character {pos + 1}: {what}")


def parse_spec(text: str) -> Spec:
    """Parse one spec string by the grammar above.

    Raises :class:`SpecError` naming the character where parsing broke and what
    was expected there.
    """
    if not isinstance(text, str):
        raise SpecError(f"a spec must be text, not {type(text).__name__}")
    n = len(text)
    i = 0
    # name
    while i < n and text[i] not in ':@"\',=':
        i += 1
    name = text[:i].strip()
    if not name:
        raise _fail(text, 0, "expected a name first, such as 'mnist' or 'classifier:digit=3'")
    if not _NAME.match(name):
        bad = next((j for j, c in enumerate(name) if not (c.isalnum() or c in "_-.")), 0)
        raise _fail(text, bad, f"{name[bad]!r} cannot appear in a name; names use letters, digits, '_', '-' and '.'")
    args: list[Arg] = []
    weight: float | None = None
    if i < n and text[i] not in ":@":
        raise _fail(text, i, f"unexpected {text[i]!r} after the name; expected ':' before arguments")
    if i < n and text[i] == ":":
        i += 1
        while True:
            arg, i = _parse_arg(text, i)
            args.append(arg)
            if i < n and text[i] == ",":
                i += 1
                continue
            break
    if i < n and text[i] == "@":
        weight = _parse_weight(text, i + 1)
        i = n
    if i < n:
        raise _fail(text, i, f"unexpected {text[i]!r}")
    return Spec(name, tuple(args), weight)


def _parse_arg(text: str, i: int) -> tuple[Arg, int]:
    start = i
    pieces, i = _parse_value(text, i)
    key: str | None = None
    op = "="
    if i < len(text) and (text[i] == "=" or text.startswith("!=", i)):
        op = "!=" if text[i] == "!" else "="
        key = "".join(p.text for p in pieces).strip()
        if not key or any(p.quoted for p in pieces) or not _KEY.match(key):
            raise _fail(text, start, f"{key!r} is not a valid option name before {op!r}; quote the value if it contains '='")
        i += len(op)
        pieces, i = _parse_value(text, i)
        if not pieces:
            raise _fail(text, i, f"expected a value after '{key}{op}'")
    elif not pieces:
        what = "an argument" if start == 0 or text[start - 1] in ":," else "a value"
        raise _fail(text, i, f"expected {what} here (an empty argument?)")
    return Arg(tuple(pieces), key, op), i


def _parse_value(text: str, i: int) -> tuple[list[Piece], int]:
    n = len(text)
    pieces: list[Piece] = []
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            buf = []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise _fail(text, i, f"the quote {c} opened here is never closed")
            pieces.append(Piece("".join(buf), True))
            i = j + 1
        elif c in ",@=" or text.startswith("!=", i):
            break
        else:
            j = i
            while j < n and text[j] not in ",@=\"'" and not text.startswith("!=", j):
                j += 1
            pieces.append(Piece(text[i:j], False))
            i = j
    # Spaces around a value are not part of it (unless quoted).
    if pieces and not pieces[0].quoted:
        pieces[0] = Piece(pieces[0].text.lstrip(), False)
    if pieces and not pieces[-1].quoted:
        pieces[-1] = Piece(pieces[-1].text.rstrip(), False)
    pieces = [p for p in pieces if p.quoted or p.text]
    return pieces, i


def _parse_weight(text: str, i: int) -> float:
    raw = text[i:].strip()
    if not raw:
        raise _fail(text, i, "expected a weight after '@', such as @100")
    try:
        w = float(raw)
    except ValueError:
        raise _fail(text, i, f"weight {raw!r} is not a number; write it like @100 or @2.5") from None
    if not math.isfinite(w):
        raise _fail(text, i, f"weight {raw!r} must be a finite number, such as @100")
    if w < 0:
        raise _fail(text, i, f"weight {raw!r} is negative; weights are >= 0 (to ask for the opposite, use the energy's own negation, e.g. digit!=1)")
    if w > MAX_WEIGHT:
        raise _fail(text, i, f"weight {raw!r} is above {MAX_WEIGHT:g}; every training step would overflow (use at most @{MAX_WEIGHT:g})")
    return w


#: Largest energy weight: far above any useful one (the built-in defaults are 30 to 600); beyond it
#: the energies overflow float32 and every training step would be skipped.
MAX_WEIGHT = 1e6


def expect_options(spec: Spec, allowed: Mapping[str, str], positional: int = 0) -> dict[str, str]:
    """The spec's ``key=value`` options, refusing unknown keys and extra positional values.

    Args:
        allowed: option name -> one-line description (named in the error).
        positional: how many bare values the spec may have.
    """
    from promptgen.core.errors import closest

    opts = spec.options()
    for key in opts:
        if key not in allowed:
            near = closest(key, allowed)
            known = ", ".join(sorted(allowed)) or "none"
            hint = f"did you mean {near[0]!r}?" if near else f"{spec.name!r} takes: {known}"
            raise SpecError(f"{spec.format()!r}: unknown option {key!r}; {hint}")
    if len(spec.positional) > positional:
        extra = spec.positional[positional]
        raise SpecError(f"{spec.format()!r}: unexpected value {extra!r}; {spec.name!r} takes options {', '.join(sorted(allowed)) or 'none'} as key=value")
    return opts


def absolute_paths(spec: str, keys: tuple[str, ...] = ("path",)) -> str:
    """``spec`` with each ``path=FILE`` (an existing file or folder) made absolute; anything else unchanged.

    ``compose`` stores specs in the manifest; an absolute path still finds the
    file when the prompt is evaluated from another working directory.

    >>> import os, tempfile
    >>> d = tempfile.mkdtemp(); open(os.path.join(d, "w.pt"), "w").close(); old = os.getcwd(); os.chdir(d)
    >>> absolute_paths("classifier:gender=female,path=w.pt@30") == f"classifier:gender=female,path={os.path.realpath(d)}/w.pt@30"
    True
    >>> absolute_paths("classifier:digit=3"), absolute_paths("x:path=missing.pt")
    ('classifier:digit=3', 'x:path=missing.pt')
    >>> os.chdir(old)
    """
    from pathlib import Path

    parsed = parse_spec(spec)
    changed = False
    args = []
    for a in parsed.args:
        if a.key in keys and a.op == "=" and Path(a.value).expanduser().exists():
            full = str(Path(a.value).expanduser().resolve())
            if full != a.value:
                a = Arg((Piece(full, quoted=any(c in full for c in ',@="\'')),), a.key, a.op)
                changed = True
        args.append(a)
    return Spec(parsed.name, tuple(args), parsed.weight).format() if changed else spec
