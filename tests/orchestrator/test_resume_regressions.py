"""Issue 16's findings as regression tests, on SQLite and PostgreSQL: a run SIGKILLed at a known
point (while the provider handles its n-th request: no sleeps) resumes to exactly the run that
was never killed — result, state, trajectory, call records and charges — for BATS (budget views
replayed), an SDK node with four parallel tool+LLM branches (each branch its own results), a
workflow whose initial state is {} (not run twice); ``runs list`` shows a killed run as
interrupted; a second ``quotaflow resume`` of a run being resumed gets a one-line RunBusy (exit
2) while the first finishes with no request sent twice. Kills and comparisons are those of
``bench/chaos/campaign.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.chaos import campaign
from bench.chaos.cases import EMPTY_STATE_WORKFLOW, SDK_WORKFLOW
from orchestrator.testing import ChatRequest, LoopbackServer
from workflows.bats.prompts import READ_SYSTEM

ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 60


def _trials(name: str, backend: str, kill_points: list[int], new_db: Callable[[str], str],
            home: Path) -> tuple[dict, list[campaign.Trial]]:  # type: ignore[type-arg]
    async def go() -> tuple[dict, list[campaign.Trial]]:  # type: ignore[type-arg]
        want, num_requests, _ = await campaign.reference(name, backend, new_db("ref"), home)
        return want, [await campaign.trial(name, backend, new_db(f"kill{i}-{k}"), home, k, want, num_requests)
                      for i, k in enumerate(kill_points)]

    return asyncio.run(go())


def _assert_exact(trials: list[campaign.Trial]) -> None:
    for t in trials:
        assert t.killed, t
        assert t.error is None and t.identical and not t.differences, t
        assert not t.double_charge and not t.divergence, t


def test_bats_resumes_exactly_with_budget_views_replayed(new_db: Callable[[str], str], tmp_path: Path) -> None:
    # Kills after the planner, inside the explorer's turns and the verifier: each resume must take the
    # original path although the live tool budgets differ from what the original run read.
    _assert_exact(_trials("bats", "scripted", [2, 3, 4, 5], new_db, tmp_path)[1])


@pytest.mark.parametrize("backend", ["scripted", "loopback"])
def test_parallel_branches_get_their_own_results_after_resume(backend: str, new_db: Callable[[str], str],
                                                              tmp_path: Path) -> None:
    want, trials = _trials(SDK_WORKFLOW, backend, [2, 3, 4, 5], new_db, tmp_path)
    findings = want["result"]["findings"]
    assert len(findings) == 4 and all(f.startswith(f"{i}:") and f"aspect {i}" in f for i, f in enumerate(findings))
    _assert_exact(trials)  # identical findings: no branch got another's reply; charges as the reference


def test_empty_initial_state_resumes_instead_of_running_again(new_db: Callable[[str], str], tmp_path: Path) -> None:
    want, trials = _trials(EMPTY_STATE_WORKFLOW, "scripted", [2, 3], new_db, tmp_path)
    assert want["num_llm_calls"] == 3 and len(want["result"]["notes"]) == 3
    _assert_exact(trials)


def test_concurrent_calls_inside_one_node_replay_without_divergence(tmp_path: Path) -> None:
    _assert_exact(_trials("drqa", "scripted", [8], lambda label: f"sqlite:///{tmp_path / label}.db", tmp_path)[1])


def test_concurrency_marker_is_committed_before_any_later_call_of_its_node(new_db: Callable[[str], str],
                                                                          tmp_path: Path) -> None:
    # DRQA's probe and reallocate nodes send several calls at once. On PostgreSQL a third call's
    # record could commit before the marker the second call wrote (pooled transactions commit in any
    # order); a kill in between left a node replayed by position: ReplayDivergence in 4 of 20 kills of
    # the chaos campaign at 52ad9ae, at these kill points.
    _assert_exact(_trials("drqa", "scripted", [7, 17, 18, 19], new_db, tmp_path)[1])


def test_kill_at_first_request_resumes_the_whole_run(tmp_path: Path) -> None:
    # Ten kills at the first request: each must resume to the reference (one wrong is the bug).
    _assert_exact(_trials("priordynaflow", "scripted", [1] * 10, lambda label: f"sqlite:///{tmp_path / label}.db",
                          tmp_path)[1])


@pytest.mark.parametrize("backend", ["scripted", "loopback"])
def test_kill_inside_a_fresh_retry_resumes_the_retry(backend: str, new_db: Callable[[str], str],
                                                     tmp_path: Path) -> None:
    # The code-check default: the sandbox fails the coder's code on the shown example, so its second
    # request is a fresh retry (task alone, retry temperature, a seed of its own). Killed while the
    # provider answers it, or as any checkpoint is saved, the resumed run must retry again (not take
    # an ordinary turn) and end as the run never killed.
    async def go() -> tuple[dict, list[campaign.Trial]]:  # type: ignore[type-arg]
        want, num_requests, num_checkpoints = await campaign.reference("priordynaflow_code", backend,
                                                                       new_db("ref"), tmp_path)
        kills = [("request", 2), *(("checkpoint", n) for n in range(1, num_checkpoints + 1))]
        return want, [await campaign.trial("priordynaflow_code", backend, new_db(f"kill-{at}-{n}"), tmp_path, n,
                                           want, num_requests, at=at) for at, n in kills]

    want, trials = asyncio.run(go())
    turns = [data for node, data in want["steps"] if node == "code-check.coder"]
    assert [t["retry"] for t in turns] == [False, True]
    assert want["result"]["path"][:3] == ["coder", "runner", "coder"] and want["num_llm_calls"] == 2
    assert len(trials) >= 6
    _assert_exact(trials)


# -- through the command line: interrupted in runs list, a second resume is busy -----------------------

def _cli(*args: str, home: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QUOTAFLOW_HOME": str(home), "COLUMNS": "200"}
    env.pop("QUOTAFLOW_DB_URL", None)
    return subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _done(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, out, err


def test_killed_run_shows_interrupted_and_second_resume_is_busy(db_url: str, tmp_path: Path) -> None:
    answers = ["calculator: 6 * 7", "calculator: 42 + 1", "answer: 43"]
    state = {"phase": "run", "victim": None}
    hold_first_resume = threading.Event()
    first_resume_waiting = threading.Event()

    async def respond(request: ChatRequest) -> str:
        seen = json.dumps(request.messages)
        if request.messages[0]["content"] == READ_SYSTEM:  # the reading call over the results
            return "43"
        turn = sum(a in seen for a in answers[:2])  # the reply is a function of the conversation
        if state["phase"] == "run" and turn == 1:
            state["victim"].send_signal(signal.SIGKILL)  # type: ignore[union-attr]
            await asyncio.to_thread(state["victim"].wait)  # type: ignore[union-attr]
        if state["phase"] == "resume" and turn == 1 and not first_resume_waiting.is_set():
            first_resume_waiting.set()
            await asyncio.to_thread(hold_first_resume.wait, CLI_TIMEOUT_S)
        return answers[min(turn, 2)]

    def cli(*args: str) -> subprocess.Popen[str]:
        return _cli(*args, "--db", db_url, home=tmp_path)

    with LoopbackServer(respond) as server:
        backend = ["--backend", "openai", "--base-url", server.base_url, "--model", server.model]
        state["victim"] = cli("run", "react", "--task", "What is 6 * 7 + 1?", "--tools", "calculator", "--json",
                              *backend)
        code, _, _ = _done(state["victim"])  # type: ignore[arg-type]
        assert code == -signal.SIGKILL
        code, out, err = _done(cli("runs", "list", "--json"))
        assert code == 0, err
        (row,) = json.loads(out)
        assert row["status"] == "interrupted"  # the killed process's run is not "running" forever
        sent_before = len(server.chat_bodies)

        state["phase"] = "resume"
        first = cli("resume", row["run_id"], "--json")
        assert first_resume_waiting.wait(CLI_TIMEOUT_S)  # the first resume holds the lease, mid-request
        code, out, err = _done(cli("resume", row["run_id"]))
        assert code == 2, (code, out, err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert row["run_id"] in lines[0] and f":{first.pid}:" in lines[0] and "being executed" in lines[0], lines[0]
        hold_first_resume.set()
        code, out, err = _done(first)
        assert code == 0, (code, out[-2000:], err[-2000:])
        report = json.loads(out)
        assert report["status"] == "succeeded" and report["result"]["answer"] == "43"

        bodies = [json.dumps(b["messages"], sort_keys=True) for b in server.chat_bodies]
    # Three turns and the reading call: the second turn was in flight at the kill and is sent
    # again by the first resume only.
    assert sent_before == 2 and len(bodies) == 5
    assert bodies[1] == bodies[2] and len(set(bodies)) == 4
