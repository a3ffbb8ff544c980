"""One PriorDynaFlow episode as pure steps; the graph's nodes (``workflows.priordynaflow.graph``)
do the I/O around them.

- :func:`start_turn`: before an agent runs, its candidates (from the Q-table) and its messages.
- :func:`decide`: after it ran (an :class:`Observation`: its reply, tokens, program output), the
  :class:`Action`: which agent runs next or END, the graph state update and the step record.
- :func:`finish`: at END, with the task's outcome, the terminal transition and reward
  (:class:`Ending`), what to record and whether the episode has an outcome to learn from.

The state is the graph's :class:`EpisodeState` (plain JSON, so the checkpointer can store it).
Pure: state, table, config and an injected ``random.Random`` in; decisions out. No I/O, no clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from orchestrator.types import Message
from workflows.priordynaflow.agents import PYTHON, AgentRole, Roster, get_roster, roster_names
from workflows.priordynaflow.config import END, RouterConfig, WorkflowOptions
from workflows.priordynaflow.persistence import Learned
from workflows.priordynaflow.prompt import (
    BRIEF_REPLY_CHARS,
    BRIEF_TASK_CHARS,
    agent_messages,
    choice_messages,
    full_choice_messages,
)
from workflows.priordynaflow.qtable import QTable, Transition
from workflows.priordynaflow.router import Candidates, Decision, parse_next, select_candidates, terminal_reward
from workflows.priordynaflow.router import decide as route
from workflows.priordynaflow.tasks import (
    Dataset,
    extract_code,
    field_problem,
    get_dataset,
    infer_dataset,
    without_code,
)

__all__ = [
    "Action",
    "Ending",
    "EpisodeState",
    "Observation",
    "Turn",
    "check_reply",
    "decide",
    "finish",
    "initial_state",
    "needs_choice_call",
    "resolve",
    "result",
    "rosters_for",
    "start_turn",
    "task_problem",
    "turn_solution",
]

MAX_OBSERVATION_CHARS = 1200
"""Only the tail of a program's output this long becomes part of the agent's note."""


class EpisodeState(TypedDict, total=False):
    """The graph's state (all plain JSON values, so the checkpointer can store it)."""

    task: dict[str, Any]
    roster: str
    path: list[str]
    notes: list[dict[str, str]]
    transitions: list[list[Any]]
    cumulative_reward: float
    solution: str | None
    solution_from_program: bool  # the solution is what a program that ran cleanly printed
    num_tokens: int
    num_llm_calls: int
    num_tool_calls: int
    num_unparsable: int
    num_off_candidate: int
    last_turn_tokens: int
    retry_of: str  # the agent whose check failed in the latest turn ("": none did)
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
        "solution_from_program": False,
        "num_tokens": 0,
        "num_llm_calls": 0,
        "num_tool_calls": 0,
        "num_unparsable": 0,
        "num_off_candidate": 0,
        "last_turn_tokens": 0,
        "retry_of": "",
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


def resolve(options: WorkflowOptions, task: dict[str, Any]) -> tuple[Dataset, Roster, str]:
    """The dataset, roster and Q-table family of ``task``: the options' choices, else inferred
    from the task's keys."""
    dataset = get_dataset(options.dataset or infer_dataset(task))
    roster = get_roster(options.roster or dataset.roster)
    return dataset, roster, options.family or roster.name


def task_problem(task: dict[str, Any], config: dict[str, Any]) -> str | None:
    """What keeps the workflow from reading ``task`` with the run's options ``config`` (None when
    nothing does): the dataset it is read as (the options' or the one its keys look like) needs
    keys the row lacks or holds a value of the wrong kind there (a number for a question, a
    function name that is not one), or its question is empty."""
    options = WorkflowOptions.from_config(config)
    dataset = get_dataset(options.dataset or infer_dataset(task))
    if options.roster is not None:
        get_roster(options.roster)  # an unknown roster is bad input before the run, not a failed run
    try:
        question = dataset.question(task)
    except KeyError as exc:
        return (f"missing {exc.args[0]!r} (read as a {dataset.name} row; the built-in datasets' rows: gsm8k "
                "'question', math 'problem', humaneval 'prompt' and 'entry_point', mbpp 'prompt', "
                "'entry_point' and 'test_list')")
    except (TypeError, IndexError, AttributeError) as exc:
        return f"not a {dataset.name} row ({type(exc).__name__}: {exc})"
    if wrong := field_problem(task, dataset.fields):
        return f"{wrong} (read as a {dataset.name} row)"
    return None if question.strip() else f"empty question (read as a {dataset.name} row)"


def rosters_for(options: WorkflowOptions) -> list[Roster]:
    """The rosters a run may use: the one the options name, else every registered roster (the
    task's dataset picks one at run time)."""
    if options.roster or options.dataset:
        return [get_roster(options.roster or get_dataset(options.dataset or "").roster)]
    return [get_roster(name) for name in roster_names()]


@dataclass(frozen=True)
class Turn:
    """One agent's turn, planned before the model is called.

    family: the Q-table the episode routes by.
    config: the router config of this run (frozen in evaluation).
    candidates: the successors offered to the agent.
    messages: what the model is sent.
    """

    roster: Roster
    agent: str
    dataset: Dataset
    family: str
    config: RouterConfig
    candidates: Candidates
    messages: tuple[Message, ...]
    question: str = ""
    """The task as the agents read it (the routing call sends it)."""
    path: tuple[str, ...] = ()
    """The agents so far, this one last."""
    hands_to: str | None = None
    """The successor fixed before the turn (the role's ``hands_to``, or the checker a retry
    goes back to); the router follows it whatever the reply says."""
    retry: bool = False
    """The turn is a "fix" or "fresh" retry after a failed check (:attr:`WorkflowOptions.retry`)."""

    @property
    def role(self) -> AgentRole:
        return self.roster.get(self.agent)

    @property
    def uses_python(self) -> bool:
        """Whether the agent has the python tool (its code runs in the sandbox)."""
        return PYTHON in self.role.tools

    def code_to_run(self, text: str) -> str | None:
        """The program in the agent's reply ``text`` that the sandbox runs, if any."""
        return extract_code(text) if self.uses_python else None

    def routing_messages(self, reply: str, route_context: str) -> tuple[Message, ...]:
        """The constrained routing call after the agent's ``reply`` (``route_context``:
        :attr:`WorkflowOptions.route_context`)."""
        if route_context == "full":
            return full_choice_messages(self.messages, reply, self.candidates.actions)
        sizes = {"task_chars": BRIEF_TASK_CHARS, "reply_chars": BRIEF_REPLY_CHARS} if route_context == "brief" else {}
        return choice_messages(self.roster, self.question, self.path or (self.agent,), reply, self.candidates.actions,
                               **sizes)


@dataclass(frozen=True)
class Observation:
    """What one agent turn produced.

    text: the model's reply.
    num_tokens: the turn's tokens (input + output), the routing call's included.
    code: the program that ran in the sandbox (None: none ran).
    output: the sandbox's output.
    choice: the reply to the constrained routing call (None: no such call was made).
    num_llm_calls: the model calls the turn made (0 for an agent that checks examples).
    program_ok: whether the program ran cleanly (exit status 0; None: none ran).
    check_failed: an agent that checks found the examples failing or nothing to check (no code or
        answer yet); the next agent's turn is a retry.
    """

    text: str
    num_tokens: int
    code: str | None = None
    output: str = ""
    choice: str | None = None
    num_llm_calls: int = 1
    program_ok: bool | None = None
    check_failed: bool = False


@dataclass(frozen=True)
class Action:
    """What the graph does after one agent turn.

    next: the agent that runs next, or END.
    decision: the router's decision it follows from.
    update: the graph state update.
    record: the step's record for the store.
    """

    next: str
    decision: Decision
    update: dict[str, Any]
    record: dict[str, Any]


def start_turn(
    state: EpisodeState,
    *,
    roster: Roster,
    agent: str,
    dataset: Dataset,
    family: str,
    table: QTable,
    config: RouterConfig,
    rng: random.Random,
    marker: bool = True,
    retry: str = "turn",
) -> Turn:
    """Plan ``agent``'s turn: its candidates (one draw of ``rng``) and its messages (``marker``:
    with the routing instructions, :attr:`WorkflowOptions.marker_in_turn`). A role that always
    hands to one agent (``AgentRole.hands_to``) has that agent as its only candidate and no
    routing instructions; so has the author of work that failed its check when it runs right
    after the check, unless ``retry`` is "turn" (:attr:`WorkflowOptions.retry`): it goes back to
    the checker, and a "fresh" retry sees the task without the teammates' notes. Another teammate
    after a failed check has a turn like any other. A checker that ``returns_to_author`` is offered
    the author of the work it checks beside its learned candidates (:func:`check_reply` sends a
    failed check there)."""
    role = roster.get(agent)
    candidates = select_candidates(table, agent, config, rng, path_length=len(state["path"]) + 1)
    if role.returns_to_author and state["path"] and (author := state["path"][-1]) not in (agent, *candidates.actions):
        candidates = replace(candidates, actions=(*candidates.actions, author))
    fixed, notes = role.hands_to, state["notes"]
    authored = len(state["path"]) >= 2 and state["path"][-2] == agent
    is_retry = retry != "turn" and bool(state.get("retry_of")) and authored
    if is_retry:
        fixed, notes = fixed or state["retry_of"], [] if retry == "fresh" else notes
    if fixed is not None:
        candidates, marker = Candidates(actions=(fixed,)), False
    path = (*state["path"], agent)
    messages = agent_messages(
        roster, agent, dataset, state["task"], path=path, candidates=candidates.actions, notes=notes, marker=marker,
    )
    return Turn(roster, agent, dataset, family, config, candidates, messages, dataset.question(state["task"]), path,
                hands_to=fixed, retry=is_retry)


def needs_choice_call(turn: Turn, text: str, next_choice: str) -> bool:
    """Whether the agent's successor is asked for in a constrained routing call after its reply
    ``text`` (``next_choice``: :attr:`WorkflowOptions.next_choice`): never in "marker" mode or
    when the router ignores the agent (greedy selection) or only END is offered; always in
    "constrained" mode; in "auto" mode when the reply's marker names no candidate."""
    if (next_choice == "marker" or turn.role.checks_examples or turn.config.selection == "greedy"
            or len(turn.candidates.actions) < 2):
        return False
    return next_choice == "constrained" or parse_next(text, turn.roster.names) not in turn.candidates.actions


def decide(state: EpisodeState, turn: Turn, observation: Observation, table: QTable) -> Action:
    """Route after ``turn``'s agent produced ``observation`` (``table``: the family's table now).

    The router (:func:`workflows.priordynaflow.router.decide`) picks the successor; a step into
    an agent (or an early stop) adds its transition and reward; a role that produces solutions
    replaces the episode's solution with the one its reply (or its program's output) states.
    """
    agent, path = turn.agent, [*state["path"], turn.agent]
    decision = route(
        table,
        current=agent,
        previous=state["path"][-1] if state["path"] else None,
        output=observation.text,
        candidates=turn.candidates,
        cumulative_reward=state["cumulative_reward"],
        path_length=len(path),
        num_tokens=observation.num_tokens,
        config=turn.config,
        # A turn handed to one agent (its role's, or a retry's checker) goes there, whatever it says.
        choice=turn.hands_to or observation.choice,
    )
    transitions = list(state["transitions"])
    cumulative = state["cumulative_reward"]
    if decision.action != END:
        transitions.append([agent, decision.action, decision.reward])
        cumulative += decision.reward
    program_output = observation.output[-MAX_OBSERVATION_CHARS:] if observation.code else ""
    update = {
        "path": path,
        "notes": [*state["notes"], {"agent": agent, "text": observation.text, "observation": program_output}],
        "transitions": transitions,
        "cumulative_reward": cumulative,
        **_solution(state, turn, observation, program_output),
        "num_tokens": state["num_tokens"] + observation.num_tokens,
        "num_llm_calls": state["num_llm_calls"] + observation.num_llm_calls,
        "num_tool_calls": state["num_tool_calls"] + bool(observation.code),
        "num_unparsable": state["num_unparsable"] + (decision.reason == "unparsable"),
        "num_off_candidate": state["num_off_candidate"] + (decision.reason == "off_candidate"),
        "last_turn_tokens": observation.num_tokens,
        "retry_of": agent if observation.check_failed else "",
        "stop_reason": decision.reason if decision.next == END else "",
    }
    record = _turn_record(turn, observation, decision, table, cumulative)
    return Action(next=decision.next, decision=decision, update=update, record=record)


_VERDICTS = {
    "examples": ("The examples the task shows pass.",
                 "There is nothing to check: the task shows no example.",
                 "There is nothing to check yet: nobody has written the code.",
                 "The examples the task shows fail (output below)."),
    "program": ("The answer is what a program that ran cleanly printed.",
                "There is nothing to check: no program ran.",
                "There is nothing to check yet: nobody has stated an answer (no program printed one).",
                "No program has printed the answer: it failed, printed none, or none was written."),
}


def check_reply(turn: Turn, passed: bool | None, what: str = "examples", *, answered: bool = True) -> str:
    """What an agent that checks (``AgentRole.checks_examples``) says after its check, of the
    shown examples (code) or of where the answer came from (``what="program"``, math): the
    verdict and a ``NEXT:`` line. Passed: END when it is a candidate. Failed, or nothing to check
    because the episode has no solution yet (``answered`` false: the code or program failed to
    come, a tool timed out): the first candidate (best value first) other than END and itself,
    so a teammate sees the failure (END too after a failed check when it leads and
    :attr:`RouterConfig.end_after_failed_check` is on), or the checked work's author whatever
    leads when the role ``returns_to_author`` (:func:`start_turn` offers it); an episode never
    ends here without an answer while a teammate is offered. Nothing to check with a solution (a
    task without examples): the first candidate, END included."""
    candidates = turn.candidates.actions
    passes, unchecked, missing, fails = _VERDICTS[what]
    if passed:
        return f"{passes}\nNEXT: {END if END in candidates else candidates[0]}"
    if passed is None and answered:
        return f"{unchecked}\nNEXT: {candidates[0]}"
    may_end = passed is False and turn.config.end_after_failed_check
    others = [c for c in candidates if c != turn.agent and (may_end or c != END)]
    author = turn.path[-2] if len(turn.path) >= 2 else None
    if turn.role.returns_to_author and author in others:
        others = [author]
    return f"{fails if passed is False else missing}\nNEXT: {others[0] if others else candidates[0]}"


def turn_solution(role: AgentRole, dataset: Dataset, task: dict[str, Any], text: str, program_output: str,
                  program_ok: bool | None) -> tuple[str | None, bool]:
    """The solution one turn of ``role`` states (None: none) and whether a cleanly run program
    printed it. ``program_output``: what the turn's program printed, as the notes keep it ("" when
    none ran)."""
    if role.answers_by_output:
        # A failed program's traceback quotes its source (``print(f"#### {x}")``): no answer.
        ran = dataset.extract(program_output, task) if program_output and program_ok else None
        if ran is not None:
            return ran, True
        return dataset.extract(without_code(text), task), False
    return dataset.extract(f"{text}\n{program_output}", task), False


def _solution(state: EpisodeState, turn: Turn, observation: Observation, program_output: str) -> dict[str, Any]:
    """The episode's solution after ``turn`` and whether a clean program run printed it."""
    kept = {"solution": state["solution"], "solution_from_program": state.get("solution_from_program", False)}
    if not turn.role.produces_solution:
        return kept
    found, from_program = turn_solution(turn.role, turn.dataset, state["task"], observation.text, program_output,
                                        observation.program_ok)
    return kept if found is None else {"solution": found, "solution_from_program": from_program}


def _turn_record(
    turn: Turn, observation: Observation, decision: Decision, table: QTable, cumulative: float
) -> dict[str, Any]:
    return {
        "agent": turn.agent,
        "family": turn.family,
        "candidates": list(turn.candidates.actions),
        "random_pick": turn.candidates.random_pick,
        "exploring": turn.candidates.exploring,
        "pruned": list(turn.candidates.pruned),
        "q_values": table.row(turn.agent),
        "proposed": decision.proposed,
        "proposed_by": decision.source,
        "next": decision.next,
        "reason": decision.reason,
        "reward": decision.reward,
        "cumulative_reward": cumulative,
        "tokens": observation.num_tokens,
        "ran_code": bool(observation.code),
        "retry": turn.retry,
    }


@dataclass(frozen=True)
class Ending:
    """An episode at END.

    success: the task's outcome (None: the task has no gold answer).
    transitions: every transition, the terminal one included.
    cumulative_reward: the episode's reward, the terminal reward included.
    """

    success: bool | None
    transitions: tuple[Transition, ...]
    cumulative_reward: float

    @property
    def has_outcome(self) -> bool:
        """Whether there is something to learn from (an episode without a gold answer has no
        outcome)."""
        return self.success is not None

    def record(self, state: EpisodeState, *, family: str, schedule: Learned | None) -> dict[str, Any]:
        """The END step's record (``schedule``: the family table's right after this episode was
        learned; None, and no epsilon or step count, when it was not)."""
        return {
            "family": family,
            "path": state["path"],
            "success": self.success,
            "stop_reason": state["stop_reason"],
            "transitions": self._transitions_json(),
            "cumulative_reward": self.cumulative_reward,
            "learned": schedule is not None,
            "epsilon": schedule.epsilon if schedule else None,
            "num_learned_steps": schedule.num_learned_steps if schedule else None,
        }

    def update(self, *, learned: bool) -> dict[str, Any]:
        """The graph state update."""
        return {
            "success": self.success,
            "learned": learned,
            "cumulative_reward": self.cumulative_reward,
            "transitions": self._transitions_json(),
        }

    def _transitions_json(self) -> list[list[Any]]:
        return [[t.state, t.action, t.reward] for t in self.transitions]


def finish(state: EpisodeState, success: bool | None, config: RouterConfig) -> Ending:
    """The episode's end: unless it stopped early (its last step already carries the penalised
    transition), the last agent's transition into END with the terminal reward."""
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
    return Ending(success=success, transitions=tuple(transitions), cumulative_reward=cumulative)
