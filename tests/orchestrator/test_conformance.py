"""The conformance suites of :mod:`orchestrator.testing` against every implementation: the
runtime's context (SQLite and PostgreSQL), the direct context (:mod:`orchestrator.direct`, the
benchmarks') and the kit's fake context; the scripted (which also plays DRQA's simulated solver
and the benchmarks' dry runs), openai (on the loopback server) and local (the real SmolLM2, slow)
LLM clients."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager

import pytest

from budget.costs import load_price_table
from budget.ledger import Ledger
from budget.limits import Limit, tool_resource
from orchestrator import accounting
from orchestrator.direct import DirectContext
from orchestrator.llm.base import LLMClient
from orchestrator.llm.openai import OpenAIClient, OpenAIConfig
from orchestrator.run_context import RuntimeContext
from orchestrator.runtime import RunStatus
from orchestrator.store.db import Store
from orchestrator.store.models import RunRow
from orchestrator.testing import (
    LLM_CLIENT_CHECKS,
    RUN_CONTEXT_CHECKS,
    FakeRunContext,
    LoopbackServer,
    ScriptedClient,
    ScriptedConfig,
    check_llm_client,
    check_run_context,
)
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import LLMRequest

LONG_REPLY = " ".join(f"word{i}," for i in range(60))


def test_run_context_suite_on_the_runtime_context(db_url: str) -> None:
    @asynccontextmanager
    async def make(llm: LLMClient, tools: ToolRegistry, limits: Mapping[str, float]) -> AsyncIterator[RuntimeContext]:
        store = Store(db_url)
        await store.ensure_schema()
        run_id = uuid.uuid4().hex[:16]
        async with store.session() as s:
            s.add(RunRow(id=run_id, workflow="conformance", status=RunStatus.RUNNING, backend="scripted", task={}))
        ledger = Ledger(store)
        scope = accounting.run_scope(run_id)
        await ledger.set_limits([Limit(scope, name if name == "tokens" else tool_resource(name), amount)
                                 for name, amount in limits.items()])
        try:
            yield RuntimeContext(store, ledger, load_price_table(), run_id, "conformance", "scripted", llm, tools,
                                 [scope])
        finally:
            await store.aclose()

    assert check_run_context(make) == list(RUN_CONTEXT_CHECKS)


def _fake(llm: LLMClient, tools: ToolRegistry, limits: Mapping[str, float],
          cls: type[FakeRunContext] = FakeRunContext) -> FakeRunContext:
    return cls(llm=llm, tools=tools, tool_limits={k: v for k, v in limits.items() if k != "tokens"},
               token_limit=int(limits["tokens"]) if "tokens" in limits else None)


def test_run_context_suite_on_the_fake_context() -> None:
    @asynccontextmanager
    async def make(llm: LLMClient, tools: ToolRegistry, limits: Mapping[str, float]) -> AsyncIterator[FakeRunContext]:
        yield _fake(llm, tools, limits)

    assert check_run_context(make) == list(RUN_CONTEXT_CHECKS)


def test_run_context_suite_on_the_direct_context() -> None:
    @asynccontextmanager
    async def make(llm: LLMClient, tools: ToolRegistry, limits: Mapping[str, float]) -> AsyncIterator[DirectContext]:
        yield DirectContext(llm, tools=tools)

    # No ledger: limits are neither enforced nor reported (its figures say "via": "direct").
    assert check_run_context(make, ledger=False) == list(RUN_CONTEXT_CHECKS)


def test_llm_client_suite_on_the_scripted_client() -> None:
    assert check_llm_client(lambda: ScriptedClient(ScriptedConfig(lambda _messages: LONG_REPLY))) == list(
        LLM_CLIENT_CHECKS)


@pytest.fixture
def loopback() -> Iterator[LoopbackServer]:
    with LoopbackServer(LONG_REPLY) as server:
        yield server


def test_llm_client_suite_on_the_openai_client(loopback: LoopbackServer, closed_port_url: str) -> None:
    def make() -> OpenAIClient:
        return OpenAIClient(OpenAIConfig(base_urls=[loopback.base_url], model=loopback.model))

    def down() -> OpenAIClient:
        return OpenAIClient(OpenAIConfig(base_urls=[closed_port_url], model="m", max_retries=1, backoff_base_s=0.001))

    names = check_llm_client(make, make_unreachable=down)
    assert names == [*LLM_CLIENT_CHECKS, "server down raises EngineUnavailable"]
    assert loopback.chat_bodies and not loopback.errors
    assert any("regex" in (b.get("structured_outputs") or {}) for b in loopback.chat_bodies), \
        "the regex check's request reached the server without structured_outputs"


def test_llm_client_suite_on_the_openai_client_whose_server_rejects_optional_fields() -> None:
    # A server without structured outputs or logprobs: the client drops the fields, so no call
    # fails; only the checks that need a choice enforced or logprobs back do.
    failed = r"2 of \d+ LLMClient checks failed:\n  choices constrain the reply: .*\n  logprobs are returned"
    with (LoopbackServer(LONG_REPLY, reject_fields=("structured_outputs", "logprobs")) as server,
          pytest.raises(AssertionError, match=failed)):
        check_llm_client(lambda: OpenAIClient(OpenAIConfig(base_urls=[server.base_url], model=server.model)))


@pytest.mark.slow
def test_llm_client_suite_on_the_local_client() -> None:
    from orchestrator.llm import create_client

    assert check_llm_client(lambda: create_client("local", num_threads=1)) == list(LLM_CLIENT_CHECKS)


def test_a_broken_context_fails_the_suite_by_name() -> None:
    class Forgetful(FakeRunContext):
        async def put_record(self, namespace: str, key: str, data: object) -> None:
            return None

    @asynccontextmanager
    async def make(llm: LLMClient, tools: ToolRegistry, limits: Mapping[str, float]) -> AsyncIterator[FakeRunContext]:
        yield _fake(llm, tools, limits, Forgetful)

    with pytest.raises(AssertionError, match=r"1 of \d+ RunContext checks failed:\n  put_record/get_record"):
        check_run_context(make)


def test_a_client_whose_prompt_count_disagrees_with_its_usage_fails_by_name() -> None:
    class Miscounting(ScriptedClient):
        async def count_prompt_tokens(self, request: LLMRequest) -> int:
            return await super().count_prompt_tokens(request) - 1

    with pytest.raises(AssertionError, match=r"1 of \d+ LLMClient checks failed:\n  count_prompt_tokens"):
        check_llm_client(lambda: Miscounting(ScriptedConfig(lambda _messages: LONG_REPLY)))
