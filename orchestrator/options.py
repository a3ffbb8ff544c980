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
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin

from orchestrator.errors import BadInputError

__all__ = ["config_from_options", "option_value"]

C = TypeVar("C")

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class _Mismatch(Exception):
    def __init__(self, expected: str) -> None:
        self.expected = expected


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
