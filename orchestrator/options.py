"""Workflow options to typed config: one converter with one set of rules for every workflow.

A run's options arrive as JSON values from the SDK or as strings from the command line
(``--set max_probe_fraction=0``). :func:`config_from_options` builds a config dataclass from
them, typing each value by the field's annotation:

- ``bool``: ``True``/``False``, or one of ``true false 1 0 yes no on off`` (any case); the
  string ``"false"`` is False, never truthy; anything else is an error.
- ``int``: an int, an integral float, or a string of one (never a bool).
- ``float``: a number or a numeric string (never a bool); NaN and infinities are refused.
- ``str``: a string. ``X | None``: None, or an ``X``. ``Literal[...]``: one of the values.
- a nested config dataclass: a mapping, converted by the same rules.
- ``tuple``/``list`` of ``X``: a list (or a comma-separated string) of ``X``.

A value that does not fit, and with ``strict=True`` an unknown key, is a
:class:`~orchestrator.errors.BadInputError` that names the option and what it expects. A
``ValueError`` from the dataclass's own validation becomes one too.

A workflow declares the options it accepts (:func:`declared_options`, from its config dataclasses
and any names it reads otherwise); :func:`check_option_names` refuses a key it does not declare,
with the closest name, and :func:`parse_option_texts` types ``key=value`` texts of the command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin

from orchestrator.errors import BadInputError

__all__ = [
    "NO_DEFAULT",
    "RUNTIME_OPTIONS",
    "OptionField",
    "check_option_names",
    "config_from_options",
    "declared_options",
    "option_value",
    "parse_option_texts",
]

C = TypeVar("C")

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()
"""The default of an option that has none to show (declared by name and type only)."""

RUNTIME_OPTIONS: Mapping[str, Any] = {"recursion_limit": int}
"""Keys of a run's options the runtime itself reads: accepted for every workflow."""


@dataclasses.dataclass(frozen=True)
class OptionField:
    """One option a workflow accepts."""

    name: str
    kind: Any
    """The type its value is converted to (by :func:`option_value`)."""
    default: Any = NO_DEFAULT
    """Its value when not given; :data:`NO_DEFAULT` when the workflow decides it."""


class _Mismatch(Exception):
    def __init__(self, expected: str) -> None:
        self.expected = expected


def check_ranges(config: Any, **bounds: tuple[float | None, float | None]) -> None:
    """Raise ValueError for the first field of ``config`` outside its ``(low, high)`` bounds
    (inclusive; None: unbounded; a field that is None is unset and passes), for a config
    dataclass's ``__post_init__``: through :func:`config_from_options` it is a BadInputError
    naming the option."""
    for name, (low, high) in bounds.items():
        value = getattr(config, name)
        if value is None:
            continue
        if (low is not None and value < low) or (high is not None and value > high):
            span = f">= {low}" if high is None else f"<= {high}" if low is None else f"in [{low}, {high}]"
            raise ValueError(f"{name} must be {span}, got {value!r}")


def config_from_options(cls: type[C], options: Mapping[str, Any], *, what: str = "option",
                        strict: bool = False, base: C | None = None) -> C:
    """``cls`` (a dataclass) from the keys of ``options`` that are its fields.

    ``base`` supplies the values of fields ``options`` does not name (default: the dataclass's
    defaults). With ``strict``, keys that are not fields are an error; otherwise they are
    ignored (a run's options also carry runtime keys such as ``tools``).
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    if strict and (unknown := sorted(set(options) - set(fields))):
        raise BadInputError(f"{what} {', '.join(unknown)}", f"one of {', '.join(sorted(fields))}", "unknown option")
    values: dict[str, Any] = {}
    for name in fields:
        if name not in options:
            continue
        try:
            values[name] = option_value(hints[name], options[name], what=f"{what} {name}")
        except _Mismatch as exc:
            raise BadInputError(f"{what} {name}", exc.expected, f"got {options[name]!r}") from None
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)  # type: ignore[type-var]
    except (TypeError, ValueError) as exc:
        if isinstance(exc, BadInputError):
            raise
        raise BadInputError(what, f"valid values for {cls.__name__}", str(exc)) from None


def option_value(kind: Any, value: Any, *, what: str = "option") -> Any:
    """``value`` converted to the type ``kind`` by the rules of this module."""
    origin = get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        members = get_args(kind)
        if value is None and type(None) in members:
            return None
        expected = []
        for member in (m for m in members if m is not type(None)):
            try:
                return option_value(member, value, what=what)
            except _Mismatch as exc:
                expected.append(exc.expected)
        raise _Mismatch(" or ".join(expected) + (" or null" if type(None) in members else ""))
    if origin is Literal:
        choices = get_args(kind)
        if value in choices:
            return value
        raise _Mismatch("one of " + ", ".join(repr(c) for c in choices))
    if origin in (tuple, list):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise _Mismatch("a list")
        args = [a for a in get_args(kind) if a is not Ellipsis]
        item_kind = args[0] if args else Any
        converted = [option_value(item_kind, v.strip() if isinstance(v, str) else v, what=what) for v in items]
        return tuple(converted) if origin is tuple else converted
    if kind is Any:
        return value
    if dataclasses.is_dataclass(kind):
        if isinstance(value, kind):  # type: ignore[arg-type]
            return value
        if not isinstance(value, Mapping):
            raise _Mismatch(f"a mapping of {kind.__name__} options")  # type: ignore[union-attr]
        return config_from_options(kind, value, what=what, strict=True)  # type: ignore[arg-type]
    if kind is bool:
        return _as_bool(value)
    if kind is int:
        return _as_int(value)
    if kind is float:
        return _as_float(value)
    if kind is str:
        if isinstance(value, str):
            return value
        raise _Mismatch("a string")
    if origin in (dict, Mapping) or kind in (dict, Mapping):
        if isinstance(value, Mapping):
            return dict(value)
        raise _Mismatch("a mapping")
    return value


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _Mismatch("true or false")


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _Mismatch("an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                raise _Mismatch("an integer") from None
            if number.is_integer():
                return int(number)
    raise _Mismatch("an integer")


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _Mismatch("a number")
    try:
        number = float(value) if isinstance(value, (int, float, str)) else math.nan
    except ValueError:
        raise _Mismatch("a number") from None
    if not math.isfinite(number):
        raise _Mismatch("a finite number")
    return number


def declared_options(types: Iterable[type], extra: Mapping[str, Any] | None = None) -> dict[str, OptionField]:
    """The options of a workflow: the names of ``extra`` (name -> type: options read outside a
    config dataclass, aliases, flattened names), then the init fields of each dataclass of
    ``types`` in order, then :data:`RUNTIME_OPTIONS`. A name declared twice keeps its first
    declaration (``extra`` wins over a field; an earlier class over a later one)."""
    out = {name: OptionField(name, kind) for name, kind in (extra or {}).items()}
    for cls in types:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} is not a dataclass")
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init and f.name not in out:
                default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                out[f.name] = OptionField(f.name, hints[f.name], default)
    for name, kind in RUNTIME_OPTIONS.items():
        out.setdefault(name, OptionField(name, kind))
    return out


def check_option_names(names: Iterable[str], known: Mapping[str, Any], *, what: str) -> None:
    """A :class:`~orchestrator.errors.BadInputError` for the first of ``names`` that is not in
    ``known``, naming the closest known name and all of them."""
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f", did you mean {close[0]!r}?" if close else ""
            raise BadInputError(f"{what} {name!r}", f"a known option{hint}", "options: " + ", ".join(sorted(known)))


def parse_option_texts(texts: Mapping[str, str], known: Mapping[str, OptionField] | None, *,
                       what: str) -> dict[str, Any]:
    """Option values from command-line text, typed by ``known`` (None: any name, any value).

    A text is read as JSON first (``false``, ``3``, ``0.5``, ``"x"``, ``{"a": 1}``), then as the
    bare string, and the first reading the option's type takes is its value (``--set mode=eval``
    needs no quotes; ``--set seed=3`` on a string option is ``"3"``). Without ``known`` the JSON
    reading, else the string. The values stay JSON (a nested config is kept as its mapping).
    """
    if known is not None:
        check_option_names(texts, known, what=what)
    return {name: _read_text(known[name].kind if known is not None else None, text, what=f"{what} {name}")
            for name, text in texts.items()}


def _read_text(kind: Any, text: str, *, what: str) -> Any:
    """One ``--set`` text as an option of type ``kind`` (None: undeclared; see parse_option_texts)."""
    readings: list[Any] = [text]
    with contextlib.suppress(ValueError):
        readings.insert(0, json.loads(text))
    if kind is None:
        return readings[0]
    expected = ""
    for reading in readings:
        try:
            value = option_value(kind, reading, what=what)
        except _Mismatch as exc:
            expected = expected or exc.expected
        except BadInputError as exc:  # a field of a nested config
            expected = expected or f"{exc.what}: {exc.expected}"
        else:
            return reading if dataclasses.is_dataclass(value) else _jsonable(value)
    raise BadInputError(what, expected, f"got {text!r}")


def _jsonable(value: Any) -> Any:
    """A converted value as a run's stored options hold it (tuples as lists)."""
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value
