"""Typed options: what a plugin entry accepts after the ``:`` of its spec, as a pydantic model.

A plugin declares its options once, as a subclass of :class:`Options`: a type,
a default, a range and a one-line help for each. The core checks every spec
against that model before the plugin's ``build`` is called and writes the
one-line error itself, so no plugin parses numbers or choices by hand::

    class StyleGANOptions(Options):
        path: str | None = option(None, help="a local network-snapshot .pkl")
        psi: float = option(1.0, ge=0, le=1, help="truncation ψ (1: none)")

>>> class Toy(Options):
...     psi: float = option(1.0, ge=0, le=1, help="truncation")
...     mode: Literal["mean", "sample"] = option("mean", help="decoder output")
>>> from promptgen.core.spec import parse_spec
>>> parse_options(parse_spec("toy:psi=0.7"), Toy).options.psi
0.7
>>> try:
...     parse_options(parse_spec("toy:psi=2"), Toy)
... except SpecError as e:
...     print(e)
'toy:psi=2': psi=2 must be at most 1; psi: truncation (a number from 0 to 1, default 1)
>>> try:
...     parse_options(parse_spec("toy:mode=mode"), Toy)
... except SpecError as e:
...     print(e)
'toy:mode=mode': mode='mode' must be one of 'mean', 'sample'; mode: decoder output (one of mean, sample, default mean)
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

import annotated_types
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from promptgen.core.errors import SpecError, closest, one_line
from promptgen.core.spec import Arg, Spec

__all__ = ["NoOptions", "Options", "ParsedOptions", "describe_option", "option", "option_names", "options_from_mapping", "parse_options"]


class Options(BaseModel):
    """Base class of a plugin entry's options.

    Unknown options are refused, numbers must be finite, and a parsed set is
    frozen. Give every field a help text with :func:`option`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NoOptions(Options):
    """An entry that takes no options."""


def option(default: Any = ..., *, help: str, example: str | None = None, **constraints: Any) -> Any:
    """A field of an :class:`Options` model: ``default``, a one-line ``help``, and pydantic constraints
    (``ge``, ``le``, ``gt``, ``lt``, ``min_length``...). ``example``: a value shown by ``promptgen list NAME``."""
    extra: dict[str, Any] | None = {"example": example} if example is not None else None
    return Field(default, description=help, json_schema_extra=extra, **constraints)


@dataclass(frozen=True)
class ParsedOptions:
    """A spec checked against an entry's options.

    Attributes:
        options: the validated options (an instance of the entry's model).
        rest: the arguments that are not options, in order: bare values and,
            for an entry that takes free arguments, ``key=value``/``key!=value``
            pairs that name no option (e.g. ``digit=3``).
    """

    options: Options
    rest: tuple[Arg, ...] = ()


def parse_options(
    spec: Spec,
    model: type[Options],
    *,
    positional: str | None = None,
    free: bool = False,
) -> ParsedOptions:
    """Check ``spec``'s arguments against ``model``; the one-line error on any mistake.

    Args:
        positional: the option that a bare value fills (``prompt:runs/three``
            means ``prompt:path=runs/three``); None: bare values are refused
            unless ``free``.
        free: the entry also takes arguments that are not options (an energy's
            ``digit=3``); they are returned in ``rest`` for its ``build``.
    """
    fields = option_names(model)
    given: dict[str, str] = {}
    rest: list[Arg] = []
    for arg in spec.args:
        key = arg.key
        if key is None:
            if positional is not None and positional not in given:
                given[positional] = arg.value
                continue
            if free:
                rest.append(arg)
                continue
            takes = _takes(model)
            raise SpecError(f"{spec.format()!r}: unexpected value {arg.value!r}; {spec.name!r} takes {takes}")
        if key not in fields:
            if free:
                rest.append(arg)
                continue
            near = closest(key, fields)
            hint = f"did you mean {near[0]!r}?" if near else f"{spec.name!r} takes {_takes(model)}"
            raise SpecError(f"{spec.format()!r}: unknown option {key!r}; {hint}")
        if arg.op != "=":
            raise SpecError(f"{spec.format()!r}: {key}!= is not how options are given; write {key}=VALUE")
        if key in given:
            raise SpecError(f"{spec.format()!r}: option {key!r} is given twice; keep one")
        given[key] = arg.value
    for key, text in given.items():  # a choice among numbers (Literal[8, 16]) is typed as text
        annotation = _plain(model.model_fields[fields[key]].annotation)
        if typing.get_origin(annotation) is Literal:
            given[key] = next((c for c in typing.get_args(annotation) if str(c) == text), text)
    try:
        parsed = model.model_validate(given)
    except pydantic.ValidationError as exc:
        raise SpecError(validation_message(spec, model, exc, given)) from None
    except (TypeError, ValueError) as exc:  # a validator of the plugin's that raised something else
        raise SpecError(f"{spec.format()!r}: {exc}") from None
    return ParsedOptions(parsed, tuple(rest))


def option_names(model: type[Options]) -> dict[str, str]:
    """The options as users type them (a field's alias, e.g. ``class``, else its name) -> the field's name."""
    return {(info.alias or name): name for name, info in model.model_fields.items()}


def _field(model: type[Options], name: str) -> str:
    """The field of the option ``name`` (typed as users type it, or the field's own name)."""
    return option_names(model).get(name, name)


def _typed(model: type[Options], field: str) -> str:
    """How users type the option of ``field``."""
    info = model.model_fields.get(field)
    return (info.alias or field) if info is not None else field


def _takes(model: type[Options]) -> str:
    names = list(option_names(model))
    return "options " + ", ".join(f"{n}=..." for n in names) if names else "no options"


_PHRASES = {
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "greater_than": "must be greater than {gt}",
    "less_than": "must be less than {lt}",
    "finite_number": "must be a finite number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "string_too_short": "is too short",
    "string_too_long": "is too long",
}


def validation_message(spec: Spec, model: type[Options], exc: pydantic.ValidationError, given: Mapping[str, str]) -> str:
    """One line from the first problem pydantic found: what was wrong, and what to type instead."""
    error = exc.errors(include_url=False)[0]
    loc = error.get("loc") or ()
    name = _typed(model, _field(model, str(loc[0]))) if loc else ""
    field = _field(model, name)
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind == "literal_error":
        choices = typing.get_args(_plain(model.model_fields[field].annotation)) if field in model.model_fields else ()
        what = "must be one of " + ", ".join(repr(c) for c in choices) if choices else "is not one of the choices"
    elif kind == "missing":
        return f"{spec.format()!r}: option {name}= is required; {describe_option(model, name)}"
    elif kind in _PHRASES:
        what = _PHRASES[kind].format(**{k: _number(v) for k, v in ctx.items()})
    else:
        what = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
    if name in given:
        shown = given[name] if _is_number_like(given[name]) else repr(given[name])
        head = f"{name}={shown} {what}"
    else:
        head = what
    tail = f"; {describe_option(model, name)}" if field in model.model_fields else ""
    return f"{spec.format()!r}: {head}{tail}"


def _is_number_like(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value


def _plain(annotation: Any) -> Any:
    """``X`` for ``X | None`` (and ``Optional[X]``)."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def option_type(model: type[Options], name: str) -> str:
    """A short phrase for the kind of value an option takes: ``a number from 0 to 1``, ``one of mean, sample``."""
    info = model.model_fields[_field(model, name)]
    annotation = _plain(info.annotation)
    bounds = {}
    for m in info.metadata:
        for key in ("ge", "gt", "le", "lt"):
            if isinstance(m, getattr(annotated_types, key.capitalize())):
                bounds[key] = _number(getattr(m, key))
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(c) for c in typing.get_args(annotation))
    if annotation is bool:
        return "true or false"
    noun = {int: "a whole number", float: "a number"}.get(annotation)
    if noun is None:
        return "text"
    lo = bounds.get("ge", bounds.get("gt"))
    hi = bounds.get("le", bounds.get("lt"))
    if lo is not None and hi is not None and "ge" in bounds and "le" in bounds:
        return f"{noun} from {lo} to {hi}"
    parts = []
    if "ge" in bounds:
        parts.append(f">= {bounds['ge']}")
    if "gt" in bounds:
        parts.append(f"> {bounds['gt']}")
    if "le" in bounds:
        parts.append(f"<= {bounds['le']}")
    if "lt" in bounds:
        parts.append(f"< {bounds['lt']}")
    return noun + (" " + " and ".join(parts) if parts else "")


def option_default(model: type[Options], name: str) -> str | None:
    """The default as a user would type it, or None for a required option (or one without a default)."""
    info = model.model_fields[_field(model, name)]
    if info.is_required():
        return None
    value = info.get_default(call_default_factory=True)
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(_number(value)) if math.isfinite(value) else str(value)
    return str(value)


def describe_option(model: type[Options], name: str) -> str:
    """``name: help (kind, default D)`` for one option, as errors and ``promptgen list NAME`` show it."""
    info = model.model_fields[_field(model, name)]
    name = _typed(model, _field(model, name))
    default = option_default(model, name)
    extra = option_type(model, name) + (f", default {default}" if default is not None else "")
    return f"{name}: {info.description or 'no description'} ({extra})"


def option_example(model: type[Options], name: str) -> str | None:
    """The example value a plugin gave for an option (``option(..., example=...)``), if any."""
    extra = model.model_fields[_field(model, name)].json_schema_extra
    if isinstance(extra, dict) and extra.get("example") is not None:
        return str(extra["example"])
    return None


def options_from_mapping(name: str, described: Mapping[str, str]) -> type[Options]:
    """An :class:`Options` model of text options from promptgen 0.1's ``{option: description}`` mapping.

    Every option is optional text (None when absent), so a 0.1 plugin's own
    parsing still sees strings.
    """
    fields: dict[str, Any] = {
        key: (str | None, Field(None, description=str(text))) for key, text in described.items() if key.isidentifier()
    }
    return pydantic.create_model(f"{name.title().replace('-', '')}Options", __base__=Options, **fields)


def check_options_model(model: object) -> type[Options]:
    """``model`` if it is a usable options model (an :class:`Options` subclass whose fields all have help), else an error.

    Checked once per model class (a plugin may share one model among many entries).

    Raises:
        TypeError: naming what is wrong; the registry reports it against the plugin.
    """
    if not (isinstance(model, type) and issubclass(model, Options)):
        raise TypeError(f"options must be a subclass of promptgen.plugin.Options, not {model!r}")
    if model in _CHECKED:
        return model
    for name, info in model.model_fields.items():
        if not info.description:
            raise TypeError(f"option {name!r} of {model.__name__} has no help; declare it with option(..., help='...')")
    if not any(info.is_required() for info in model.model_fields.values()):
        try:
            model.model_validate({})
        except Exception as exc:  # noqa: BLE001 - a model whose defaults cannot even be built
            raise TypeError(f"{model.__name__}'s defaults do not validate: {one_line(str(exc))}") from None
    _CHECKED.add(model)
    return model


_CHECKED: set[type[Options]] = set()
