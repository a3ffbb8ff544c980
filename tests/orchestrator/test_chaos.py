"""Crash and resume, randomized (issue 16), at CI scale: the campaign of ``bench/chaos/campaign.py``
(``bench/chaos/run.py`` is the full run) on SQLite and PostgreSQL. Each built-in workflow and an
SDK workflow with four parallel tool+LLM branches is SIGKILLed at seeded points (while the
provider handles the n-th request: the scripted rule in the worker kills its own process, the
loopback server kills the worker before answering; or as LangGraph saves the n-th checkpoint; the
first and the last of each are always among the points),
resumed, and compared with the same run left alone: result, state, trajectory, call records and
charges identical, no double charge, no ReplayDivergence. ``pytest -s`` prints each summary.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.chaos import campaign

SEED = 16
NUM_KILLS = {"scripted": 2, "loopback": 1}

CASES = [
    pytest.param("react", "scripted"),
    pytest.param("bats", "scripted"),
    pytest.param("priordynaflow", "scripted"),
    pytest.param("priordynaflow_code", "scripted"),
    pytest.param("batchprompt", "scripted"),
    pytest.param("drqa", "scripted"),
    pytest.param("chaos_fanout", "scripted"),
    pytest.param("react", "loopback"),
    pytest.param("bats", "loopback"),
    pytest.param("drqa", "loopback"),
    pytest.param("chaos_fanout", "loopback"),
]


# Killed as LangGraph saves a checkpoint: the step before it ended, its results are not stored.
AT_CHECKPOINT = [
    pytest.param("react", "scripted"),
    pytest.param("bats", "scripted"),
    pytest.param("priordynaflow", "scripted"),
    pytest.param("priordynaflow_code", "scripted"),
    pytest.param("batchprompt", "scripted"),
    pytest.param("drqa", "scripted"),
    pytest.param("chaos_fanout", "scripted"),
    pytest.param("chaos_fanout", "loopback"),
]


@pytest.mark.parametrize(("name", "backend", "at"), [pytest.param(*p.values, "request", id=f"{p.values[0]}-"
                                                                  f"{p.values[1]}-request") for p in CASES]
                         + [pytest.param(*p.values, "checkpoint", id=f"{p.values[0]}-{p.values[1]}-checkpoint")
                            for p in AT_CHECKPOINT])
def test_killed_runs_resume_identical(name: str, backend: str, at: str, new_db: Callable[[str], str],
                                      tmp_path: Path) -> None:
    summary = asyncio.run(campaign.campaign(name, backend, new_db, tmp_path, seed=SEED,
                                            num_kills=NUM_KILLS[backend], at=at))
    print(f"\nchaos {name}/{backend} at {at}s: {json.dumps(summary)}")
    assert summary["errors"] == [] and summary["differences"] == [], summary
    assert summary["kills"] == summary["trials"] == NUM_KILLS[backend]
    assert summary["identical"] == summary["trials"]
    assert summary["double_charges"] == 0 and summary["divergences"] == 0
    # Requests in flight at a kill are sent again (several where a node's calls run concurrently).
    assert summary["resent_requests"] >= 0


@pytest.mark.parametrize(("num_kills", "num_points"), [(2, 9), (4, 9), (10, 11), (20, 8), (1, 5), (3, 1)])
def test_kill_points_reach_the_first_and_the_last(num_kills: int, num_points: int) -> None:
    # The last checkpoint follows the run's final step (its side effects done, its results not
    # stored): the point a Q-table learned twice on resume, which evenly spread points never reached.
    points = campaign.kill_points(SEED, num_kills, num_points)
    assert len(points) == num_kills and all(1 <= p <= num_points for p in points)
    if num_kills >= 2:
        assert {1, num_points} <= set(points)
    assert points == campaign.kill_points(SEED, num_kills, num_points)  # seeded
