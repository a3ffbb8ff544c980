"""bench/drqa/run.py: --methods picks the plain rows, and a min_quota_tokens variant reaches the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_methods_and_a_floor_variant_at_two_fractions(tmp_path: Path) -> None:
    from bench.drqa.run import main

    assert main(["--dry-run", "--parts", "allocation", "--results-dir", str(tmp_path), 
                 "--artifacts-dir", str(tmp_path / "art"), "--fractions", "0.5,0.75", "--methods", "drqa",
                 "--variants", "drqa:min_quota_tokens=60;drqa:min_quota_tokens=0", "--design-rows", "4"]) == 0
    details = json.loads((tmp_path / "dry-run" / "details.json").read_text())
    entries = [e for e in details["allocation"] if e["dataset"] == "gsm8k"]  # a dry run also runs math
    rows = [(e["method"], e["variant"], e.get("budget_fraction_of_unlimited")) for e in entries]
    assert rows == [("unlimited", "", None), ("unlimited", "unlimited:unlimited_max_tokens=512", None),
                    *((m, v, f) for f in (0.5, 0.75) for m, v in (("drqa", ""), ("drqa", "drqa:min_quota_tokens=60"),
                                                                  ("drqa", "drqa:min_quota_tokens=0")))]
    by = {(e["variant"], e.get("budget_fraction_of_unlimited")): e for e in entries}
    for f in (0.5, 0.75):
        floor, old, default = by["drqa:min_quota_tokens=60", f], by["drqa:min_quota_tokens=0", f], by["", f]
        assert floor["options"]["min_quota_tokens"] == 60 and old["options"]["min_quota_tokens"] == 0
        assert floor["reasoning_tokens"] <= floor["total_budget"]
        assert floor["held_out"]["num_items"] == 8 and floor["design_rows"]["num_items"] == 4
        # The floor reached the workflow: every question the probe did not settle was given at least 60.
        assert all(it["quota"] >= 60 for it in floor["items"] if it["source"] != "probe")
        # 0 is the default's allocation (the simulated model is deterministic).
        assert [it["quota"] for it in old["items"]] == [it["quota"] for it in default["items"]]
    assert any(it["quota"] == 0 and it["source"] != "probe" for f in (0.5, 0.75) for it in by["", f]["items"])
    summary = json.loads((tmp_path / "dry-run" / "summary.json").read_text())
    assert {e["method"] for e in summary["allocation"]} == {"unlimited", "drqa"}  # no uniform row


def test_unknown_methods_are_refused() -> None:
    from bench.drqa.run import parse_methods

    assert parse_methods("uniform, drqa") == ["uniform", "drqa"]
    with pytest.raises(SystemExit):
        parse_methods("drqa,unlimited")
