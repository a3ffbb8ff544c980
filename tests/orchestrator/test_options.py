"""The one options-to-config converter: the same rules for every workflow's options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from orchestrator.errors import BadInputError
from orchestrator.options import check_ranges, config_from_options


@dataclass(frozen=True)
class Inner:
    alpha: float = 0.5


@dataclass(frozen=True)
class Config:
    flag: bool = True
    count: int = 3
    ratio: float = 0.1
    name: str = "x"
    limit: int | None = None
    mode: Literal["train", "eval"] = "train"
    tags: tuple[str, ...] = ()
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("count must not be negative")


@pytest.mark.parametrize(("raw", "expected"), [
    ("false", False), ("False", False), ("0", False), ("no", False), ("off", False), (False, False), (0, False),
    ("true", True), ("1", True), ("yes", True), ("ON", True), (True, True), (1, True),
])
def test_bool_strings_mean_what_they_say(raw, expected):
    assert config_from_options(Config, {"flag": raw}).flag is expected


@pytest.mark.parametrize("raw", ["maybe", 2, 0.5, None, [True]])
def test_bool_refuses_anything_else(raw):
    with pytest.raises(BadInputError, match="option flag"):
        config_from_options(Config, {"flag": raw})


def test_numbers_from_json_and_strings():
    c = config_from_options(Config, {"count": "7", "ratio": "0.25", "limit": 4.0})
    assert (c.count, c.ratio, c.limit) == (7, 0.25, 4)
    assert config_from_options(Config, {"limit": None}).limit is None
    for key, bad in (("count", True), ("count", "7.5"), ("ratio", "nan"), ("ratio", False), ("limit", "x")):
        with pytest.raises(BadInputError, match=f"option {key}"):
            config_from_options(Config, {key: bad})


def test_literal_tuple_nested_and_unknown_keys():
    c = config_from_options(Config, {"mode": "eval", "tags": "a, b", "inner": {"alpha": "0.9"}, "tools": ["x"]})
    assert (c.mode, c.tags, c.inner.alpha) == ("eval", ("a", "b"), 0.9)
    with pytest.raises(BadInputError, match="one of 'train', 'eval'"):
        config_from_options(Config, {"mode": "test"})
    with pytest.raises(BadInputError, match="unknown option"):
        config_from_options(Config, {"tools": ["x"]}, strict=True)
    with pytest.raises(BadInputError, match="beta"):
        config_from_options(Config, {"inner": {"beta": 1}})


def test_dataclass_validation_and_base():
    with pytest.raises(BadInputError, match="count must not be negative"):
        config_from_options(Config, {"count": -1})
    base = Config(name="kept", count=9)
    c = config_from_options(Config, {"ratio": 1}, base=base)
    assert (c.name, c.count, c.ratio) == ("kept", 9, 1.0)


@dataclass(frozen=True)
class _Bounded:
    tokens: int = 1
    share: float = 0.5
    temperature: float | None = None

    def __post_init__(self) -> None:
        check_ranges(self, tokens=(1, None), share=(0.0, 1.0), temperature=(0.0, 2.0))


@pytest.mark.parametrize(("options", "said"), [({"tokens": 0}, "tokens must be >= 1, got 0"),
                                               ({"share": 1.5}, r"share must be in \[0.0, 1.0\], got 1.5"),
                                               ({"temperature": -1}, "temperature must be in")])
def test_check_ranges_refuses_a_field_outside_its_bounds_as_bad_input(options, said):
    with pytest.raises(BadInputError, match=said):
        config_from_options(_Bounded, options)
    assert config_from_options(_Bounded, {"tokens": 1, "share": 1.0}) == _Bounded(1, 1.0)  # None: unset, passes
