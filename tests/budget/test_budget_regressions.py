"""Issue 15, "a limit is a hard limit": each finding of the issue as a test that failed before the
fix (b87188b) and passes since, on SQLite and PostgreSQL where a database is involved.

1. CJK prompts: reservations used to be chars/2, far below what a byte-level tokenizer makes of
   Chinese (about two tokens a character): the real SmolLM2 in-process, and the loopback server
   counting with SmolLM2's tokenizer with and without ``/tokenize`` (``slow``: real tokenizer).
2. Ten runs sharing one token scope: the scope is charged and its limit holds.
3. A backend that ignores ``max_tokens`` and reports more: the truth is charged, the entry is
   ``overrun``, the metric counts it, the run pauses (DRQA too).
4. Scopes named in a budget string (``team/search=1``) are charged, from the CLI and the SDK.
5. Two OS processes creating and charging one scope on PostgreSQL at once; ``run_many`` too.
6. Reservations after a storage failure on settle, and those a crashed process left.
7. Budget names: a typo and a duplicate are exit code 2, with the valid names.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from budget.ledger import Charge
from budget.tables import BudgetAccountRow, LedgerEntryRow
from cli.main import app
from orchestrator import workflow as workflows
from orchestrator.errors import EngineUnavailable
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from orchestrator.store.models import LLMCallRow, RunRow, ToolCallRow
from orchestrator.testing import ChatRequest, LoopbackServer, Reply, ScriptedClient, ScriptedConfig
from orchestrator.tools.define import tool
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import Message, SamplingOptions
from orchestrator.workflow import Workflow
from tests import extras
from workflows.drqa.sim import make_rows

ROOT = Path(__file__).resolve().parents[2]

# 720 characters of Chinese: SmolLM2's tokenizer makes about two tokens of each (1433 with the chat
# template), chars/2 reserved 393, and the byte bound (2226) still leaves room for an answer.
CJK_QUESTION = (("请详细介绍法国首都巴黎的历史、建筑与文化，包括埃菲尔铁塔、卢浮宫、凯旋门和巴黎圣母院的建造年代，"
                 "以及塞纳河两岸的城市规划如何影响了今天的城市生活。") * 10)[:720]
CJK_REPLY = "巴黎是法国的首都，位于塞纳河畔，拥有埃菲尔铁塔、卢浮宫等著名建筑。" * 10
TOKEN_LIMIT = 2500
PROSE = ("The ledger reserves every call before it is dispatched and settles what the server reports "
         "in the same transaction as the call record, so budgets hold across processes. ")


# -- a workflow that asks the same question a number of times ------------------------------------

class _TurnsState(TypedDict):
    question: str
    turn: int


def _build_turns(ctx: Any) -> StateGraph:
    turns = int(ctx.config.get("turns", 3))
    sampling = SamplingOptions(max_tokens=int(ctx.config.get("max_tokens", 64)), temperature=0.0)

    async def ask(state: _TurnsState) -> dict[str, Any]:
        await ctx.chat([Message("system", "You are terse."), Message("user", f"{state['question']} ({state['turn']})")],
                       sampling=sampling)
        return {"turn": state["turn"] + 1}

    graph = StateGraph(_TurnsState)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_conditional_edges("ask", lambda s: "ask" if s["turn"] < turns else END, ["ask", END])
    return graph


TURNS = workflows.register(Workflow(
    name="budget_regression_turns", build=_build_turns,
    initial_state=lambda task: {"question": task["question"], "turn": 0},
    result=lambda state: {"turns": state["turn"]},
))


def _runtime(db_url: str, **kwargs: Any) -> Runtime:
    return Runtime(Settings(db_url=db_url), **{"tools": ToolRegistry(), **kwargs})


def _openai(server: LoopbackServer) -> dict[str, Any]:
    return {"backend": "openai", "backend_options": {"base_urls": [server.base_url], "model": server.model}}


async def _account(rt: Runtime, scope: str, resource: str) -> Any:
    return next(a for a in await rt.ledger.accounts([scope]) if a.resource == resource)


async def _llm_tokens(rt: Runtime, run_ids: list[str]) -> int:
    async with rt.store.session() as s:
        total = (await s.execute(select(func.sum(LLMCallRow.input_tokens + LLMCallRow.output_tokens))
                                 .where(LLMCallRow.run_id.in_(run_ids)))).scalar_one()
    return int(total or 0)


async def _statuses(rt: Runtime) -> list[str]:
    async with rt.store.session() as s:
        return list((await s.execute(select(RunRow.status))).scalars())


# -- 1. CJK prompts against the real tokenizer -------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2_tokenizer() -> Any:
    """SmolLM2's tokenizer, from the converted model the local backend caches (made on first use)."""
    pytest.importorskip("transformers", reason=extras.LOCAL)
    from transformers import AutoTokenizer

    from orchestrator.llm.local import LocalClient, LocalConfig

    cache = Path(str(LocalConfig().cache_dir)).expanduser()
    if not any(cache.glob("SmolLM2-135M-Instruct*/tokenizer.json")):
        LocalClient().count_tokens("convert the model once")
    return AutoTokenizer.from_pretrained(next(cache.glob("SmolLM2-135M-Instruct*/tokenizer.json")).parent)


def _chat_tokens(tokenizer: Any, messages: list[dict[str, Any]]) -> int:
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


class _TokenizingServer(LoopbackServer):
    """The kit's loopback server with vLLM's ``/tokenize`` answered by a real tokenizer."""

    def __init__(self, responder: Any, tokenizer: Any) -> None:
        super().__init__(responder)
        self._tokenizer = tokenizer

    async def _answer(self, request: ChatRequest, writer: asyncio.StreamWriter) -> bool:
        if request.method != "POST" or not request.path.endswith("/tokenize"):
            return await super()._answer(request, writer)
        body = json.dumps({"count": _chat_tokens(self._tokenizer, request.body["messages"])}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                     % (len(body), body))
        return True


def _honest_smollm2(tokenizer: Any) -> Any:
    """Replies in Chinese, cut at ``max_tokens``, with usage counted by SmolLM2's tokenizer."""
    reply_ids = tokenizer(CJK_REPLY, add_special_tokens=False)["input_ids"]

    def respond(request: ChatRequest) -> Reply:
        n = min(len(reply_ids), request.max_tokens or len(reply_ids))
        return Reply(tokenizer.decode(reply_ids[:n]), prompt_tokens=_chat_tokens(tokenizer, request.messages),
                     completion_tokens=n, finish_reason="length" if n < len(reply_ids) else "stop")

    return respond


async def _cjk_run(rt: Runtime, **backend: Any) -> None:
    res = await rt.run(TURNS, {"question": CJK_QUESTION}, budget=f"tokens={TOKEN_LIMIT}", **backend)
    spent = (await _account(rt, f"run:{res.run_id}", "tokens")).spent
    assert spent <= TOKEN_LIMIT, f"spent {spent:g} tokens of a {TOKEN_LIMIT} limit"
    assert spent == await _llm_tokens(rt, [res.run_id]), "the ledger disagrees with the call records"
    assert res.status in ("paused", "succeeded") and spent > 0, (res.status, res.error, spent)
    await rt.aclose()


@pytest.mark.slow
def test_cjk_question_on_the_local_model_stays_within_its_token_limit(tmp_path: Path) -> None:
    rt = _runtime(f"sqlite:///{tmp_path / 'store.db'}")
    asyncio.run(_cjk_run(rt, backend="local"))


@pytest.mark.slow
@pytest.mark.parametrize("tokenize", [True, False], ids=["tokenize", "upper-bound"])
def test_cjk_question_on_a_server_stays_within_its_token_limit(tmp_path: Path, smollm2_tokenizer: Any,
                                                              tokenize: bool) -> None:
    responder = _honest_smollm2(smollm2_tokenizer)
    server = _TokenizingServer(responder, smollm2_tokenizer) if tokenize else LoopbackServer(responder, tokenize=False)
    with server:
        asyncio.run(_cjk_run(_runtime(f"sqlite:///{tmp_path / 'store.db'}"), **_openai(server)))


# -- 2. ten runs sharing one scope ---------------------------------------------------------------------

def _long_reply(request: ChatRequest) -> str:
    return PROSE * 8


def test_ten_runs_sharing_a_token_scope_spend_at_most_its_limit(db_url: str) -> None:
    async def go() -> None:
        rt = _runtime(db_url)
        with LoopbackServer(_long_reply) as server:
            results = await asyncio.gather(*(
                rt.run(TURNS, {"question": PROSE}, budget="team/tokens=20000", options={"turns": 14, "max_tokens": 150},
                       **_openai(server)) for _ in range(10)))
        spent = await _llm_tokens(rt, [r.run_id for r in results])
        team = await _account(rt, "team", "tokens")
        assert spent > 15000, f"the runs spent only {spent} tokens: the limit was never tested"
        assert team.spent == spent <= 20000, f"runs spent {spent}, the team account says {team.spent:g}"
        assert {r.status for r in results} <= {"paused", "succeeded"} and "paused" in {r.status for r in results}
        await rt.aclose()

    asyncio.run(go())


# -- 3. a backend that reports more than it was allowed --------------------------------------------

def _oversized(request: ChatRequest) -> Reply:
    """Ignores ``max_tokens``: three times as many output tokens, honest prompt tokens."""
    from orchestrator.llm.scripted import simple_token_count

    prompt = sum(simple_token_count(m["content"]) for m in request.messages)
    completion = 3 * (request.max_tokens or 16) + 7
    return Reply(" ".join(["word"] * completion), prompt_tokens=prompt, completion_tokens=completion)


def _overruns() -> float:
    return REGISTRY.get_sample_value("quotaflow_budget_overrun_total", {"resource": "tokens"}) or 0.0


def test_oversized_reply_is_charged_flagged_and_pauses_the_run(db_url: str) -> None:
    async def go() -> None:
        rt = _runtime(db_url)
        before = _overruns()
        with LoopbackServer(_oversized) as server:
            res = await rt.run(TURNS, {"question": "Capital of France?"}, budget="tokens=5000", **_openai(server))
        assert res.status == "paused" and "overrun" in (res.error or ""), (res.status, res.error)
        async with rt.store.session() as s:
            entries = list((await s.execute(select(LedgerEntryRow.status).where(LedgerEntryRow.run_id == res.run_id)))
                           .scalars())
        assert entries == ["overrun"], f"ledger entries {entries}"
        assert _overruns() == before + 1
        account = await _account(rt, f"run:{res.run_id}", "tokens")
        assert account.spent == await _llm_tokens(rt, [res.run_id]) and account.reserved == 0
        await rt.aclose()

    asyncio.run(go())


def test_drqa_on_an_oversized_server_does_not_succeed_over_its_limit(db_url: str) -> None:
    async def go() -> None:
        rt = _runtime(db_url)
        with LoopbackServer(_oversized) as server:
            res = await rt.run("drqa", {"rows": make_rows([1, 2]), "dataset": "gsm8k"}, budget="tokens=600",
                               options={"method": "uniform", "total_budget": 400, "force_answer": False},
                               **_openai(server))
        async with rt.store.session() as s:
            entries = set((await s.execute(select(LedgerEntryRow.status)
                                           .where(LedgerEntryRow.run_id == res.run_id))).scalars())
        account = await _account(rt, f"run:{res.run_id}", "tokens")
        # Paused; the reason given may be a concurrent call's refusal (the overrun left no room).
        assert res.status == "paused" and "overrun" in entries, (res.status, res.error, entries)
        assert account.spent == await _llm_tokens(rt, [res.run_id]) and account.reserved == 0
        await rt.aclose()

    asyncio.run(go())


def test_usd_limit_holds_when_the_client_learns_its_model_from_the_server(db_url: str) -> None:
    async def go() -> None:
        rt = _runtime(db_url)
        with LoopbackServer(PROSE * 4, model="claude-sonnet-4") as server:  # honest: cut at max_tokens
            res = await rt.run(TURNS, {"question": "Capital of France?"}, budget="usd=0.0005", backend="openai",
                               backend_options={"base_urls": [server.base_url]})
        usd = await _account(rt, f"run:{res.run_id}", "usd")
        assert usd.spent <= 0.0005, f"${usd.spent:.6f} spent of a $0.0005 limit ({res.status}: {res.error})"
        await rt.aclose()

    asyncio.run(go())


# -- 4. scopes named in a budget string --------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A search corpus and a scripted agent that searches once, then answers."""
    from orchestrator.tools.corpus import CorpusSource, build_corpus

    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"title": "Paris", "text": "Paris is the capital of France."}) + "\n")
    build_corpus(tmp_path / "corpus.db", [CorpusSource(docs, "documents")])
    monkeypatch.setenv("QUOTAFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("QUOTAFLOW_CORPUS", str(tmp_path / "corpus.db"))
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"^Question": "search: capital of France", ".*": "answer: Paris"}))
    return script


def _cli_run(script: Path, budget: str, db_url: str) -> Any:
    return runner.invoke(app, [
        "run", "react", "--task", "Capital of France?", "--backend", "scripted", "--script", str(script),
        "--budget", budget, "--db", db_url, "--json"])


def test_cli_scope_in_the_budget_string_is_charged_across_runs(cli_env: Path, db_url: str) -> None:
    for _ in range(2):
        res = _cli_run(cli_env, "team/search=1", db_url)
        assert res.exit_code == 0, res.output

    async def check() -> None:
        rt = _runtime(db_url)
        async with rt.store.session() as s:
            executed = (await s.execute(select(func.count()).where(~ToolCallRow.refused))).scalar_one()
        team = await _account(rt, "team", "tool:search")
        assert executed == 1 and team.spent == 1, f"{executed} searches ran, team spent {team.spent:g} of 1"
        await rt.aclose()

    asyncio.run(check())


class _BurstState(TypedDict):
    refused: int


def test_sdk_scope_holds_against_200_concurrent_calls(db_url: str) -> None:
    ran: list[int] = []

    @tool
    def x(n: int) -> str:
        """Count a call."""
        ran.append(n)
        return "ok"

    def build(ctx: Any) -> StateGraph:
        async def burst(state: _BurstState) -> dict[str, Any]:
            results = await asyncio.gather(*(ctx.call_tool("x", {"n": i}) for i in range(200)))
            return {"refused": sum(bool(r.metadata.get("refused")) for r in results)}

        graph = StateGraph(_BurstState)
        graph.add_node("burst", burst)
        graph.add_edge(START, "burst")
        graph.add_edge("burst", END)
        return graph

    burst = Workflow(name="budget_regression_burst", build=build, initial_state=lambda task: {"refused": 0},
                     result=dict)

    async def go() -> None:
        rt = _runtime(db_url, tools=ToolRegistry([x]), clients={"fake": ScriptedClient()})
        res = await rt.run(burst, {"q": 1}, budget="team/x=50", backend="fake", tools=["x"])
        team = await _account(rt, "team", "tool:x")
        assert res.status == "succeeded" and len(ran) == team.spent == 50, (res.status, len(ran), team.spent)
        assert res.result == {"refused": 150}
        await rt.aclose()

    asyncio.run(go())


# -- 5. two processes, one scope ---------------------------------------------------------------------

def worker(db_url: str, scope: str, start_at: str) -> None:
    """One OS process of the two-process test: eight runs created at ``start_at`` (epoch seconds),
    each naming ``scope`` in its budget (so each sets its limit), on a scripted client."""

    async def go() -> None:
        rt = _runtime(db_url, clients={"fake": ScriptedClient(ScriptedConfig({".*": PROSE * 3}))})
        await rt.store.ensure_schema()
        await asyncio.sleep(max(0.0, float(start_at) - time.time()))
        results = await asyncio.gather(*(
            rt.run(TURNS, {"question": PROSE}, budget=f"{scope}/tokens=6000", backend="fake",
                   options={"turns": 10, "max_tokens": 100}) for _ in range(8)))
        print(json.dumps([r.status for r in results]))
        await rt.aclose()

    asyncio.run(go())


async def _started(db_url: str) -> None:
    async with _runtime(db_url):
        pass


@pytest.mark.postgres
def test_two_processes_create_and_charge_one_scope(pg_server: Any) -> None:
    db_url = pg_server.create_db(f"qf_two_procs_{os.getpid()}")
    asyncio.run(_started(db_url))  # schema and checkpoint tables before the race
    start_at = str(time.time() + 3)
    code = "import sys; from tests.budget.test_budget_regressions import worker; worker(*sys.argv[1:])"
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url, "shared", start_at],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0 and "UniqueViolation" not in err, err[-3000:]
        assert set(json.loads(out.splitlines()[-1])) <= {"paused", "succeeded"}, out

    async def check() -> None:
        rt = _runtime(db_url)
        assert "running" not in await _statuses(rt)
        async with rt.store.session() as s:
            rows = (await s.execute(select(func.count()).where(BudgetAccountRow.scope == "shared",
                                                               BudgetAccountRow.resource == "tokens"))).scalar_one()
            run_ids = list((await s.execute(select(RunRow.id))).scalars())
        shared = await _account(rt, "shared", "tokens")
        assert rows == 1 and shared.spent == await _llm_tokens(rt, run_ids) <= 6000 and shared.reserved == 0
        assert shared.spent > 4000, f"only {shared.spent:g} spent: the limit was never tested"
        await rt.aclose()

    asyncio.run(check())


@pytest.mark.postgres
def test_run_many_with_a_shared_scope_leaves_no_run_running(pg_server: Any) -> None:
    db_url = pg_server.create_db(f"qf_run_many_{os.getpid()}")

    async def go() -> None:
        rt = _runtime(db_url, clients={"fake": ScriptedClient(ScriptedConfig({".*": PROSE * 3}))})
        results = await rt.run_many(TURNS, [{"question": PROSE}] * 16, concurrency=16, budget="pool/tokens=5000",
                                    backend="fake", options={"turns": 6, "max_tokens": 100})
        assert {r.status for r in results} <= {"paused", "succeeded"}, [r.error for r in results]
        assert "running" not in await _statuses(rt)
        assert (await _account(rt, "pool", "tokens")).spent <= 5000
        await rt.aclose()

    asyncio.run(go())


@pytest.mark.postgres
def test_runtimes_starting_at_once_on_a_fresh_postgres_database_all_start(pg_server: Any) -> None:
    db_url = pg_server.create_db(f"qf_fresh_start_{os.getpid()}")
    code = "import sys; from tests.budget.test_budget_regressions import start_at_once; start_at_once(sys.argv[1])"
    try:  # in a process of its own: the race also hangs (a healthy start takes about 3 s)
        proc = subprocess.run([sys.executable, "-c", code, db_url], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("four runtimes starting at once on a fresh database hung for 20 s")
    assert proc.returncode == 0 and proc.stdout.strip().endswith("[]"), proc.stdout[-3000:] + proc.stderr[-3000:]


def start_at_once(db_url: str) -> None:
    """Four runtimes started together on ``db_url`` (migrated one after another first, so only the
    checkpointer's set-up can race); prints their failures as a JSON list."""

    async def go() -> None:
        runtimes = [_runtime(db_url) for _ in range(4)]
        for rt in runtimes:
            await rt.store.ensure_schema()
        outcomes = await asyncio.gather(*(rt.__aenter__() for rt in runtimes), return_exceptions=True)
        for rt in runtimes:
            await rt.aclose()
        print(json.dumps([repr(o) for o in outcomes if isinstance(o, BaseException)]))

    asyncio.run(go())


@pytest.mark.postgres
def test_a_run_starting_during_a_lease_renewal_keeps_its_lease(pg_server: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from orchestrator.store import leases

    renew_all = leases.renew_all

    def slow_renewal(conn: Any, owner: str) -> set[str]:
        held = renew_all(conn, owner)
        time.sleep(1.0)  # the renewal is still in flight when the second run takes its lease
        return held

    monkeypatch.setattr(leases, "LEASE_TTL", timedelta(seconds=0.3))  # a heartbeat every 0.1 s
    monkeypatch.setattr(leases, "renew_all", slow_renewal)
    db_url = pg_server.create_db(f"qf_lease_race_{os.getpid()}")

    async def go() -> None:
        rt = _runtime(db_url)
        await rt.store.ensure_schema()
        async with rt.store.session() as s:
            s.add_all([RunRow(id=rid, workflow="w", status="running", backend="b", task={}) for rid in ("a", "b")])
        keeper = leases.LeaseKeeper(rt.store)
        async with keeper.hold("a"):
            await asyncio.sleep(0.3)  # the first renewal started at 0.1 s and runs until 1.1 s
            async with keeper.hold("b") as faults:
                try:
                    await asyncio.sleep(1.5)
                except asyncio.CancelledError:
                    pytest.fail(f"run b was cancelled by its own process: {faults}")
        await rt.aclose()

    asyncio.run(go())


# -- 6. reservations left behind ---------------------------------------------------------------------

def test_storage_failure_on_settle_gives_the_reservation_back(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def go() -> None:
        rt = _runtime(db_url, clients={"fake": ScriptedClient(ScriptedConfig({".*": "Paris."}))})
        settle = rt.ledger.settle_recorded
        failed: list[str] = []

        async def flaky(*args: Any) -> Any:
            if not failed:  # the settle's statement or transaction fails: the connection dropped
                failed.append("settle")
                raise OperationalError("settle", {}, RuntimeError("injected: the connection dropped"))
            return await settle(*args)

        monkeypatch.setattr(rt.ledger, "settle_recorded", flaky)
        try:
            first = await rt.run(TURNS, {"question": "q"}, budget="tokens=10000", backend="fake",
                                 run_id="settlefails01")
        except OperationalError:  # the runtime of b87188b lets a storage error surface
            first = None
        assert failed and (first is None or first.status != "succeeded")
        assert (await _account(rt, "run:settlefails01", "tokens")).reserved == 0
        res = await rt.resume("settlefails01")
        account = await _account(rt, "run:settlefails01", "tokens")
        assert res.status == "succeeded" and account.reserved == 0
        await rt.aclose()

    asyncio.run(go())


def test_a_call_retried_after_an_engine_error_is_reserved_and_charged(db_url: str) -> None:
    failures: list[str] = []

    def script(messages: Any) -> str:
        if not failures:
            failures.append("first call")
            raise EngineUnavailable("injected: the server went away")
        return "Paris."

    async def go() -> None:
        rt = _runtime(db_url, clients={"fake": ScriptedClient(ScriptedConfig(script))})
        first = await rt.run(TURNS, {"question": "q"}, budget="tokens=25", backend="fake", run_id="engineretry01")
        assert first.status == "failed" and failures, first
        await rt.resume("engineretry01")
        used = await _llm_tokens(rt, ["engineretry01"])
        account = await _account(rt, "run:engineretry01", "tokens")
        assert account.spent == used <= 25, f"the calls used {used} tokens of 25; the ledger charged {account.spent:g}"
        await rt.aclose()

    asyncio.run(go())


def test_resume_releases_what_a_crashed_process_held(db_url: str) -> None:
    async def go() -> None:
        rt = _runtime(db_url, clients={"fake": ScriptedClient(ScriptedConfig({".*": "Paris."}))})
        res = await rt.run(TURNS, {"question": "q"}, budget="tokens=5", backend="fake", run_id="crashedholder1")
        assert res.status == "paused", res.error
        # What a process killed between reserve and settle leaves behind.
        await rt.ledger.reserve("crashedholder1:dead-call", [Charge("run:crashedholder1", "tokens", 3)],
                                "crashedholder1")
        assert (await _account(rt, "run:crashedholder1", "tokens")).reserved == 3
        done = await rt.resume("crashedholder1", budget="tokens=+1000")
        account = await _account(rt, "run:crashedholder1", "tokens")
        assert done.status == "succeeded" and account.reserved == 0, (done.status, done.error, account)
        await rt.aclose()

    asyncio.run(go())


# -- 7. budget names ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("budget", "message"), [
    ("serach=5", "a tool of the run or a token kind: browse, search"),
    ("search=5,tokens=900,search=3", "named twice"),
])
def test_budget_name_typos_and_duplicates_are_bad_input(cli_env: Path, tmp_path: Path, budget: str,
                                                        message: str) -> None:
    res = _cli_run(cli_env, budget, f"sqlite:///{tmp_path / 'store.db'}")
    assert res.exit_code == 2, res.output
    assert message in res.output, res.output
