"""A reversible escape for text that a database refuses, applied to everything the store keeps.

PostgreSQL refuses U+0000 in ``text`` and ``jsonb``; neither database driver can encode a lone
surrogate (U+D800-U+DFFF: a Python ``str`` holds one when bytes were decoded with
``surrogateescape``, or when JSON carried ``"\\ud800"``). Model replies and tool output can hold
both, so the store writes every string through :func:`escape` and reads it back through
:func:`unescape`:

- each U+0000, each surrogate U+D800-U+DFFF and each U+E000 (the escape character, from the
  private-use area) is written as U+E000 followed by the code point's four upper-case hex
  digits: ``"a\\x00b"`` is stored as ``"a\\ue0000000b"``, ``"\\ud800"`` as ``"\\ue000D800"``,
  ``"\\ue000"`` as ``"\\ue000E000"``;
- every other string is stored unchanged (a text without those code points costs one regex scan).

``unescape(escape(s)) == s`` for every ``str``. :func:`map_strings` applies either function to
every string inside a value, dict keys included: JSON values, and the dataclasses, pydantic models,
tuples and sets that graph checkpoints hold. No I/O here.
"""

from __future__ import annotations

import copy
import dataclasses
import operator
import re
from collections.abc import Callable
from typing import Any

__all__ = ["ESCAPE_CHAR", "ObjectMapper", "escape", "has_unstorable", "map_strings", "needs_escape", "unescape"]

ESCAPE_CHAR = "\ue000"
"""Introduces an escaped code point (it is itself escaped wherever it occurs in the text)."""

# Python's re accepts surrogates in a str pattern; the range is every lone surrogate.
_ESCAPED = re.compile("[\x00\ud800-\udfff\ue000]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SEQUENCE = re.compile("\ue000([0-9A-F]{4})")

ObjectMapper = Callable[[Any, Callable[[Any], Any]], Any]
"""``(value, walk) -> value``: rebuilds an object :func:`map_strings` does not know, with ``walk``
applied to the values it holds (the value itself when it holds no text)."""


def needs_escape(text: str) -> bool:
    """Whether :func:`escape` changes ``text``."""
    return _ESCAPED.search(text) is not None


def has_unstorable(text: str) -> bool:
    """Whether ``text`` holds a code point that a database refuses (U+0000 or a lone surrogate)."""
    return _UNSTORABLE.search(text) is not None


def _escape_one(match: re.Match[str]) -> str:
    return f"{ESCAPE_CHAR}{ord(match.group()):04X}"


def _unescape_one(match: re.Match[str]) -> str:
    return chr(int(match.group(1), 16))


def escape(text: str) -> str:
    """``text`` in a form both databases store: no U+0000, no lone surrogate (module docstring)."""
    return _ESCAPED.sub(_escape_one, text) if needs_escape(text) else text


def unescape(text: str) -> str:
    """The text :func:`escape` was given."""
    return _SEQUENCE.sub(_unescape_one, text) if ESCAPE_CHAR in text else text


def map_strings(value: Any, fn: Callable[[str], str], other: ObjectMapper | None = None) -> Any:
    """``value`` with ``fn`` applied to every string in it, dict keys included.

    Walks dicts, lists, tuples (named ones keep their type), sets, dataclass instances and pydantic
    models; any other value goes to ``other`` (with the walk, for the values it holds) when given,
    else is returned as it is. A container or object none of whose strings changes is returned
    itself, not a copy.
    """
    return _Walk(fn, other)(value)


_SCALARS = frozenset({int, float, bool, type(None), bytes})


class _Walk:
    """:func:`map_strings` as one callable (no closure per value: payloads can be large)."""

    __slots__ = ("fn", "other")

    def __init__(self, fn: Callable[[str], str], other: ObjectMapper | None) -> None:
        self.fn = fn
        self.other = other

    def __call__(self, value: Any) -> Any:
        cls = type(value)
        if cls is str:
            return self.fn(value)
        if cls in _SCALARS:
            return value
        if isinstance(value, dict):
            out = {}
            changed = False
            for k, v in value.items():
                new_k, new_v = self(k), self(v)
                changed = changed or new_k is not k or new_v is not v
                out[new_k] = new_v
            return out if changed else value
        if isinstance(value, (list, tuple, set, frozenset)):
            mapped = [self(v) for v in value]
            if all(map(operator.is_, mapped, value)):
                return value
            if cls is list:
                return mapped
            if isinstance(value, tuple) and hasattr(value, "_fields"):
                return cls._make(mapped)
            return cls(mapped)
        if isinstance(value, str):  # a str subclass (an enum's value)
            return self.fn(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changed_fields = {f.name: new for f in dataclasses.fields(value)
                              if (new := self(old := getattr(value, f.name))) is not old}
            if not changed_fields:
                return value
            clone = copy.copy(value)
            for name, new in changed_fields.items():
                object.__setattr__(clone, name, new)  # frozen dataclasses too
            return clone
        model_fields = getattr(cls, "model_fields", None)
        if isinstance(model_fields, dict) and hasattr(value, "model_copy"):  # a pydantic v2 model
            update = {name: new for name in model_fields if (new := self(old := getattr(value, name))) is not old}
            return value.model_copy(update=update) if update else value
        return value if self.other is None else self.other(value, self)
