"""Agents as data: named roles with a description, a prompt and the tools they may use.

A roster is the set of agents one task family routes between, plus the agent every episode
starts with. Built-in rosters: ``math`` (solver, analyst, programmer, inspector), ``code``
(planner, coder, reviewer, tester) and ``code-check`` (planner, coder, reviewer, and a runner that
checks the shown examples without a model call; HumanEval and MBPP tasks use it by default). Users
register their own with :func:`register_roster`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from orchestrator.errors import BadInputError
from workflows.priordynaflow.config import END, RETRY_MODES, RouterConfig, lookup

PYTHON = "python"
"""Tool marker: the agent's last ```python block is run in the sandbox and the output kept."""


@dataclass(frozen=True)
class AgentRole:
    """One agent.

    name: routing name (what ``NEXT:`` markers and the Q-table use); letters, digits, _ or -.
    description: one line the other agents read when choosing a successor.
    prompt: the role's system prompt (the router appends the routing instructions).
    tools: tools the agent uses; ``"python"`` runs its last python block in the sandbox.
    produces_solution: whether the answer/code this agent writes may become the task's solution
        (a tester's harness must not replace the coder's function).
    checks_examples: an agent without a model call: it runs the episode's solution against the
        examples the task shows (``Dataset.shown_examples``) in the sandbox and proposes END when
        they pass, else the best-valued other candidate (``episode.check_reply``). Its turn costs
        no tokens; what it proposes depends on the task, so paths through it differ per task.
    answer_format: the role's own instruction on how to answer, in place of the dataset's (None:
        the dataset's ``answer_format``).
    answers_by_output: its answer is what its program prints: taken from the program's output,
        else from its reply outside code blocks, never from the program's source (whose
        ``print(f"#### {x}")`` is no answer).
    hands_to: the agent that always follows this one (a checker without a model call): its turn
        carries no routing instructions, the router's only candidate is that agent, taken as the
        agent's own choice (the transition is learned like any other). None: the router chooses.
    returns_to_author: an agent that checks sends a failed check back to the agent whose work it
        checked (offered beside the learned candidates, so that agent's retry mode applies), not
        to the best-valued teammate; a pass still ends the episode.
    """

    name: str
    description: str
    prompt: str
    tools: tuple[str, ...] = ()
    produces_solution: bool = True
    checks_examples: bool = False
    answer_format: str | None = None
    answers_by_output: bool = False
    hands_to: str | None = None
    returns_to_author: bool = False

    def __post_init__(self) -> None:
        if not self.name.replace("_", "").replace("-", "").isalnum() or self.name.upper() == END:
            raise BadInputError(f"agent name {self.name!r}", f"letters, digits, _ or -, and not {END}")
        if self.returns_to_author and not self.checks_examples:
            raise BadInputError(f"agent {self.name!r} returns_to_author", "an agent that checks (checks_examples)",
                                "it checks nothing, so no check of it fails")


@dataclass(frozen=True)
class Roster:
    """The agents of one task family and the one each episode starts with.

    router_defaults: :class:`RouterConfig` fields this roster routes with unless the run gives
    its own ``router`` (they replace those of the learner pool's config when the family's
    learner is created): the settings the roster was measured with.
    retry: how the author of checked work tries again after a failed check unless the run gives
    its own ``retry`` (:attr:`WorkflowOptions.retry`).
    """

    name: str
    agents: tuple[AgentRole, ...]
    start: str
    router_defaults: Mapping[str, Any] = field(default_factory=dict, hash=False)
    retry: str = "turn"

    def __post_init__(self) -> None:
        if self.retry not in RETRY_MODES:
            raise BadInputError(f"roster {self.name!r} retry", f"one of {list(RETRY_MODES)}", f"got {self.retry!r}")
        names = [a.name for a in self.agents]
        if len(set(names)) != len(names):
            raise BadInputError(f"roster {self.name!r}", "distinct agent names", f"got {names}")
        if self.start not in names:
            raise BadInputError(f"roster {self.name!r} start", f"one of {names}", f"got {self.start!r}")
        for agent in self.agents:
            if agent.hands_to is not None and agent.hands_to not in names:
                raise BadInputError(f"roster {self.name!r}: {agent.name}.hands_to", f"one of {names}",
                                    f"got {agent.hands_to!r}")
        known = {f.name for f in fields(RouterConfig)}
        if unknown := sorted(set(self.router_defaults) - known):
            raise BadInputError(f"roster {self.name!r} router_defaults", "RouterConfig fields", f"got {unknown}")

    def router_config(self, base: RouterConfig) -> RouterConfig:
        """``base`` with this roster's :attr:`router_defaults` in place of its own values."""
        return replace(base, **self.router_defaults) if self.router_defaults else base

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.agents)

    def get(self, name: str) -> AgentRole:
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise BadInputError("agent", f"one of {', '.join(self.names)}", f"got {name!r}")


MATH_ROSTER = Roster(
    name="math",
    start="solver",
    agents=(
        AgentRole(
            name="solver",
            description="works the problem out step by step and states the final answer",
            prompt=(
                "You are the solver of a small team that answers math problems. Read the problem "
                "and any notes from teammates, then reason step by step, writing each calculation "
                "out, and finish with the final answer in the required format."
            ),
        ),
        AgentRole(
            name="analyst",
            description="breaks the problem into quantities, unknowns and relations before anyone computes",
            prompt=(
                "You are the analyst of a small team that answers math problems. List the given "
                "quantities, the unknown asked for, and the equations or facts that connect them. "
                "Point out traps (units, rounding, 'how many more', off-by-one). If the path to the "
                "answer is then short, compute it and give the final answer in the required format."
            ),
        ),
        AgentRole(
            name="programmer",
            description="writes and runs a short Python program that computes the answer exactly",
            prompt=(
                "You are the programmer of a small team that answers math problems. Write one "
                "self-contained Python program in a ```python block that computes the answer "
                "exactly (integers or fractions.Fraction; the standard library only, no sympy or "
                "numpy). The program is run and its output is shown to your teammates."
            ),
            tools=(PYTHON,),
            # The dataset's "state the answer as '#### <n>'" made Qwen2.5-Coder-0.5B reply with
            # that line alone, no program (7 of 8 GSM8K items, CPU, 2026-12-04).
            answer_format=(
                "Reply with the program only: name each quantity of the problem, compute the answer "
                "from them, and print it on the last line with print('####', answer). For example, "
                "for 'Pens cost 3 dollars. Tom buys 4 and pays with 20 dollars. What is his change?':\n"
                "```python\nprice = 3\npens = 4\npaid = 20\nchange = paid - price * pens\n"
                "print('####', change)\n```"
            ),
            answers_by_output=True,
        ),
        AgentRole(
            name="inspector",
            description="checks the latest solution line by line and corrects it if needed",
            prompt=(
                "You are the inspector of a small team that answers math problems. Check the "
                "latest solution from your teammates: re-read the question, redo each calculation "
                "and test the answer against the conditions of the problem. State whether it is "
                "right, fix any error, and give the final answer in the required format."
            ),
        ),
    ),
)

CODE_ROSTER = Roster(
    name="code",
    start="coder",
    agents=(
        AgentRole(
            name="planner",
            description="plans the function: inputs, outputs, algorithm and edge cases, without code",
            prompt=(
                "You are the planner of a small team that writes Python functions. Restate what the "
                "function must return, list the edge cases, and describe the algorithm in a few "
                "numbered steps. Do not write the code yourself."
            ),
        ),
        AgentRole(
            name="coder",
            description="writes the complete Python function",
            prompt=(
                "You are the coder of a small team that writes Python functions. Write the complete "
                "function, with its imports and exactly the requested name and signature, in one "
                "```python block. Follow the plan and fix the problems teammates reported, if any."
            ),
        ),
        AgentRole(
            name="reviewer",
            description="reviews the latest code for bugs and rewrites it correctly",
            prompt=(
                "You are the reviewer of a small team that writes Python functions. Read the latest "
                "code against the task and the examples, trace it on one example, and name any bug. "
                "Then give the complete corrected function in one ```python block (repeat it "
                "unchanged if it is already right)."
            ),
        ),
        AgentRole(
            name="tester",
            description="runs the latest code against the task's examples and reports failures",
            prompt=(
                "You are the tester of a small team that writes Python functions. Write one "
                "```python block that contains the latest function from your teammates followed by "
                "assert statements built from the examples in the task. The block is run and its "
                "output is shown to your teammates; say which cases you expect to fail, if any."
            ),
            tools=(PYTHON,),
            produces_solution=False,
        ),
    ),
)

_RUNNER = AgentRole(
    name="runner",
    description="runs the latest code on the examples the task shows (no model call) and says if they pass",
    prompt="",
    tools=(PYTHON,),
    produces_solution=False,
    checks_examples=True,
)

CODE_CHECK_ROSTER = Roster(
    name="code-check",
    start="coder",
    agents=(_RUNNER, *(CODE_ROSTER.get(n) for n in ("coder", "reviewer", "planner"))),
    router_defaults={"min_agents_before_end": 2, "self_loops": False, "update_order": "backward"},
    retry="fresh",
)
"""The code roster with a runner in place of the LLM tester, and the one HumanEval and MBPP tasks
use by default: the examples the task shows decide where an episode goes after the runner, so a
task whose code passes them stops at one model call and one that fails goes back to a teammate
with the failure. Its router defaults: END is not offered after the first agent (the coder's turn
is never the last), no agent hands over to itself, values learned from the END backwards (the
settings of issue 22's measured runs). The order is the tie-break among equal values (cold start):
a coder reply without a marker goes to the runner, a failed check to the coder, whose retry is a
fresh attempt (``retry="fresh"``: the task alone, at ``retry_temperature``). On
Qwen2.5-Coder-0.5B (5 seeds, each beside the ordinary-turn retry on the same server; NOTEBOOK §33,
§34) it scored 66.1% on HumanEval and 53.3% on MBPP on average at 21 to 37% of the fixed chain's
tokens (ordinary-turn retry 63.0% and 49.5%, its retries right 0 of 172 times; chain 55.8% and
30.2%, CoT 46.1% and 38.8%). ``roster="code"`` keeps the LLM tester and the learned choice of END."""

_CHECKER = AgentRole(
    name="checker",
    description="checks that the latest answer is what a program that ran cleanly printed (no model call)",
    prompt="",
    produces_solution=False,
    checks_examples=True,
)

MATH_CHECK_ROSTER = Roster(
    name="math-check",
    start="programmer",
    agents=(
        _CHECKER,
        replace(MATH_ROSTER.get("programmer"), hands_to="checker"),
        *(MATH_ROSTER.get(n) for n in ("solver", "inspector", "analyst")),
    ),
    router_defaults=CODE_CHECK_ROSTER.router_defaults,
)
"""The math roster started by the programmer, with a checker in place of a model call after it:
an answer that a cleanly run program printed ends the episode, one that none did (the program
failed, printed nothing, or the reply was prose) goes back to a teammate with the failure
(opt-in: ``roster="math-check"``; the code-check roster's router defaults). The programmer always
hands to the checker (``hands_to``): on the CPU (same weights, 120 GSM8K items, 2-fold CV,
``e23c44e``) a programmer asked to name its successor sent all 120 episodes to the solver or the
inspector, never to the checker, and the roster scored 5.0%. On the GPU (one H200, Qwen2.5-Coder-0.5B,
120 GSM8K validation items, 2-fold CV, 5 seeds at ``80a6835``) it scored 11.7 to 14.2% at about 520
tokens per task, below the fixed chain (22.5 to 28.3% at about 1,070) and single-agent CoT (15.0 to
20.8%). Its retry stays the ordinary turn: with ``retry="fresh"`` (``6d8c759``) the learned table
never sent a failed check back to the programmer, so the mode is unmeasured on math."""

MATH_CHECK_RETRY_ROSTER = replace(
    MATH_CHECK_ROSTER,
    name="math-check-retry",
    agents=tuple(replace(a, returns_to_author=True) if a.checks_examples else a for a in MATH_CHECK_ROSTER.agents),
    retry="fresh",
)
"""The math-check roster whose checker sends a program that did not print an answer back to the
programmer for a fresh attempt (``returns_to_author``, ``retry="fresh"``), as the code-check roster
does with the coder (opt-in: ``roster="math-check-retry"``). With math-check the learned table sent
every failed check to the solver, the analyst or the inspector, who fixed 7% of them."""

_ROSTERS: dict[str, Roster] = {
    r.name: r for r in (MATH_ROSTER, CODE_ROSTER, CODE_CHECK_ROSTER, MATH_CHECK_ROSTER, MATH_CHECK_RETRY_ROSTER)
}


def register_roster(roster: Roster) -> Roster:
    """Make ``roster`` available to the workflow under ``roster.name`` (replacing any)."""
    _ROSTERS[roster.name] = roster
    return roster


def get_roster(name: str) -> Roster:
    return lookup(_ROSTERS, name, "roster")


def roster_names() -> list[str]:
    return sorted(_ROSTERS)


def routing_instructions(roster: Roster, path: Sequence[str], candidates: Sequence[str]) -> str:
    """The part of every system prompt that asks the agent to name its successor."""
    lines = [
        f"Agents so far: {' -> '.join(path)}.",
        "When you are done, choose who works next from these options:",
        *option_lines(roster, candidates),
        f"End your reply with one line 'NEXT: <option>', for example 'NEXT: {candidates[0]}'.",
    ]
    return "\n".join(lines)


def option_lines(roster: Roster, candidates: Sequence[str]) -> list[str]:
    """One line per successor on offer: its name and what it does."""
    return [f"- {END}: the answer is final and correct; stop here" if name == END
            else f"- {name}: {roster.get(name).description}" for name in candidates]
