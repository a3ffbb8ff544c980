"""The ``priordynaflow`` LangGraph: ``begin`` (picks the task's roster), one node per agent
(named ``<roster>.<agent>``) and ``end_episode``; every agent node ends with ``Command(goto=...)``
naming the successor the router decided at run time.

Each agent turn is one ``ctx.chat`` call (and one ``ctx.call_tool`` of the python sandbox when
the agent has the python tool and wrote code). Every turn records its candidates, the agent's
proposal, the decision, the reward and the Q values in the store via ``ctx.record_step``.
``end_episode`` scores the solution (code through the sandbox tool), adds the terminal
transition and, in training mode, updates the family's Q-table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

from langgraph.graph import END as GRAPH_END
from langgraph.graph import START, StateGraph
from langgraph.types import Command

from orchestrator.types import Message, SamplingOptions
from workflows.priordynaflow.agents import (
    PYTHON,
    Roster,
    get_roster,
    roster_names,
    routing_instructions,
)
from workflows.priordynaflow.config import END, WorkflowOptions
from workflows.priordynaflow.learner import LearnerPool, default_pool, pool_for_store
from workflows.priordynaflow.qtable import Transition
from workflows.priordynaflow.router import decide, select_candidates, terminal_reward
from workflows.priordynaflow.tasks import (
    Dataset,
    ExecResult,
    extract_code,
    get_dataset,
    infer_dataset,
)

if TYPE_CHECKING:
    from orchestrator.context import RunContext

BEGIN_NODE = "begin"
END_NODE = "end_episode"
_MAX_NOTE_CHARS = 1800
_MAX_OBSERVATION_CHARS = 1200
_NUM_NOTES = 4


class EpisodeState(TypedDict, total=False):
    """The graph's state (all plain JSON values, so the checkpointer can store it)."""

    task: dict[str, Any]
    roster: str
    path: list[str]
    notes: list[dict[str, str]]
    transitions: list[list[Any]]
    cumulative_reward: float
    solution: str | None
    num_tokens: int
    num_llm_calls: int
    num_tool_calls: int
    num_unparsable: int
    num_off_candidate: int
    last_turn_tokens: int
    stop_reason: str
    success: bool | None
    learned: bool


def initial_state(task: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": task,
        "roster": "",
        "path": [],
        "notes": [],
        "transitions": [],
        "cumulative_reward": 0.0,
        "solution": None,
        "num_tokens": 0,
        "num_llm_calls": 0,
        "num_tool_calls": 0,
        "num_unparsable": 0,
        "num_off_candidate": 0,
        "last_turn_tokens": 0,
        "stop_reason": "",
        "success": None,
        "learned": False,
    }


def result(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "answer": state.get("solution"),
        "success": state.get("success"),
        "path": state.get("path", []),
        "stop_reason": state.get("stop_reason", ""),
        "reward": state.get("cumulative_reward", 0.0),
        "num_tokens": state.get("num_tokens", 0),
        "num_llm_calls": state.get("num_llm_calls", 0),
        "num_unparsable": state.get("num_unparsable", 0),
        "learned": state.get("learned", False),
    }


def _resolve(options: WorkflowOptions, task: dict[str, Any]) -> tuple[Dataset, Roster, str]:
    dataset = get_dataset(options.dataset or infer_dataset(task))
    roster = get_roster(options.roster or dataset.roster)
    return dataset, roster, options.family or roster.name


def node_name(roster: str, agent: str) -> str:
    return f"{roster}.{agent}"


def task_message(question: str, notes: list[dict[str, str]]) -> str:
    """The user turn every agent gets: the task and the latest teammates' notes."""
    parts = [f"Task:\n{question}"]
    if notes:
        parts.append("Notes from your teammates, oldest first:")
        for note in notes[-_NUM_NOTES:]:
            text = note["text"][-_MAX_NOTE_CHARS:]
            if note.get("observation"):
                text += f"\n[program output]\n{note['observation']}"
            parts.append(f"[{note['agent']}]\n{text}")
    return "\n\n".join(parts)


def _sandbox_runner(ctx: RunContext, tool: str):
    async def run(code: str) -> ExecResult:
        out = await ctx.call_tool(tool, {"code": code})
        return ExecResult(ok=not out.is_error, output=out.content)

    return run


def _pool(ctx: RunContext) -> LearnerPool:
    """``ctx.config["qtable_pool"]`` when given (direct graph use), else the pool of the
    runtime's store (tables persist in its database), else the in-memory default pool."""
    given = (ctx.config or {}).get("qtable_pool")
    if isinstance(given, LearnerPool):
        return given
    # The runtime's context carries its Runtime (not part of the RunContext protocol yet).
    store = getattr(ctx, "store", None)
    return pool_for_store(store) if store is not None else default_pool()


def build(ctx: RunContext) -> StateGraph:
    """The graph for one run: nodes for the roster the options name, or for every registered
    roster when the roster depends on the task (``begin`` picks it from the task's dataset)."""
    options = WorkflowOptions.from_config(ctx.config or {})
    pool = _pool(ctx)
    if options.roster or options.dataset:
        rosters = [get_roster(options.roster or get_dataset(options.dataset or "").roster)]
    else:
        rosters = [get_roster(name) for name in roster_names()]
    sampling = SamplingOptions(max_tokens=options.max_tokens, temperature=options.temperature)
    run_sandbox = _sandbox_runner(ctx, options.python_tool)

    async def begin(state: EpisodeState) -> Command:
        _, roster, _ = _resolve(options, state["task"])
        return Command(goto=node_name(roster.name, roster.start), update={"roster": roster.name})

    def make_agent_node(roster: Roster, name: str):
        role = roster.get(name)

        async def agent_node(state: EpisodeState) -> Command:
            task = state["task"]
            dataset, _, family = _resolve(options, task)
            learner = await pool.get(family, roster.names, options.router)
            config = learner.run_config(options.router, evaluate=options.mode == "eval")
            path = [*state["path"], name]
            candidates = select_candidates(learner.table, name, config, learner.rng)
            system = "\n\n".join(
                [role.prompt, dataset.answer_format, routing_instructions(roster, path, candidates.actions)]
            )
            messages = [Message("system", system), Message("user", task_message(dataset.question(task), state["notes"]))]
            uses_python = PYTHON in role.tools
            response = await ctx.chat(
                messages,
                sampling=sampling,
                tool_name=options.python_tool if uses_python else None,
                purpose=f"agent:{name}",
            )
            num_tokens = response.usage.total_tokens
            observation = ""
            num_tool_calls = state["num_tool_calls"]
            code = extract_code(response.text) if uses_python else None
            if code:
                executed = await run_sandbox(code)
                observation = executed.output[-_MAX_OBSERVATION_CHARS:]
                num_tool_calls += 1
            solution = state["solution"]
            if role.produces_solution:
                found = dataset.extract(f"{response.text}\n{observation}", task)
                solution = found if found is not None else solution

            decision = decide(
                learner.table,
                current=name,
                previous=state["path"][-1] if state["path"] else None,
                output=response.text,
                candidates=candidates,
                cumulative_reward=state["cumulative_reward"],
                path_length=len(path),
                num_tokens=num_tokens,
                config=config,
            )
            transitions = list(state["transitions"])
            cumulative = state["cumulative_reward"]
            if decision.action != END:
                transitions.append([name, decision.action, decision.reward])
                cumulative += decision.reward
            await ctx.record_step(
                node_name(roster.name, name),
                {
                    "agent": name,
                    "family": family,
                    "candidates": list(candidates.actions),
                    "random_pick": candidates.random_pick,
                    "exploring": candidates.exploring,
                    "pruned": list(candidates.pruned),
                    "q_values": learner.table.row(name),
                    "proposed": decision.proposed,
                    "next": decision.next,
                    "reason": decision.reason,
                    "reward": decision.reward,
                    "cumulative_reward": cumulative,
                    "tokens": num_tokens,
                    "ran_code": bool(code),
                },
            )
            update = {
                "path": path,
                "notes": [*state["notes"], {"agent": name, "text": response.text, "observation": observation}],
                "transitions": transitions,
                "cumulative_reward": cumulative,
                "solution": solution,
                "num_tokens": state["num_tokens"] + num_tokens,
                "num_llm_calls": state["num_llm_calls"] + 1,
                "num_tool_calls": num_tool_calls,
                "num_unparsable": state["num_unparsable"] + (decision.reason == "unparsable"),
                "num_off_candidate": state["num_off_candidate"] + (decision.reason == "off_candidate"),
                "last_turn_tokens": num_tokens,
                "stop_reason": decision.reason if decision.next == END else "",
            }
            goto = END_NODE if decision.next == END else node_name(roster.name, decision.next)
            return Command(goto=goto, update=update)

        return agent_node

    async def end_episode(state: EpisodeState) -> dict[str, Any]:
        task = state["task"]
        dataset, roster, family = _resolve(options, task)
        learner = await pool.get(family, roster.names, options.router)
        config = learner.run_config(options.router, evaluate=options.mode == "eval")
        success = await dataset.score(task, state["solution"], run_sandbox) if dataset.has_gold(task) else None
        transitions = [Transition(s, a, float(r)) for s, a, r in state["transitions"]]
        cumulative = state["cumulative_reward"]
        if state["stop_reason"] != "early_stop" and state["path"]:
            reward = terminal_reward(
                success=bool(success),
                path_length=len(state["path"]),
                num_tokens=state["last_turn_tokens"],
                config=config,
            )
            transitions.append(Transition(state["path"][-1], END, reward))
            cumulative += reward
        # An episode without a gold answer has no outcome to learn from.
        learned = success is not None and learner.learn(transitions, state["path"], success, config)
        if learned:
            await pool.after_episode(learner)
        await ctx.record_step(
            END_NODE,
            {
                "family": family,
                "path": state["path"],
                "success": success,
                "stop_reason": state["stop_reason"],
                "transitions": [[t.state, t.action, t.reward] for t in transitions],
                "cumulative_reward": cumulative,
                "learned": learned,
                "epsilon": learner.table.epsilon,
                "num_learned_steps": learner.table.num_steps,
            },
        )
        return {
            "success": success,
            "learned": learned,
            "cumulative_reward": cumulative,
            "transitions": [[t.state, t.action, t.reward] for t in transitions],
        }

    graph = StateGraph(EpisodeState)
    graph.add_node(BEGIN_NODE, begin, destinations=tuple(node_name(r.name, r.start) for r in rosters))
    for roster in rosters:
        destinations = (*(node_name(roster.name, n) for n in roster.names), END_NODE)
        for name in roster.names:
            graph.add_node(node_name(roster.name, name), make_agent_node(roster, name), destinations=destinations)
    graph.add_node(END_NODE, end_episode)
    graph.add_edge(START, BEGIN_NODE)
    graph.add_edge(END_NODE, GRAPH_END)
    return graph
