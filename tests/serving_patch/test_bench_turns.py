"""bench.serving.turns: each program's JCT split from the replay's per-turn timings, config beside config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.serving import turns


def _child(config: str, programs: list[dict]) -> dict:
    return {"config": config, "commit": "c0", "levels": [{"level_index": 1, "programs": programs}]}


def _program(pid: str, jct: float, rows: list[list[float]] | None) -> dict:
    record = {"program_id": pid, "source": "paper:swe", "turns": len(rows or []), "done": True, "jct_s": jct}
    if rows is not None:
        record["turn_timings"] = rows
    return record


STOCK = _child("stock", [
    _program("L1-0-swe-4", 20.0, [[3.0, 0.5, 1.0, 1.0], [2.0, 0.0, 0.5, 1.0]]),
    _program("L1-1-swe-0", 10.0, [[4.0, 1.0, 1.0, 2.0]]),
    _program("L1-2-old", 5.0, None),  # a record from before the timings
])
PINNED = _child("fixed_ttl", [
    _program("L1-0-swe-4", 26.0, [[6.0, 3.0, 1.0, 1.5], [3.0, 1.0, 0.5, 1.0]]),
    _program("L1-1-swe-0", 9.0, [[3.5, 0.5, 1.0, 2.0]]),
    _program("L1-2-old", 5.5, None),
])


def test_a_program_time_splits_into_queue_prefill_decode_frontend_and_between_turns():
    split = turns.split(STOCK["levels"][0]["programs"][0])
    assert split == {"queue_s": 0.5, "prefill_s": 1.5, "decode_s": 2.0, "frontend_s": 1.0, "between_turns_s": 15.0}
    assert sum(split.values()) == pytest.approx(20.0)
    assert turns.split(STOCK["levels"][0]["programs"][2]) is None
    assert turns.split(_program("x", 1.0, [[1.0]])) is None  # wall time only: the engine gave no stats


def test_the_comparison_names_the_part_that_grew_and_the_jct_ratio():
    result = turns.compare([STOCK, PINNED], 1)
    assert result["configs"] == ["stock", "fixed_ttl"]
    swe4, swe0, old = result["programs"]
    assert swe4["fixed_ttl"]["jct_ratio"] == 1.3 and swe4["fixed_ttl"]["grew_most"] == "queue_s"
    assert swe4["fixed_ttl"]["growth_s"]["queue_s"] == 3.5
    assert swe0["fixed_ttl"]["jct_ratio"] == 0.9
    assert "grew_most" not in old["fixed_ttl"] and old["fixed_ttl"]["jct_ratio"] == 1.1
    with pytest.raises(SystemExit, match="level 3 is not in the files of stock, fixed_ttl"):
        turns.compare([STOCK, PINNED], 3)


def test_the_command_writes_the_json_and_the_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    paths = []
    for child in (STOCK, PINNED):
        paths.append(tmp_path / f"{child['config']}.json")
        paths[-1].write_text(json.dumps(child))
    assert turns.main([*map(str, paths), "--out-dir", str(tmp_path / "out")]) == 0
    written = json.loads((tmp_path / "out" / "turns-level-1.json").read_text())
    assert written["programs"][0]["fixed_ttl"]["grew_most"] == "queue_s"
    assert (tmp_path / "out" / "turns-level-1.png").stat().st_size > 1000
    assert "fixed_ttl: queue_s +3.5" in capsys.readouterr().out
