"""The store's text escape: its stored form, exact round trips, and the walk over values."""

from __future__ import annotations

import dataclasses
import random
from typing import Any, NamedTuple

import pydantic
import pytest

from orchestrator.store.safe_text import (
    ESCAPE_CHAR,
    escape,
    has_unstorable,
    map_strings,
    needs_escape,
    unescape,
)

# The stored form is persisted: changing it needs a migration of every stored string.
STORED_FORMS = [
    ("a\x00b", "a\ue0000000b"),
    ("\ud800", "\ue000D800"),
    ("x\udfffy", "x\ue000DFFFy"),
    ("\ue000", "\ue000E000"),
    ("\ue0000041", "\ue000E0000041"),  # text that looks like an escape stays itself
    ("\ud83d\ude00", "\ue000D83D\ue000DE00"),  # a pair's halves as two code points
    (b"\xff".decode("utf-8", "surrogateescape"), "\ue000DCFF"),  # a byte that was not UTF-8
]


@pytest.mark.parametrize(("text", "stored"), STORED_FORMS)
def test_stored_form(text: str, stored: str) -> None:
    assert escape(text) == stored and unescape(stored) == text
    assert needs_escape(text) and not has_unstorable(stored)
    stored.encode("utf-8")  # strict UTF-8: both drivers can send it


@pytest.mark.parametrize("text", ["", "plain", "emoji \U0001f600 and CJK 漢字", "\ue001 other private use",
                                  "E000 and \\ue000 spelled out"])
def test_text_without_those_code_points_is_stored_as_it_is(text: str) -> None:
    assert not needs_escape(text)
    assert escape(text) is text and unescape(text) is text


def _random_text(rng: random.Random) -> str:
    # Weighted towards what makes escapes ambiguous: the escape character next to hex digits.
    pieces = ["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\ud83d\ude00", ESCAPE_CHAR, ESCAPE_CHAR * 2,
              "0", "0000", "D800", "E000", "F", "a", " ", "\n", "\U0001f600", "\ue001", "\uffff"]
    return "".join(rng.choice(pieces) if rng.random() < 0.7 else chr(rng.randrange(0x110000))
                   for _ in range(rng.randrange(12)))


def test_round_trip_on_random_text() -> None:
    rng = random.Random(15)
    for _ in range(20_000):
        text = _random_text(rng)
        stored = escape(text)
        assert unescape(stored) == text, (text, stored)
        assert not has_unstorable(stored), (text, stored)
        assert escape(text + text) == stored + stored  # escapes are per code point: concatenation commutes


def test_unstorable_is_only_nul_and_surrogates() -> None:
    assert has_unstorable("\x00") and has_unstorable("\udabc") and not has_unstorable(ESCAPE_CHAR)


# -- values ------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Note:
    text: str
    count: int = 0


class _Pair(NamedTuple):
    left: str
    right: str


class _Model(pydantic.BaseModel):
    text: str
    tags: list[str] = []


WEIRD = "nul\x00 lone\ud800 escape\ue000"


def test_json_values_round_trip_with_keys() -> None:
    value = {WEIRD: [WEIRD, 1, 2.5, None, True, {"k": WEIRD}], "clean": "text", "n": 3}
    stored = map_strings(value, escape)
    assert WEIRD not in str(stored) and escape(WEIRD) in stored
    assert map_strings(stored, unescape) == value


def test_objects_round_trip() -> None:
    value = [
        _Note(WEIRD, 2),
        _Pair(WEIRD, "b"),
        frozenset({WEIRD}),
        {WEIRD},
        (WEIRD,),
        _Model(text=WEIRD, tags=[WEIRD]),
    ]
    stored = map_strings(value, escape)
    assert stored[0] == _Note(escape(WEIRD), 2) and isinstance(stored[1], _Pair)
    assert stored[5].tags == [escape(WEIRD)]
    assert map_strings(stored, unescape) == value


def test_a_value_without_such_text_is_not_copied() -> None:
    value = {"a": ["b", {"c": _Note("d")}], "m": _Model(text="e")}
    assert map_strings(value, escape) is value


def test_other_objects_go_to_the_hook_with_the_walk() -> None:
    class Box:
        def __init__(self, content: Any) -> None:
            self.content = content

    def boxes(value: Any, walk: Any) -> Any:
        return Box(walk(value.content)) if isinstance(value, Box) else value

    stored = map_strings({"box": Box([WEIRD])}, escape, boxes)
    assert stored["box"].content == [escape(WEIRD)]
    unboxed = map_strings({"box": Box([WEIRD])}, escape)["box"]  # no hook: left as it is
    assert unboxed.content == [WEIRD]
