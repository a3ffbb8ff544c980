"""Budget integrity, randomized (issue 15): the campaign of ``bench/integrity/campaign.py`` at CI
scale on SQLite and PostgreSQL. Forty runs under random limits over tokens, input and output
tokens, dollars and tool units, on the scripted LLM and the loopback server (exact counts, the
byte upper bound, and a misbehaving server that reports more than it was allowed), concurrent
runs sharing scopes, and two OS processes charging one scope at once. No limit that only honest
backends charge may be exceeded; every over-report must be flagged (entry ``overrun``, run
``paused``). ``pytest -s`` prints the audit.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from bench.integrity import campaign

SEED = 15
NUM_RUNS = 40
NUM_PROCESSES = 2
RUNS_PER_PROCESS = 6


def test_randomized_runs_hold_every_limit_and_flag_every_overrun(db_url: str, tmp_path: Path) -> None:
    async def go() -> dict:  # type: ignore[type-arg]
        # Started (schema and checkpoint tables) before the workers, which would race to create them.
        async with campaign.runtime(db_url, tmp_path) as rt:
            workers = campaign.run_processes(db_url, SEED, NUM_PROCESSES, RUNS_PER_PROCESS)
            with campaign.backends() as backends:
                outcomes = await campaign.run_plans(rt, campaign.plan_runs(SEED, NUM_RUNS), backends)
            outcomes.update(await asyncio.to_thread(campaign.wait_processes, workers))
            return {**await campaign.audit(rt), "run_outcomes": dict(outcomes)}

    summary = asyncio.run(go())
    print(f"\nintegrity seed={SEED} {db_url.split(':')[0]}: {json.dumps(summary)}")
    assert campaign.check(summary) == []
    assert summary["runs"] == NUM_RUNS + NUM_PROCESSES * RUNS_PER_PROCESS
    events = summary["overrun_events"]
    assert events["misbehaving"] > 0 and events["flagged"] == events["misbehaving"], events
    assert summary["runs_by_status"].get("paused", 0) >= events["runs_with_overrun"] > 0
    # The limits were reached, not merely set: some account of each kind ends at least half spent.
    assert all(summary["max_spent_over_limit"][unit] >= 0.5 for unit in ("tokens", "tool:lookup", "usd")), summary
