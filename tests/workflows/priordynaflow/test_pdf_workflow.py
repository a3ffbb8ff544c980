"""End to end: the priordynaflow graph trained on a small set with a scripted LLM learns the
edges the rewards favour; the same workflow through the Runtime records steps and saves
versioned Q-tables in the store.

The scripted LLM makes the reward structure explicit: every agent proposes a successor among
the offered candidates (a deterministic pseudo-random choice), and the answer is right only
once the inspector has worked on it. So episodes that pass through the inspector succeed, the
others fail, and the table must come to prefer solver -> inspector and inspector -> END.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select

from orchestrator.testing import FakeRunContext, ScriptedClient, ScriptedConfig
from orchestrator.tools.base import Tool, ToolResult, ToolSpec
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import Message
from workflows.priordynaflow import LearnerPool, RouterConfig, agents
from workflows.priordynaflow.agents import get_roster
from workflows.priordynaflow.config import END
from workflows.priordynaflow.episode import task_problem
from workflows.priordynaflow.graph import build, initial_state, result
from workflows.priordynaflow.prompt import ROUTER_SYSTEM
from workflows.priordynaflow.tasks import get_dataset

TASKS = [{"question": f"What is {i} + {i}?", "answer": str(2 * i), "id": f"t{i}"} for i in range(1, 9)]
CONFIG = RouterConfig(num_explore_steps=30, min_path_length=0, token_penalty_per_1k=0.0, epsilon=0.3,
                      max_path_length=5)


def scripted_reply(messages: Sequence[Message]) -> str:
    system, user = messages[0].content, messages[1].content
    agent = re.search(r"You are the (\w+)", system).group(1)
    options = re.findall(r"^- (\w+):", system.split("choose who works next", 1)[1], re.MULTILINE)
    a, b = map(int, re.search(r"What is (\d+) \+ (\d+)", user).groups())
    inspected = agent == "inspector" or "[inspector]" in user
    answer = a + b if inspected else a + b + 1
    seed = hashlib.sha256(f"{user}|{system}".encode()).hexdigest()
    nxt = random.Random(seed).choice(options)
    return f"As the {agent}: {a} + {b}.\n#### {answer}\nNEXT: {nxt}"


def scripted(reply: Any = scripted_reply) -> ScriptedClient:
    """The scripted LLM answering with ``reply`` (default :func:`scripted_reply`)."""
    return ScriptedClient(ScriptedConfig(responses=reply if callable(reply) else lambda _m: reply))


def context(config: dict[str, Any], llm: ScriptedClient | None = None, tools: ToolRegistry | None = None
            ) -> FakeRunContext:
    return FakeRunContext(llm=llm or scripted(), tools=tools or ToolRegistry(), config=config, run_id="test")


async def run_episodes(pool: LearnerPool, mode: str, tasks: list[dict[str, Any]], **options: Any
                       ) -> list[dict[str, Any]]:
    out = []
    for task in tasks:
        ctx = context({"priordynaflow": {"dataset": "gsm8k", "mode": mode, **options}, "qtable_pool": pool})
        state = await build(ctx).compile().ainvoke(initial_state(task))
        out.append({**result(state), "steps": ctx.steps})
    return out


def test_training_moves_the_table_toward_the_rewarded_edges():
    pool = LearnerPool(config=CONFIG, seed=0)

    async def go():
        train = await run_episodes(pool, "train", TASKS * 8)
        learner = await pool.get("math", ())
        return train, learner

    train, learner = asyncio.run(go())
    q = learner.table
    assert q.num_episodes == len(train) == 64
    assert all(r["learned"] for r in train)
    # Success iff the inspector ran: the scripted rule, checked through the real scorer.
    assert all(r["success"] == ("inspector" in r["path"]) for r in train)
    assert any(r["success"] for r in train) and not all(r["success"] for r in train)
    # END after the inspector is paid; END straight after the solver is not.
    assert q.value("inspector", END) > 50.0
    assert q.value("solver", "inspector") > q.value("solver", END)
    assert q.value("solver", END) < 10.0
    assert q.success_rate("inspector", 0.5) == 1.0
    assert learner.max_deltas and learner.table.epsilon < CONFIG.epsilon

    # Every step recorded its decision; END steps carry the terminal transition.
    steps = train[-1]["steps"]
    agent_steps = [d for node, d in steps if node != "end_episode"]
    assert [s["agent"] for s in agent_steps] == train[-1]["path"]
    assert {"candidates", "proposed", "reason", "reward", "q_values"} <= set(agent_steps[0])
    # (an episode the path cap ended has no END transition: the last one an agent ended)
    ended = next(r for r in reversed(train) if r["stop_reason"] == "agent")
    assert ended["steps"][-1][1]["transitions"][-1][:2] == [ended["path"][-1], END]

    # Evaluation with the frozen table: no updates, and the learned values lead the way (greedy
    # selection, so the scripted agent's random proposals do not blur the learned policy).
    before = q.to_dict()
    greedy = {"router": {**CONFIG.to_dict(), "selection": "greedy"}}
    evaluated = asyncio.run(run_episodes(pool, "eval", TASKS, **greedy))
    assert pool._learners["math"].table.to_dict() == before
    assert not any(r["learned"] for r in evaluated)
    assert all(r["steps"][0][1]["candidates"][0] == "inspector" for r in evaluated)
    assert all(r["path"] == ["solver", "inspector"] and r["success"] for r in evaluated)
    assert sum(r["success"] for r in train[: len(TASKS)]) < len(TASKS)  # cold start did worse


def test_unparsable_marker_ends_the_episode_and_is_counted():
    pool = LearnerPool(config=CONFIG)
    ctx = context({"priordynaflow": {"dataset": "gsm8k"}, "qtable_pool": pool}, llm=scripted("#### 4"))
    state = asyncio.run(build(ctx).compile().ainvoke(initial_state({"question": "2+2?", "answer": "4"})))
    out = result(state)
    assert out["path"] == ["solver"] and out["stop_reason"] == "unparsable" and out["num_unparsable"] == 1
    assert out["success"] is True and out["answer"] == "4"


def _clients(llm: ScriptedClient) -> dict[str, Any]:
    # Given clients are looked up by backend name (older runtimes: name + options repr).
    return {"scripted": llm, "scripted[]": llm}


def _refused_before_storing(tmp_path, task, options=None) -> tuple[str, int]:
    """The BadInputError Runtime.run raises for ``task`` with ``options``, and the runs stored."""
    from orchestrator.errors import BadInputError
    from orchestrator.runtime import Runtime
    from orchestrator.settings import Settings
    from orchestrator.store.models import RunRow
    from orchestrator.tools.sandbox import python_tool

    async def go() -> tuple[str, int]:
        rt = Runtime(Settings(db_url=f"sqlite:///{tmp_path / 'rt.db'}", home=tmp_path),
                     tools=ToolRegistry([python_tool()]), clients=_clients(scripted()))
        try:
            with pytest.raises(BadInputError) as refused:
                await rt.run("priordynaflow", task, backend="scripted", options=options)
            async with rt.store.session() as s:
                num_runs = (await s.execute(select(func.count()).select_from(RunRow))).scalar_one()
            return str(refused.value), num_runs
        finally:
            await rt.aclose()

    return asyncio.run(go())


def test_runtime_run_refuses_a_task_the_workflow_cannot_read_before_storing_it(tmp_path):
    message, num_runs = _refused_before_storing(tmp_path, {"prompt": "Add.", "test_list": ["assert add(1, 2) == 3"]})
    assert "missing 'entry_point' (read as a mbpp row" in message and num_runs == 0


def test_an_unknown_roster_is_refused_before_the_run_is_stored(tmp_path):
    message, num_runs = _refused_before_storing(tmp_path, {"question": "2 + 2?", "answer": "4"}, {"roster": "maths"})
    assert "roster" in message and "'maths'" in message and "math-check" in message and num_runs == 0


@pytest.mark.parametrize(("task", "said"), [
    ({"question": None}, "'question' must be a string, got null (read as a gsm8k row)"),
    ({"question": "2 + 2?", "answer": [4]}, "'answer' must be a string or a number"),
    ({"question": "2 + 2?", "answer": True}, "'answer' must be a string or a number"),
    ({"problem": {"text": "x"}}, "'problem' must be a string, got {\"text\": \"x\"} (read as a math row)"),
    ({"prompt": 3, "entry_point": "f"}, "'prompt' must be a string, got 3 (read as a humaneval row)"),
    ({"prompt": "Add.", "entry_point": "f); import os", "test_list": ["assert f(1) == 1"]},
     "'entry_point' must be a Python function name"),
    ({"prompt": "Add.", "entry_point": "f", "test_list": "assert f(1) == 1"}, "'test_list' must be a list of strings"),
    ({"prompt": "Add.", "entry_point": "f", "test_list": ["assert f(1) == 1", 2]}, "'test_list' must be a list"),
    ({"prompt": "Add.", "entry_point": "f", "test_list": ["assert f(1) == 1"], "test_imports": "import os"},
     "'test_imports' must be a list of strings"),
])
def test_task_fields_of_the_wrong_kind_are_refused_with_the_field_named(task, said):
    # Questions, tests and function names go into prompts and programs: a number where a string
    # belongs, or a function name that is code, is refused before the run (not a traceback later).
    problem = task_problem(task, {})
    assert problem is not None and said in problem


def test_task_fields_of_the_right_kind_pass():
    assert task_problem({"question": "2 + 2?", "answer": 4}, {}) is None
    assert task_problem({"question": "2 + 2?", "answer": "#### 4"}, {}) is None
    assert task_problem({"prompt": "Add.", "entry_point": "add", "test_list": ["assert add(1, 2) == 3"],
                         "test_imports": []}, {}) is None


def test_runtime_run_records_steps_and_saves_a_versioned_table(tmp_path):
    from orchestrator.runtime import Runtime
    from orchestrator.settings import Settings
    from orchestrator.store.models import RecordRow, StepRow
    from orchestrator.tools.sandbox import python_tool
    from workflows.priordynaflow.persistence import NAMESPACE

    async def go():
        rt = Runtime(Settings(db_url=f"sqlite:///{tmp_path / 'rt.db'}", home=tmp_path),
                     tools=ToolRegistry([python_tool()]), clients=_clients(scripted()))
        try:
            options = {"priordynaflow": {"dataset": "gsm8k", "router": {"num_explore_steps": 0,
                                                                        "min_path_length": 0}}}
            runs = [await rt.run("priordynaflow", task, backend="scripted", options=options) for task in TASKS[:3]]
            async with rt.store.session() as s:
                steps = (await s.execute(select(StepRow.node, StepRow.data).where(StepRow.run_id == runs[0].run_id)
                                         .order_by(StepRow.id))).all()
                versions = (await s.execute(select(RecordRow.version).where(
                    RecordRow.namespace == NAMESPACE, RecordRow.key == "math"))).scalars().all()
        finally:
            await rt.aclose()
        return runs, steps, versions

    runs, steps, versions = asyncio.run(go())
    assert all(r.status == "succeeded" for r in runs)
    assert sorted(versions) == [1, 2, 3]  # one new version per learned episode
    assert steps[0][0] == "math.solver" and steps[-1][0] == "end_episode"
    assert steps[-1][1]["path"] == runs[0].result["path"]


def test_without_options_the_task_keys_pick_the_roster_and_the_sandbox_scores_code():
    coder = scripted("```python\ndef add(a, b):\n    return a + b\n```\nNEXT: END")
    calls: list[str] = []

    async def python(args: dict[str, Any]) -> ToolResult:
        calls.append("tests" if "check(add)" in args["code"] else "shown")
        ok = "return a + b" in args["code"]
        return ToolResult("__QUOTAFLOW_TESTS_PASSED__" if ok else "AssertionError", is_error=not ok)

    sandbox = ToolRegistry([Tool(ToolSpec("python", "run python", {
        "type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}), python)])

    task = {"prompt": 'def add(a, b):\n    """Add.\n    >>> add(1, 2)\n    3\n    """\n', "entry_point": "add",
            "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n"}
    pool = LearnerPool(config=CONFIG)
    ctx = context({"qtable_pool": pool}, llm=coder, tools=sandbox)
    state = asyncio.run(build(ctx).compile().ainvoke(initial_state(task)))
    # HumanEval's default roster is code-check: the coder's END is not offered (its router
    # defaults), the runner runs the docstring's example and ends, the tests score the code.
    assert ctx.steps[0][0] == "code-check.coder" and calls == ["shown", "tests"]
    assert result(state)["success"] is True and result(state)["path"] == ["coder", "runner"]
    assert result(state)["num_llm_calls"] == 1
    learned = asyncio.run(pool.get("code-check", ())).config
    assert (learned.min_agents_before_end, learned.self_loops, learned.update_order) == (2, False, "backward")
    assert learned.num_explore_steps == CONFIG.num_explore_steps  # the rest is the pool's config


def test_a_runs_own_router_config_replaces_the_rosters_defaults():
    coder = scripted("```python\ndef add(a, b):\n    return a + b\n```\nNEXT: END")

    async def python(args: dict[str, Any]) -> ToolResult:
        return ToolResult("__QUOTAFLOW_TESTS_PASSED__")

    sandbox = ToolRegistry([Tool(ToolSpec("python", "run python", {
        "type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}), python)])
    task = {"prompt": "def add(a, b):\n", "entry_point": "add", "test": "def check(candidate):\n    pass\n"}
    options = {"router": {"min_agents_before_end": 1, "num_explore_steps": 0, "epsilon": 0.0}}
    ctx = context({"priordynaflow": options, "qtable_pool": LearnerPool(config=CONFIG)}, llm=coder, tools=sandbox)
    state = asyncio.run(build(ctx).compile().ainvoke(initial_state(task)))
    assert result(state)["path"] == ["coder"]  # END after the coder, as the run's config allows


def test_constrained_routing_call_recovers_replies_without_a_marker():
    # The agents never write a NEXT line (as a reply cut by max_tokens): in "marker" mode every
    # episode ends after the start agent; with the constrained routing call the agents' choices
    # ("inspector" while it has not run, then END) are followed.
    def reply(messages: Sequence[Message]) -> str:
        if messages[0].content == ROUTER_SYSTEM:  # the routing call: END once the inspector has run
            return "END" if "-> inspector." in messages[1].content else "the inspector"
        return "Let me compute: 2 + 2 = 4\n#### 4"

    async def go(mode: str) -> tuple[dict[str, Any], FakeRunContext]:
        pool = LearnerPool(config=CONFIG, seed=0)
        ctx = context({"priordynaflow": {"dataset": "gsm8k", "mode": "eval", "next_choice": mode},
                       "qtable_pool": pool}, llm=scripted(reply))
        state = await build(ctx).compile().ainvoke(initial_state({"question": "What is 2 + 2?", "answer": "4"}))
        return result(state), ctx

    marker, _ = asyncio.run(go("marker"))
    assert marker["path"] == ["solver"] and marker["num_unparsable"] == 1
    constrained, ctx = asyncio.run(go("constrained"))
    assert constrained["path"] == ["solver", "inspector"] and constrained["num_unparsable"] == 0
    routing = [c for c in ctx.calls if c.purpose.startswith("route:")]
    assert [c.purpose for c in routing] == ["route:solver", "route:inspector"]
    assert all(c.sampling.choices and c.sampling.max_tokens == 8 for c in routing)
    assert "inspector" in routing[0].sampling.choices
    # The routing call is the task, the path and the reply's end: not the agent's whole turn again.
    assert all(len(c.messages) == 2 and "What is 2 + 2?" in c.messages[1].content for c in routing)


def test_auto_routes_by_the_marker_and_calls_only_for_a_reply_without_one():
    # The solver names a candidate (no routing call); the inspector writes no NEXT line, so its
    # successor comes from the compact routing call. Every call's tokens count in the episode.
    def reply(messages: Sequence[Message]) -> str:
        if "Who works next?" in messages[-1].content:  # the routing call, compact or full
            return "END"
        if messages[0].content.startswith("You are the solver"):
            return "2 + 2 = 4\n#### 4\nNEXT: inspector"
        return "Checked: 2 + 2 = 4.\n#### 4"

    async def go(route_context: str) -> tuple[dict[str, Any], FakeRunContext]:
        options = {"dataset": "gsm8k", "next_choice": "auto", "route_context": route_context}
        ctx = context({"priordynaflow": options, "qtable_pool": LearnerPool(config=CONFIG, seed=0)},
                      llm=scripted(reply))
        state = await build(ctx).compile().ainvoke(initial_state({"question": "What is 2 + 2?", "answer": "4"}))
        return result(state), ctx

    out, ctx = asyncio.run(go("compact"))
    assert out["path"] == ["solver", "inspector"] and out["success"] and out["num_unparsable"] == 0
    assert ctx.purposes() == ["agent:solver", "agent:inspector", "route:inspector"]
    assert out["num_tokens"] == ctx.usage.total_tokens  # the routing call's tokens included
    routing = ctx.calls[-1].messages
    assert routing[0].content == ROUTER_SYSTEM and "Checked: 2 + 2 = 4." in routing[1].content
    assert "You are the inspector" not in routing[1].content and "[solver]" not in routing[1].content

    out, ctx = asyncio.run(go("full"))  # the old call: the inspector's whole turn, then its reply
    assert out["path"] == ["solver", "inspector"] and out["num_unparsable"] == 0
    assert ctx.purposes() == ["agent:solver", "agent:inspector", "route:inspector"]
    assert ctx.calls[-1].messages[:2] == ctx.calls[1].messages and out["num_tokens"] == ctx.usage.total_tokens


def test_without_the_marker_in_turn_agents_get_the_chain_prompt_and_the_routing_call_routes():
    # marker_in_turn=False: the agent's system prompt is its role and the answer format only (no
    # options, no NEXT line, as in the fixed chain); the brief routing call still picks the path.
    def reply(messages: Sequence[Message]) -> str:
        if messages[0].content == ROUTER_SYSTEM:
            return "END" if "-> inspector." in messages[1].content else "inspector"
        return "2 + 2 = 4\n#### 4"

    async def go(marker_in_turn: bool, route_context: str) -> tuple[dict[str, Any], FakeRunContext]:
        options = {"dataset": "gsm8k", "mode": "eval", "next_choice": "constrained",
                   "marker_in_turn": marker_in_turn, "route_context": route_context}
        ctx = context({"priordynaflow": options, "qtable_pool": LearnerPool(config=CONFIG, seed=0)},
                      llm=scripted(reply))
        question = "What is 2 + 2? " + "Some long context. " * 200
        state = await build(ctx).compile().ainvoke(initial_state({"question": question, "answer": "4"}))
        return result(state), ctx

    out, ctx = asyncio.run(go(False, "brief"))
    assert out["path"] == ["solver", "inspector"] and out["success"] and out["num_unparsable"] == 0
    agents = [c for c in ctx.calls if c.purpose.startswith("agent:")]
    assert [c.purpose for c in agents] == ["agent:solver", "agent:inspector"]
    for call in agents:
        system = call.messages[0].content
        assert "NEXT" not in system and "choose who works next" not in system
        assert system.endswith(get_dataset("gsm8k").answer_format)
    with_marker, marked = asyncio.run(go(True, "compact"))
    assert with_marker["path"] == ["solver", "inspector"]
    assert "NEXT: <option>" in marked.calls[0].messages[0].content

    def routing_size(c: FakeRunContext) -> int:
        return sum(len(m.content) for call in c.calls if call.purpose.startswith("route:") for m in call.messages)

    assert routing_size(ctx) < routing_size(marked) - 1500  # brief: 400 task characters, not 1,500


def test_the_runner_checks_the_shown_example_without_a_model_call_and_routes_by_it():
    calls: list[str] = []

    async def python(args: dict[str, Any]) -> ToolResult:
        calls.append(args["code"])
        ok = "return a + b" in args["code"]  # the shown example passes only for the right code
        return ToolResult("__QUOTAFLOW_TESTS_PASSED__" if ok else "AssertionError: add(1, 2) != 3", is_error=not ok)

    sandbox = ToolRegistry([Tool(ToolSpec("python", "run python", {
        "type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}), python)])
    task = {"prompt": "Add two numbers.", "entry_point": "add", "test_list": ["assert add(1, 2) == 3"],
            "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n"}
    seen: list[str] = []

    def coder(body: str) -> Any:
        def reply(messages: Sequence[Message]) -> str:
            seen.append(messages[-1].content)
            return f"```python\ndef add(a, b):\n    return {body}\n```"  # no marker, as Qwen's coder
        return scripted(reply)

    def episode(body: str, **more: Any) -> dict[str, Any]:
        calls.clear()
        options = {"roster": "code-check", "dataset": "mbpp", **more}
        # END is not offered after the coder alone: its reply without a marker goes to the runner.
        pool = LearnerPool(config=replace(CONFIG, min_agents_before_end=2, max_path_length=3))
        ctx = context({"priordynaflow": options, "qtable_pool": pool}, llm=coder(body), tools=sandbox)
        state = asyncio.run(build(ctx).compile().ainvoke(initial_state(task)))
        return {**result(state), "steps": ctx.steps}

    right = episode("a + b")
    assert right["path"] == ["coder", "runner"] and right["num_llm_calls"] == 1 and right["success"] is True
    assert "assert add(1, 2) == 3" in calls[0]  # the runner ran the shown example, then scoring ran
    runner_step = next(s for name, s in right["steps"] if name == "code-check.runner")
    assert (runner_step["tokens"], runner_step["next"], runner_step["ran_code"]) == (0, END, True)
    wrong = episode("a - b", retry="turn")
    assert wrong["path"] == ["coder", "runner", "coder"] and wrong["success"] is False  # the retry is wrong again
    assert "AssertionError: add(1, 2) != 3" in seen[-1]  # the teammate after the runner sees the failure
    # By default (the roster's fresh retry) the coder tries again on the task alone.
    again = episode("a - b")
    assert again["path"] == ["coder", "runner", "coder"] and "AssertionError" not in seen[-1]
    assert seen[-1] == seen[0]


@pytest.mark.parametrize("given_by", ["run", "roster"])
@pytest.mark.parametrize("retry", ["fix", "fresh"])
def test_a_retry_after_a_failed_check_is_resampled_without_routing_and_goes_back_to_the_runner(retry, given_by,
                                                                                               monkeypatch):
    async def python(args: dict[str, Any]) -> ToolResult:
        ok = "return a + b" in args["code"]
        return ToolResult("__QUOTAFLOW_TESTS_PASSED__" if ok else "AssertionError: add(1, 2) != 3", is_error=not ok)

    sandbox = ToolRegistry([Tool(ToolSpec("python", "run python", {
        "type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}), python)])
    task = {"prompt": "Add two numbers.", "entry_point": "add", "test_list": ["assert add(1, 2) == 3"],
            "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n"}

    def coder(messages: Sequence[Message]) -> str:
        if "[runner]" in messages[-1].content and "choose who works next" in messages[0].content:
            return "NEXT: runner"  # as Qwen's coder asked to route after a failure: no code
        if "choose who works next" in messages[0].content:
            return "```python\ndef add(a, b):\n    return a - b\n```"
        return "```python\ndef add(a, b):\n    return a + b\n```"

    options: dict[str, Any] = {"roster": "code-check", "dataset": "mbpp"}
    if given_by == "run":
        options["retry"] = retry
    else:  # the roster's default retry, the run naming none
        monkeypatch.setitem(agents._ROSTERS, "code-check", replace(get_roster("code-check"), retry=retry))
    pool = LearnerPool(config=replace(CONFIG, min_agents_before_end=2, num_explore_steps=0, epsilon=0.0,
                                      min_epsilon=0.0))
    ctx = context({"priordynaflow": options, "qtable_pool": pool}, llm=scripted(coder), tools=sandbox)
    out = result(asyncio.run(build(ctx).compile().ainvoke(initial_state(task))))
    assert out["path"] == ["coder", "runner", "coder", "runner"] and out["success"] is True
    first, again = ctx.calls
    assert (first.sampling.temperature, first.sampling.seed) == (0.1, None)
    assert (again.sampling.temperature, again.sampling.seed) == (0.8, 3)  # its own temperature and seed
    assert "choose who works next" not in again.messages[0].content
    coder_steps = [s for name, s in ctx.steps if name == "code-check.coder"]
    assert [(len(s["candidates"]) > 1, s["retry"]) for s in coder_steps] == [(True, False), (False, True)]
    assert coder_steps[1]["candidates"] == ["runner"]  # handed back to the runner, whatever the table says
    notes = again.messages[-1].content
    assert ("AssertionError" in notes) is (retry == "fix") and ("[runner]" in notes) is (retry == "fix")
    # Without a retry mode the same coder, asked to route after the failure, writes no code (the
    # run's "turn" wins over the roster's default).
    ctx = context({"priordynaflow": {**options, "retry": "turn"}, "qtable_pool": pool}, llm=scripted(coder),
                  tools=sandbox)
    out = result(asyncio.run(build(ctx).compile().ainvoke(initial_state(task))))
    assert out["success"] is False and all(c.sampling.temperature == 0.1 for c in ctx.calls)


def test_math_check_sends_a_failed_program_back_and_ends_on_a_clean_one():
    runs: list[str] = []

    async def python(args: dict[str, Any]) -> ToolResult:
        runs.append(args["code"])
        if "undefined" in args["code"]:
            return ToolResult("exit status: 1\nstderr:\nNameError: name 'undefined' is not defined\n"
                              "    print('####', undefined)", is_error=True)
        return ToolResult("exit status: 0\nstdout:\n#### 4\n")

    sandbox = ToolRegistry([Tool(ToolSpec("python", "run python", {
        "type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}), python)])
    seen: list[str] = []

    def programmer(messages: Sequence[Message]) -> str:
        seen.append(messages[-1].content)
        body = "undefined" if len(seen) == 1 else "2 + 2"
        # As Qwen's programmer on the CPU: a successor it was not asked for (it always hands to
        # the checker, and its prompt carries no routing instructions).
        return f"```python\nprint('####', {body})\n```\nNEXT: solver"

    options = {"roster": "math-check", "dataset": "gsm8k"}
    cold = replace(CONFIG, num_explore_steps=0, epsilon=0.0, min_epsilon=0.0)  # ties go by roster order
    ctx = context({"priordynaflow": options, "qtable_pool": LearnerPool(config=cold)},
                  llm=scripted(programmer), tools=sandbox)
    state = asyncio.run(build(ctx).compile().ainvoke(initial_state({"question": "What is 2 + 2?", "answer": "4"})))
    out = result(state)
    # The retry goes to the checker too, which ends the episode on the clean run's answer.
    assert out["path"] == ["programmer", "checker", "programmer", "checker"] and out["num_llm_calls"] == 2
    assert not any("choose who works next" in m for m in seen)
    assert out["success"] is True and out["answer"] == "4" and len(runs) == 2
    assert "NameError" in seen[-1]  # the retry saw the failed run
    check = next(s for name, s in ctx.steps if name == "math-check.checker")
    assert (check["next"], check["tokens"], check["ran_code"]) == ("programmer", 0, False)
    steps = [s for name, s in ctx.steps if name == "math-check.programmer"]
    assert [s["next"] for s in steps] == ["checker", "checker"]
    # A first program that runs cleanly ends the episode at the checker: one model call.
    seen.append("skip the failing first reply")
    ctx = context({"priordynaflow": options, "qtable_pool": LearnerPool(config=cold)},
                  llm=scripted(programmer), tools=sandbox)
    state = asyncio.run(build(ctx).compile().ainvoke(initial_state({"question": "What is 2 + 2?", "answer": "4"})))
    assert result(state)["path"] == ["programmer", "checker"] and result(state)["num_llm_calls"] == 1
