"""One check of the public Python API's arguments, where each call enters.

``promptgen.sample(prompt, seed="x")`` used to fail deep inside torch with a
``TypeError``; ``promptgen.sweep(prompt, 5)`` with an ``AttributeError``. Each
public function is wrapped by :func:`public`, which checks every argument
against the function's annotations (with :mod:`pydantic`, whose constraints
the annotations carry: ``Annotated[int, Field(ge=1)]``) before the function
runs, and raises a one-line :class:`~promptgen.core.errors.SpecError` naming
the function, the argument, what was wrong and an example of what to pass:

>>> from typing import Annotated
>>> from pydantic import Field
>>> @public
... def draw(n: Annotated[int, Field(ge=1, description="e.g. n=64")] = 64) -> int:
...     return n
>>> draw(n=8)
8
>>> draw(n=0)
Traceback (most recent call last):
  ...
promptgen.core.errors.SpecError: promptgen.draw: n=0: input should be greater than or equal to 1; e.g. n=64

Values are converted as pydantic converts them (``n="8"`` is 8, a dict given
for a :class:`~promptgen.training.config.TrainConfig` is validated into one);
a value already of the annotated type is passed as it is. Errors raised inside
the function are its own and pass through.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar, cast

from pydantic import ConfigDict, TypeAdapter, ValidationError

from promptgen.core.errors import SpecError, one_line

F = TypeVar("F", bound=Callable[..., Any])

_CONFIG = ConfigDict(arbitrary_types_allowed=True)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _hint(annotation: Any) -> str:
    """The example a parameter's ``Field(description=...)`` gives (``e.g. n=64``), if any."""
    for meta in getattr(annotation, "__metadata__", ()):
        description = getattr(meta, "description", None)
        if description:
            return f"; {description}"
    return ""


def _readable(annotation: Any) -> str:
    """``str | pathlib.Path | Generator`` as ``a str, a Path or a Generator``."""
    while getattr(annotation, "__metadata__", None) is not None:  # Annotated[X, ...]: X
        annotation = annotation.__origin__
    args = [a for a in (typing.get_args(annotation) or (annotation,)) if a is not type(None)]
    names = [getattr(a, "__name__", str(a)) for a in args]
    return ", ".join(f"a {n}" for n in names[:-1]) + (" or " if len(names) > 1 else "") + f"a {names[-1]}"


def _why(exc: ValidationError, annotation: Any, value: Any) -> str:
    errors = exc.errors()
    if len(errors) > 1 and all(len(e["loc"]) == 1 and isinstance(e["loc"][0], str) for e in errors) and len({e["loc"][0] for e in errors}) == len(errors):
        return f"expected {_readable(annotation)}, got {type(value).__name__}"  # every member of a union refused it
    error = errors[0]
    where = "".join(f"[{p}]" if isinstance(p, int) else (f"[{p!r}]" if not p.isidentifier() else f".{p}") for p in error["loc"])
    return (f"{where.lstrip('.')}: " if where else "") + one_line(error["msg"]).rstrip(".").lower()


def public(fn: F) -> F:
    """Wrap ``fn`` so that its arguments are checked against its annotations first (see the module's notes)."""
    signature = inspect.signature(fn)
    adapters: dict[str, tuple[TypeAdapter, Any]] = {}

    def build() -> None:
        if adapters:
            return
        namespace = dict(fn.__globals__)
        for name, parameter in signature.parameters.items():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD) or parameter.annotation is parameter.empty:
                continue
            annotation = parameter.annotation
            if isinstance(annotation, str):
                annotation = eval(annotation, namespace)
            adapters[name] = (TypeAdapter(annotation, config=_CONFIG), annotation)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        build()
        where = f"promptgen.{fn.__name__}"
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise SpecError(f"{where}: {one_line(str(exc))}; see help({where})") from None
        for name, value in list(bound.arguments.items()):
            if name not in adapters:
                continue
            adapter, annotation = adapters[name]
            try:
                bound.arguments[name] = adapter.validate_python(value)
            except ValidationError as exc:
                raise SpecError(f"{where}: {name}={_shown(value)}: {_why(exc, annotation, value)}{_hint(annotation)}") from None
        return fn(*bound.args, **bound.kwargs)

    wrapper.__wrapped__ = fn
    return cast(F, wrapper)


__all__ = ["public"]
