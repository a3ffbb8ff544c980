"""The wire contract for program hints: what a client writes is what the plugin reads."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from serving_patch.config import ContinuumConfig
from serving_patch.core import ContinuumCore
from serving_patch.core.hints import ProgramHints

FULL = ProgramHints(
    "run-7", turn=3, is_last_step=True, tool_name="search", ttl_hint_s=4.5, priority=-2
)


def _over_json(xargs: dict[str, Any]) -> dict[str, Any]:
    """The xargs as an HTTP server receives them."""
    decoded: dict[str, Any] = json.loads(json.dumps(xargs))
    return decoded


@pytest.mark.parametrize(
    "hints",
    [
        FULL,
        ProgramHints("run-7"),
        ProgramHints("p", turn=0, is_last_step=False, tool_name=None, ttl_hint_s=0.0),
        ProgramHints("p", ttl_hint_s=30.0, priority=5),
    ],
)
def test_every_field_round_trips(hints: ProgramHints) -> None:
    xargs = _over_json(hints.to_xargs())
    assert ProgramHints.parse(xargs, priority=hints.priority) == hints


def test_each_field_reaches_the_parsed_hints() -> None:
    # A field the writer dropped would come back as its default: change each one alone.
    base = ProgramHints("p")
    for field in dataclasses.fields(ProgramHints):
        changed = dataclasses.replace(base, **{field.name: getattr(FULL, field.name)})
        assert changed != base, field.name
        assert ProgramHints.parse(changed.to_xargs(), priority=changed.priority) == changed


def test_priority_is_vllms_request_field_not_an_xarg() -> None:
    assert "priority" not in FULL.to_xargs()
    assert ProgramHints.parse({"program_id": "p", "priority": 9}) == ProgramHints("p")


def test_booleans_travel_as_integers() -> None:
    xargs = FULL.to_xargs()
    assert xargs["is_last_step"] == 1 and type(xargs["is_last_step"]) is int
    assert ProgramHints("p").to_xargs()["is_last_step"] == 0
    assert "tool_name" not in ProgramHints("p").to_xargs()
    assert "ttl_hint_s" not in ProgramHints("p").to_xargs()


@pytest.mark.parametrize("value", [True, 1, 1.0, "1", "true", "True", " yes ", "on"])
def test_true_in_every_json_shape(value: object) -> None:
    parsed = ProgramHints.parse({"program_id": "p", "is_last_step": value})
    assert parsed is not None and parsed.is_last_step is True


@pytest.mark.parametrize("value", [False, 0, 0.0, "0", "false", "no", "", None])
def test_false_in_every_json_shape(value: object) -> None:
    parsed = ProgramHints.parse({"program_id": "p", "is_last_step": value})
    assert parsed is not None and parsed.is_last_step is False


def test_numbers_as_strings_and_ids_as_numbers() -> None:
    parsed = ProgramHints.parse({"program_id": 7, "turn": "4", "ttl_hint_s": "1.5", "tool_name": 3})
    assert parsed == ProgramHints("7", turn=4, ttl_hint_s=1.5, tool_name="3")
    assert ProgramHints.parse({"program_id": "p", "turn": 2.0}) == ProgramHints("p", turn=2)


@pytest.mark.parametrize("ttl", ["-3", -0.5, "nan", "inf", "soon", True, [1]])
def test_bad_ttl_hints_are_ignored(ttl: object) -> None:
    parsed = ProgramHints.parse({"program_id": "p", "ttl_hint_s": ttl})
    assert parsed is not None and parsed.ttl_hint_s is None


@pytest.mark.parametrize("turn", ["x", 1.5, None, "nan"])
def test_bad_turns_fall_back_to_zero(turn: object) -> None:
    assert ProgramHints.parse({"program_id": "p", "turn": turn}) == ProgramHints("p")


def test_unknown_keys_are_ignored() -> None:
    xargs = {**FULL.to_xargs(), "hints_v": 2, "lmcache.tag": "x", "future_key": [1, 2]}
    assert ProgramHints.parse(xargs, priority=FULL.priority) == FULL


@pytest.mark.parametrize("xargs", [None, {}, {"is_last_step": 1, "tool_name": "bash"}, {"program_id": ""}])
def test_no_program_id_means_no_hints(xargs: dict[str, Any] | None) -> None:
    assert ProgramHints.parse(xargs) is None


def test_runtime_uses_the_same_class() -> None:
    from orchestrator.types import ProgramHints as RuntimeHints

    assert RuntimeHints is ProgramHints


@pytest.mark.parametrize(("hint", "expected_ttl"), [(5.0, 5.0), (100.0, 30.0), (0.0, None)])
def test_ttl_hint_overrides_the_rule_clamped_by_the_maximum(hint: float, expected_ttl: float | None) -> None:
    # The fixed rule alone would pin for 2 s; the client's hint wins, up to max_ttl_s (30 s).
    core = ContinuumCore(ContinuumConfig(ttl_policy="fixed", max_ttl_s=30.0), num_kv_blocks=100)
    hints = ProgramHints.parse(ProgramHints("p", ttl_hint_s=hint).to_xargs())
    core.on_arrival("t1", hints, priority=0, arrival_time=0.0, now=0.0)
    decision = core.on_finished("t1", stopped_normally=True, pinnable=True, num_blocks=4, num_tokens=64, now=1.0)
    if expected_ttl is None:
        assert decision.pin is None
    else:
        assert decision.pin is not None and decision.pin.expires_at_s == 1.0 + expected_ttl
