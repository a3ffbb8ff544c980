"""The ``priordynaflow`` LangGraph: ``begin`` (picks the task's roster), one node per agent
(named ``<roster>.<agent>``) and ``end_episode``; every agent node ends with ``Command(goto=...)``
naming the successor the router decided at run time.

The nodes only do the I/O; what they decide comes from the pure steps of
:mod:`workflows.priordynaflow.episode`. Each agent turn is one ``ctx.chat`` call (and one
``ctx.call_tool`` of the python sandbox when the agent has the python tool and wrote code, and
one short routing call constrained to the candidates' names when ``next_choice`` asks for it), then
``episode.decide`` says where to go, how the state changes and what ``ctx.record_step`` stores
(candidates, the agent's proposal, the decision, the reward, the Q values). ``end_episode``
scores the solution (code through the sandbox tool), takes the terminal transition from
``episode.finish`` and, in training mode, updates the family's Q-table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from langgraph.graph import END as GRAPH_END
from langgraph.graph import START, StateGraph
from langgraph.types import Command

from orchestrator.journal import task_of_current_node
from orchestrator.types import SamplingOptions
from workflows.priordynaflow.config import END, RouterConfig, WorkflowOptions
from workflows.priordynaflow.episode import (
    EpisodeState,
    Observation,
    Turn,
    check_reply,
    decide,
    finish,
    initial_state,
    needs_choice_call,
    resolve,
    result,
    rosters_for,
    start_turn,
)
from workflows.priordynaflow.learner import Learner, LearnerPool, default_pool, pool_for_store
from workflows.priordynaflow.prompt import task_message
from workflows.priordynaflow.tasks import ExecResult

if TYPE_CHECKING:
    from orchestrator.context import RunContext
    from workflows.priordynaflow.agents import Roster

__all__ = [
    "BEGIN_NODE",
    "END_NODE",
    "EpisodeState",
    "build",
    "initial_state",
    "node_name",
    "result",
    "task_message",
]

BEGIN_NODE = "begin"
END_NODE = "end_episode"


def node_name(roster: str, agent: str) -> str:
    return f"{roster}.{agent}"


def build(ctx: RunContext) -> StateGraph:
    """The graph for one run: nodes for the roster the options name, or for every registered
    roster when the roster depends on the task (``begin`` picks it from the task's dataset)."""
    options = WorkflowOptions.from_config(ctx.config or {})
    nodes = _Nodes(ctx, options, _pool(ctx))
    rosters = rosters_for(options)
    graph = StateGraph(EpisodeState)
    graph.add_node(BEGIN_NODE, nodes.begin, destinations=tuple(node_name(r.name, r.start) for r in rosters))
    for roster in rosters:
        destinations = (*(node_name(roster.name, n) for n in roster.names), END_NODE)
        for name in roster.names:
            graph.add_node(node_name(roster.name, name), _AgentNode(nodes, roster, name), destinations=destinations)
    graph.add_node(END_NODE, nodes.end_episode)
    graph.add_edge(START, BEGIN_NODE)
    graph.add_edge(END_NODE, GRAPH_END)
    return graph


def _pool(ctx: RunContext) -> LearnerPool:
    """``ctx.config["qtable_pool"]`` when given (direct graph use), else the pool of the
    runtime's store (tables persist in its database), else the in-memory default pool."""
    given = (ctx.config or {}).get("qtable_pool")
    if isinstance(given, LearnerPool):
        return given
    # The runtime's context carries its store (not part of the RunContext protocol yet).
    store = getattr(ctx, "store", None)
    return pool_for_store(store) if store is not None else default_pool()


class _Nodes:
    """The nodes of one run's graph: I/O through ``ctx``, decisions from ``episode``."""

    def __init__(self, ctx: RunContext, options: WorkflowOptions, pool: LearnerPool) -> None:
        self.ctx = ctx
        self.options = options
        self.pool = pool
        self.sampling = SamplingOptions(max_tokens=options.max_tokens, temperature=options.temperature)

    async def begin(self, state: EpisodeState) -> Command:
        _, roster, _ = resolve(self.options, state["task"])
        return Command(goto=node_name(roster.name, roster.start), update={"roster": roster.name})

    async def agent_turn(self, state: EpisodeState, roster: Roster, name: str) -> Command:
        dataset, _, family = resolve(self.options, state["task"])
        learner, config = await self._learner(family, roster)
        turn = start_turn(state, roster=roster, agent=name, dataset=dataset, family=family,
                          table=learner.table, config=config, rng=learner.rng, marker=self.options.marker_in_turn,
                          retry=self.options.retry or roster.retry)
        # The table is read again after the turn's I/O: another run may have learned meanwhile.
        action = decide(state, turn, await self._observe(turn, state), learner.table)
        await self.ctx.record_step(node_name(roster.name, name), action.record)
        goto = END_NODE if action.next == END else node_name(roster.name, action.next)
        return Command(goto=goto, update=action.update)

    async def end_episode(self, state: EpisodeState) -> dict[str, Any]:
        task = state["task"]
        dataset, roster, family = resolve(self.options, task)
        learner, config = await self._learner(family, roster)
        success = await dataset.score(task, state["solution"], self._run_code) if dataset.has_gold(task) else None
        ending = finish(state, success, config)
        # Learned at most once: a resumed run may end here again after its table was saved. The
        # record shows what this episode's learning left (the same on resume), nothing else.
        episode = (self.ctx.run_id, task_of_current_node()[0])
        schedule = await self.pool.learned(learner, episode) if ending.has_outcome else None
        if schedule is None and ending.has_outcome and learner.learn(
                ending.transitions, state["path"], bool(success), config, episode):
            schedule = learner.unsaved[episode]
            await self.pool.after_episode(learner)
        await self.ctx.record_step(END_NODE, ending.record(state, family=family, schedule=schedule))
        return ending.update(learned=schedule is not None)

    async def _learner(self, family: str, roster: Roster) -> tuple[Learner, RouterConfig]:
        # A run's own router config, else the pool's with the roster's defaults (at creation).
        config = self.options.router or roster.router_config(self.pool.config)
        learner = await self.pool.get(family, roster.names, config)
        return learner, learner.run_config(self.options.router, evaluate=self.options.mode == "eval")

    async def _observe(self, turn: Turn, state: EpisodeState) -> Observation:
        """Run ``turn``: one chat call, then the sandbox when the reply has code to run (an agent
        that checks examples: the sandbox only, on the episode's solution)."""
        if turn.role.checks_examples:
            return await self._check(turn, state)
        response = await self.ctx.chat(
            list(turn.messages),
            sampling=self._retry_sampling(turn) if turn.retry else self.sampling,
            tool_name=self.options.python_tool if turn.uses_python else None,
            purpose=f"agent:{turn.agent}",
        )
        code = turn.code_to_run(response.text)
        run = await self._run_code(code) if code else None
        num_tokens, choice = response.usage.total_tokens, None
        if needs_choice_call(turn, response.text, self.options.next_choice):
            routed = await self.ctx.chat(
                list(turn.routing_messages(response.text, self.options.route_context)),
                sampling=SamplingOptions(max_tokens=self.options.choice_max_tokens, temperature=0.0,
                                         choices=turn.candidates.actions),
                purpose=f"route:{turn.agent}",
            )
            num_tokens, choice = num_tokens + routed.usage.total_tokens, routed.text
        return Observation(response.text, num_tokens, code, run.output if run else "", choice,
                           program_ok=run.ok if run else None)

    def _retry_sampling(self, turn: Turn) -> SamplingOptions:
        """A retry's sampling: its own temperature, and a seed of its own (its place in the path),
        so a second retry of the same prompt is not the first one again."""
        return replace(self.sampling, temperature=self.options.retry_temperature, seed=len(turn.path))

    async def _check(self, turn: Turn, state: EpisodeState) -> Observation:
        solution, shown = state.get("solution"), turn.dataset.shown_examples
        if shown is None:  # a dataset without shown examples (math): did a program print the answer?
            passed = None if solution is None else bool(state.get("solution_from_program"))
            return _checked(turn, passed, "program", answered=solution is not None)
        program = shown(state["task"], solution) if solution else None
        run = await self._run_code(program) if program else None
        passed = None if run is None else run.passed
        return _checked(turn, passed, "examples", answered=bool(solution), program=program,
                        output=run.output if run else "")

    async def _run_code(self, code: str) -> ExecResult:
        out = await self.ctx.call_tool(self.options.python_tool, {"code": code})
        return ExecResult(ok=not out.is_error, output=out.content)


def _checked(turn: Turn, passed: bool | None, what: str, *, answered: bool, program: str | None = None,
             output: str = "") -> Observation:
    """The observation of a check (no model call): :func:`check_reply`'s verdict, and whether it
    failed (the check failed, or there was no solution to check), which makes the next turn of the
    checked work's author a retry."""
    return Observation(check_reply(turn, passed, what, answered=answered), 0, program, output, num_llm_calls=0,
                       check_failed=passed is False or not answered)


@dataclass(frozen=True)
class _AgentNode:
    """The node of agent ``name`` of ``roster`` (a callable, so LangGraph sees an async node)."""

    nodes: _Nodes
    roster: Roster
    name: str

    async def __call__(self, state: EpisodeState) -> Command:
        return await self.nodes.agent_turn(state, self.roster, self.name)
