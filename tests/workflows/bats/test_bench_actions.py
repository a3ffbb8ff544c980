"""bench/bats/actions.py: the per-cell account of what the agents did, from a details file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from bench.bats.actions import cell_report, load_runs, main


def _run(method: str, qid: str, search: list[str], *, em: float = 0.0, stop: str = "answered",
         copies: int = 0) -> dict[str, object]:
    return {"method": method, "budget": 5, "qid": qid, "em": em, "stop": stop, "num_example_copies": copies,
            "actions": {"search": search, "browse": ["wiki://A"], "answer": ["x"]}}


RUNS = [
    _run("react", "q1", ["VIVA Media", "viva  media"], stop="stale"),
    _run("react", "q2", ["Who founded VIVA Media AG?"], em=1.0),
    _run("tracker", "q1", ["VIVA"], copies=2),
]


def test_cells_count_repeats_question_copies_and_example_copies() -> None:
    rows = cell_report(RUNS, {"q2": "Who founded  VIVA Media AG?"})
    react, tracker = rows
    assert (react["method"], react["runs"], react["em"], react["stops"]) == ("react", 2, 1.0,
                                                                             {"stale": 1, "answered": 1})
    assert (react["repeated_query"], react["searched_question"], react["example_copies"]) == (1, 1, 0)
    assert react["searches_per_run"] == 1.5 and react["pages_per_run"] == 1.0
    assert (tracker["repeated_query"], tracker["example_copies"], tracker["with_actions"]) == (0, 1, 1)


def test_reads_plain_and_gzipped_details_and_refuses_other_json(tmp_path: Path, capsys) -> None:
    plain, packed = tmp_path / "details.json", tmp_path / "details.json.gz"
    plain.write_text(json.dumps({"runs": RUNS}))
    with gzip.open(packed, "wt") as f:
        json.dump({"runs": RUNS}, f)
    assert load_runs(plain) == load_runs(packed) == RUNS
    assert main([str(packed), "--json"]) == 0
    assert [r["method"] for r in json.loads(capsys.readouterr().out)] == ["react", "tracker"]
    (tmp_path / "summary.json").write_text(json.dumps({"results": []}))
    with pytest.raises(SystemExit, match="no 'runs' list"):
        load_runs(tmp_path / "summary.json")
