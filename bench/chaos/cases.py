"""The workflows the chaos campaign kills: every built-in workflow and an SDK workflow whose node
fans out into four parallel tool+LLM branches, each with a task, its tools and a *rule*.

A rule is a pure function of the conversation (``list[Message] -> str``), so a resumed run is
asked the same questions and gets the same replies; the scripted backend and the loopback
OpenAI server play the same rule. Nothing here is a source of quality figures.
"""

from __future__ import annotations

import hashlib
import json
import operator
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from orchestrator.tools.base import Tool, ToolResult, ToolSpec
from orchestrator.tools.registry import ToolRegistry
from orchestrator.types import Message

Rule = Callable[[Sequence[Message]], str]

__all__ = ["CASES", "EMPTY_STATE_WORKFLOW", "SDK_WORKFLOW", "Case", "Rule", "case_tools", "load_cases"]

SDK_WORKFLOW = "chaos_fanout"
EMPTY_STATE_WORKFLOW = "chaos_empty_state"
NUM_BRANCHES = 4


@dataclass(frozen=True)
class Case:
    """One workflow to kill: ``rt.run(workflow, task, tools=..., budget=..., options=...)``."""

    workflow: str
    task: dict[str, Any]
    rule: Rule
    tools: tuple[str, ...] = ()
    budget: str = ""
    options: dict[str, Any] = field(default_factory=dict)


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


# -- tools: deterministic, in memory (the corpus tools need a corpus; these need nothing) -------------

def _lookup_tool(name: str, unit: str) -> Tool:
    async def run(args: dict[str, Any]) -> ToolResult:
        text = str(args.get("query") or args.get("url") or args)
        return ToolResult(f"1. {text.title()} (wiki://{_h(text) % 97}): Gustave Eiffel was born in Dijon.")

    props = {"query": {"type": "string"}} if name == "search" else {"url": {"type": "string"}}
    spec = ToolSpec(name, f"{name} the corpus", {"type": "object", "properties": props,
                                                  "required": list(props)}, unit=unit)
    return Tool(spec, run)


def case_tools() -> ToolRegistry:
    """search and browse, answering deterministically from the request alone, and the real
    sandboxed ``python`` (a deterministic program prints the same output every run)."""
    from orchestrator.tools.sandbox import python_tool

    return ToolRegistry([_lookup_tool("search", "query"), _lookup_tool("browse", "page"), python_tool()])


# -- rules ------------------------------------------------------------------------------------------

def _react(messages: Sequence[Message]) -> str:
    from workflows.bats.prompts import READ_SYSTEM

    if messages[0].content == READ_SYSTEM:  # the reading call over the run's search results
        return "Paris"
    start = max(i for i, m in enumerate(messages) if m.role == "user" and "Question:" in m.content)
    # Turns so far: the loopback server sees tool observations as other roles than "tool".
    turns = sum(1 for m in messages[start:] if m.role == "assistant")
    return f"search: query number {turns}" if turns < 4 else "answer: Paris"


def _bats(messages: Sequence[Message]) -> str:
    from workflows.bats import prompts
    from workflows.bats.agent import strip_demo

    system = messages[0].content
    if system == prompts.PLANNER_SYSTEM:
        return "explore: who designed the tower\nverify: where the designer was born"
    if system == prompts.VERIFIER_SYSTEM:
        return ('{"verdicts": ["satisfied", "unverifiable"], "decision": "CONTINUE", '
                '"justification": "birthplace open", "summary": "designer found"}')
    tools = sum(1 for m in strip_demo(messages) if m.role == "assistant")
    if tools >= 2:
        return "answer: Dijon"
    return f"search: eiffel tower {tools}\nsearch: gustave eiffel {tools}"


def _priordynaflow(messages: Sequence[Message]) -> str:
    system, user = messages[0].content, messages[1].content
    agent = re.search(r"You are the (\w+)", system)
    options = re.findall(r"^- (\w+):", system.split("choose who works next", 1)[-1], re.MULTILINE)
    numbers = re.search(r"What is (\d+) \+ (\d+)", user)
    a, b = map(int, numbers.groups()) if numbers else (1, 1)
    name = agent.group(1) if agent else "solver"
    inspected = name == "inspector" or "[inspector]" in user
    nxt = random.Random(_h(f"{user}|{system}")).choice(options) if options else "END"
    return f"As the {name}: {a} + {b}.\n#### {a + b if inspected else a + b + 1}\nNEXT: {nxt}"


_WRONG_ADD = "```python\ndef add(a, b):\n    return a - b\n```"
_RIGHT_ADD = "```python\ndef add(a, b):\n    return a + b\n```"


def _priordynaflow_code(messages: Sequence[Message]) -> str:
    """The code-check roster on an MBPP-like task: the coder's code fails the shown example (its
    fresh retries too: the same prompt), the reviewer, who sees the failure, fixes it; a routing
    call picks one of its options by the conversation's hash."""
    from workflows.priordynaflow.prompt import ROUTER_SYSTEM

    system, user = messages[0].content, messages[-1].content
    if system == ROUTER_SYSTEM:
        options = re.findall(r"^- (\w+):", user, re.MULTILINE)
        return random.Random(_h(user)).choice(options) if options else "END"
    agent = re.search(r"You are the (\w+)", system)
    name = agent.group(1) if agent else "coder"
    if name == "planner":
        return "Plan: return the sum of the two arguments."
    if name == "reviewer" and "AssertionError" in user:
        return f"The code subtracts; it must add.\n{_RIGHT_ADD}"
    return f"Here is the function.\n{_WRONG_ADD}"


def _drqa(messages: Sequence[Message]) -> str:
    from bench.drqa.responder import reply

    return reply([{"role": m.role, "content": m.content} for m in messages], 256)[0]


def _batchprompt_rule() -> tuple[Rule, list[dict[str, str]]]:
    from workflows.batchprompt.scripted import Labeler
    from workflows.batchprompt.tasks import Item, load_task

    items = [Item(key=str(i), inputs={"premise": f"Premise number {i} says the sky was grey on day {i}.",
                                      "hypothesis": f"Day {i} was grey."},
                  gold="entailment" if i % 2 == 0 else "not_entailment") for i in range(12)]
    labeler = Labeler(load_task("rte"), items, error_rate=0.1, unsure_rate=0.3, max_answers=6)
    rows = [{"idx": i.key, **i.inputs, "label": i.gold or ""} for i in items]
    return labeler, rows


def _fanout(messages: Sequence[Message]) -> str:
    last = messages[-1].content
    aspect = re.search(r"aspect \d", last, re.IGNORECASE)
    return f"summary {_h(last) % 1000}: {aspect.group(0).lower() if aspect else last[:40]}"


# -- the SDK workflow: one node, four parallel branches (Send), each a tool call then an LLM call ----

class _FanState(TypedDict, total=False):
    question: str
    branch: int
    findings: Annotated[list[str], operator.add]
    answer: str


def _build_fanout(ctx: Any) -> Any:
    async def branch(state: _FanState) -> dict[str, Any]:
        i = state["branch"]
        found = await ctx.call_tool("search", {"query": f"{state['question']} aspect {i}"})
        reply = await ctx.chat([Message("user", f"Branch {i}: summarise {found.content}")], purpose=f"branch{i}")
        return {"findings": [f"{i}:{reply.text}"]}

    async def combine(state: _FanState) -> dict[str, Any]:
        reply = await ctx.chat([Message("user", "Combine: " + " | ".join(sorted(state["findings"])))],
                               purpose="combine")
        return {"answer": reply.text}

    def fan(state: _FanState) -> list[Send]:
        return [Send("branch", {"question": state["question"], "branch": i}) for i in range(NUM_BRANCHES)]

    graph = StateGraph(_FanState)
    graph.add_node("branch", branch)
    graph.add_node("combine", combine)
    graph.add_conditional_edges(START, fan, ["branch"])
    graph.add_edge("branch", "combine")
    graph.add_edge("combine", END)
    return graph


# -- an SDK workflow whose initial state is {}: three LLM steps in a row ------------------------------

class _ChainState(TypedDict, total=False):
    notes: Annotated[list[str], operator.add]


def _build_chain(ctx: Any) -> Any:
    def step(i: int) -> Callable[[_ChainState], Any]:
        async def node(state: _ChainState) -> dict[str, Any]:
            reply = await ctx.chat([Message("user", f"Step {i} after: {' / '.join(state.get('notes', []))}")],
                                   purpose=f"step{i}")
            return {"notes": [reply.text]}
        return node

    graph = StateGraph(_ChainState)
    for i in range(3):
        graph.add_node(f"step{i}", step(i))
    graph.add_edge(START, "step0")
    graph.add_edge("step0", "step1")
    graph.add_edge("step1", "step2")
    graph.add_edge("step2", END)
    return graph


def register_sdk_workflows() -> None:
    """Register :data:`SDK_WORKFLOW` and :data:`EMPTY_STATE_WORKFLOW` (each process that runs or
    resumes them calls this)."""
    from orchestrator.workflow import Workflow, register

    register(Workflow(SDK_WORKFLOW, _build_fanout, lambda task: {"question": task["question"], "findings": []},
                      lambda state: {"answer": state.get("answer"), "findings": sorted(state.get("findings", []))}))
    register(Workflow(EMPTY_STATE_WORKFLOW, _build_chain, lambda _task: {},
                      lambda state: {"answer": (state.get("notes") or [None])[-1], "notes": state.get("notes", [])}))


def _cases() -> dict[str, Case]:
    from workflows.drqa.sim import make_rows

    labeler, bp_rows = _batchprompt_rule()
    drqa_rows = make_rows([1, 2, 1, 12, 1, 2])
    return {
        "react": Case("react", {"question": "Capital of France?"}, _react, ("search",), "search=10",
                      {"max_turns": 8}),
        "bats": Case("bats", {"question": "Where was the Eiffel Tower's designer born?"}, _bats,
                     ("search", "browse"), "search=4,browse=3"),
        "priordynaflow": Case("priordynaflow", {"question": "What is 3 + 4?", "answer": "7", "id": "t3"},
                              _priordynaflow, (), "",
                              {"priordynaflow": {"dataset": "gsm8k",
                                                 "router": {"num_explore_steps": 0, "min_path_length": 0,
                                                            "max_path_length": 5}}}),
        # The code-check default: the sandbox runs the shown example, failed checks go back to the
        # coder (a fresh retry at its own temperature and seed) or a teammate.
        "priordynaflow_code": Case("priordynaflow", {"prompt": "Write a function that adds two numbers.",
                                                     "entry_point": "add", "task_id": "c1", "test_imports": [],
                                                     "test_list": ["assert add(2, 3) == 5", "assert add(0, 0) == 0"],
                                                     "test": "def check(f):\n    assert f(1, 1) == 2\n"},
                                   _priordynaflow_code, ("python",), "python=12",
                                   {"priordynaflow": {"dataset": "mbpp",
                                                      "router": {"num_explore_steps": 0, "min_path_length": 0,
                                                                 "max_path_length": 7, "min_agents_before_end": 2,
                                                                 "self_loops": False,
                                                                 "update_order": "backward"}}}),
        "batchprompt": Case("batchprompt", {"task": "rte", "rows": bp_rows, "batch_size": 4, "rounds": 3,
                                            "seas": True}, labeler, (), "tokens=1000000"),
        "drqa": Case("drqa", {"rows": drqa_rows, "dataset": "gsm8k"}, _drqa, (), "",
                     # The batch probe (difficulty_signal=mixed): its node sends several calls at once.
                     {"method": "drqa", "total_budget": 3000, "batch_size": 3, "floor_tokens": 16,
                      "ceiling_tokens": 400, "difficulty_signal": "mixed"}),
        SDK_WORKFLOW: Case(SDK_WORKFLOW, {"question": "Eiffel tower"}, _fanout, ("search",), "search=10"),
        EMPTY_STATE_WORKFLOW: Case(EMPTY_STATE_WORKFLOW, {}, _fanout),
    }


CASES: dict[str, Case] = {}


def load_cases() -> dict[str, Case]:
    """The cases (built on first use: the batchprompt labeler loads its task)."""
    if not CASES:
        register_sdk_workflows()
        CASES.update(_cases())
    return CASES


def describe(case: Case) -> str:
    return json.dumps({"workflow": case.workflow, "tools": case.tools, "budget": case.budget})


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]
