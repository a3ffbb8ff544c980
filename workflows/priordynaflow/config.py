"""Hyperparameters of PriorDynaFlow's Q-learning router.

Defaults marked "(code)" are the values of the official implementation (L1n111ya/PriorDynaFlow,
``PriorDynaFlow/config.py`` and ``agent/mainflow.py``, see research/papers.md section 2).
Defaults marked "(ours)" are additions of this implementation, chosen so that the defaults
reproduce the reference behaviour when the addition is switched off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeVar

from orchestrator.errors import BadInputError
from orchestrator.options import config_from_options

END = "END"
"""The terminal action: the workflow stops and the latest solution is the answer."""

RETRY_MODES = ("turn", "fix", "fresh")
"""How the author of checked work may try again after a failed check (:attr:`WorkflowOptions.retry`)."""

T = TypeVar("T")


def lookup(registered: Mapping[str, T], name: str, what: str) -> T:
    """``registered[name]``; an unknown name is a BadInputError that lists the known ones."""
    try:
        return registered[name]
    except KeyError:
        raise BadInputError(what, f"one of {', '.join(sorted(registered))}", f"got {name!r}") from None


@dataclass(frozen=True)
class RouterConfig:
    """Everything the router and the Q-learning update need; no I/O, no clock."""

    alpha: float = 0.1
    """Learning rate of the Q-learning update (code: 0.1)."""

    gamma: float = 0.9
    """Discount of the next state's best Q value (code: 0.9)."""

    entropy_weight: float = 0.01
    """Weight of the entropy bonus H(softmax(Q[s])) added to the update target (code: 0.01)."""

    epsilon: float = 0.3
    """Initial probability of adding one random available action to the candidates (code: 0.3)."""

    epsilon_decay: float = 0.995
    """Multiplicative epsilon decay applied once per training episode (code: 0.995)."""

    min_epsilon: float = 0.1
    """Floor epsilon decays to (code: 0.1)."""

    num_top_groups: int = 2
    """How many distinct Q-value groups (ties kept together) form the candidates (code: 2)."""

    num_explore_steps: int = 50
    """Cold start: while fewer agent executions than this were learned from, every node is a
    candidate (code: ALL_EXPLORE=50; counted per agent execution, not per task)."""

    max_train_steps: int = 1000
    """Training stops updating the table after this many agent executions (code: train_num=1000)."""

    prune_threshold: float = -50.0
    """Actions whose Q value is not above this are pruned from the candidates (code:
    MIN_ACTION_REWARD=-50)."""

    min_reward: float = -50.0
    """Early stop: an episode whose cumulative reward falls below this is forced to END (code:
    MIN_REWARD=-50)."""

    max_path_length: int = 8
    """Hard cap on agent executions per episode; the run is forced to END after it (ours: the
    reference relies on early stopping alone)."""

    min_agents_before_end: int = 1
    """END is offered only once this many agents ran (ours: 2 makes every math answer pass a
    second agent, e.g. solver -> inspector; the reference removes END only before the first
    agent, which is 1 here: the start agent always runs)."""

    success_reward: float = 100.0
    """Reward for choosing END when the task succeeded (code: SUCCESS_REWARD=100; the reference
    pays it on every END and tracks success per agent instead)."""

    failure_reward: float = 0.0
    """Reward for choosing END when the task failed (ours: makes the terminal reward depend on
    task success, which the issue asks for)."""

    terminal_bonus: float = 1.5
    """Positive rewards of transitions into END are multiplied by this at update time (code: 1.5)."""

    update_order: Literal["forward", "backward"] = "forward"
    """Order in which an episode's transitions are learned. "forward" (code): first to last, so
    a hand-off A -> B is updated before B's successful END is, sees B's old (cold: 0) values and
    learns only its negative step reward: the hand-offs of a good path go negative and routing
    learns to stop after one agent. "backward" (ours): last to first, so the terminal reward
    reaches every hand-off of the path in the same episode (same fixed point, faster and
    without the negative bias)."""

    min_path_length: int = 5
    """Paths shorter than this pay ``path_penalty`` per missing agent at END (code:
    MIN_PATH_LENGTH=5). Set to 0 to stop favouring long paths."""

    path_penalty: float = 10.0
    """Penalty per agent missing below ``min_path_length`` (code: PATH_PENALTY=10)."""

    salary: float = 5.0
    """Fixed cost of running any agent (code: all salaries 5)."""

    salary_weight: float = 2.0
    """Weight of the salary in the step reward (code: -2 * salary)."""

    success_rate_weight: float = 5.0
    """Weight of the chosen agent's historical success rate in the step reward (code: 5)."""

    token_penalty_per_1k: float = 1.0
    """Penalty per 1,000 tokens (input + output) the current agent's turn used (ours: the issue
    asks for a token cost; 0 reproduces the reference)."""

    repeat_penalty: float = 10.0
    """Penalty when the chosen agent is the one that ran before the current agent, A -> B -> A
    (code: 10)."""

    self_loop_penalty: float = 10.0
    """Penalty when the chosen agent is the current agent, A -> A (code: 10)."""

    self_loops: bool = True
    """Whether an agent may hand over to itself (code: yes, at ``self_loop_penalty``). False
    (ours) leaves the current agent out of its own candidates: on Qwen2.5-Coder-0.5B the code
    paths learned with self-loops were coder -> coder -> coder, the same agent rewriting its own
    answer until the reward floor stopped it (issue 22 run 3be667f)."""

    end_after_failed_check: bool = False
    """Whether an agent that checks (the code runner, the math checker) may propose END after a
    failed check when END leads its candidates (learned: retries that do not pay lose to
    stopping). Off (the measured default): a failed check always goes to a teammate. Opt-in and
    not yet measured: at ``80a6835`` none of 113 retried code items ended right on
    Qwen2.5-Coder-0.5B (on the CPU its coder answered the retry with ``NEXT: runner`` alone, and
    without routing instructions with its first code again). An episode without an answer never
    ends at a check while a teammate is offered, whatever this says."""

    initial_success_rate: float = 0.5
    """Success rate of an agent that has no finished episode yet (code: 0.5)."""

    selection: Literal["agent", "greedy"] = "agent"
    """"agent": the running agent names its successor among the candidates (the paper's a priori
    choice); "greedy": the highest-Q candidate is taken and the agent's choice is only recorded."""

    frozen: bool = False
    """Evaluation mode: no random candidate, no cold-start exploration, no updates."""

    def __post_init__(self) -> None:
        for name in ("alpha", "gamma", "epsilon", "epsilon_decay", "min_epsilon"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise BadInputError(f"priordynaflow {name}", "a number in [0, 1]", f"got {value}")
        if self.num_top_groups < 1:
            raise BadInputError("priordynaflow num_top_groups", "an integer >= 1", f"got {self.num_top_groups}")
        if self.max_path_length < 1:
            raise BadInputError("priordynaflow max_path_length", "an integer >= 1", f"got {self.max_path_length}")
        if self.selection not in ("agent", "greedy"):
            raise BadInputError("priordynaflow selection", "'agent' or 'greedy'", f"got {self.selection!r}")
        if self.update_order not in ("forward", "backward"):
            raise BadInputError("priordynaflow update_order", "'forward' or 'backward'", f"got {self.update_order!r}")
        if not 1 <= self.min_agents_before_end <= self.max_path_length:
            raise BadInputError("priordynaflow min_agents_before_end", "an integer from 1 to max_path_length",
                                f"got {self.min_agents_before_end}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RouterConfig:
        """Build from a mapping (e.g. CLI or ``ctx.config`` options), typed by the project's
        option rules (``orchestrator.options``); unknown keys are refused."""
        return config_from_options(cls, data, what="priordynaflow router", strict=True)


@dataclass(frozen=True)
class WorkflowOptions:
    """Per-run options of the ``priordynaflow`` workflow (read from ``ctx.config["priordynaflow"]``)."""

    dataset: str | None = None
    """How task rows are read and scored (``workflows.priordynaflow.tasks``); None infers it from
    the row's keys."""

    roster: str | None = None
    """Agent roster; None takes the dataset's."""

    family: str | None = None
    """Name of the Q-table the run routes by and learns into; None takes the roster's name, so
    gsm8k and MATH share the ``math`` table."""

    mode: Literal["train", "eval"] = "train"
    """"train" updates the family's Q-table at END; "eval" freezes it for this run."""

    router: RouterConfig | None = None
    """Q-learning hyperparameters; None keeps those of the family's learner."""

    max_tokens: int = 512
    """Completion limit of one agent turn."""

    temperature: float = 0.1
    """Sampling temperature of agent turns (code: 0.1)."""

    next_choice: Literal["marker", "constrained", "auto"] = "marker"
    """How an agent's choice of successor is read. "marker" (the reference): its reply's
    ``NEXT: <name>`` line. "constrained": after every turn one short extra call (see
    ``route_context``) decoded constrained to the candidates' names
    (``SamplingOptions.choices``: vLLM structured outputs), the marker only where that reply
    names no candidate. "auto": the marker when it names a candidate, else the constrained
    call (an extra call only for turns whose marker is missing, e.g. cut off by ``max_tokens``)."""

    route_context: Literal["compact", "brief", "full"] = "compact"
    """What the routing call sends. "compact": the first 1,500 characters of the task, the path,
    the last 600 characters of the agent's reply and the options with what each agent does.
    "brief": the same with 400 and 300 characters. "full" (the first version, kept for
    comparison): the agent's whole turn (role prompt, answer format, teammates' notes) and its
    reply, then "who works next?" (about twice the compact call's prompt on GSM8K)."""

    marker_in_turn: bool = True
    """Whether an agent's turn asks it to name its successor (the options and a ``NEXT:`` line at
    the end of its system prompt). False, with ``next_choice="constrained"`` only: the turn is the
    role's prompt and the answer format, as in a fixed chain, and the routing call alone picks
    the successor (on Qwen2.5-Coder-0.5B the solver alone scored 9.2% on GSM8K with the routing
    instructions in its prompt, single-agent CoT 18.3%, issue 22 run b3aa686)."""

    retry: Literal["turn", "fix", "fresh"] | None = None
    """How the author of checked work tries again when a check fails (an agent that checks, such
    as the code-check runner, found the shown examples failing or no code or answer to check, and
    sends the episode back to the agent that ran before it). None takes the roster's
    (:attr:`Roster.retry`: "fresh" for code-check, "turn" for the others). "turn": a turn like any
    other. "fix": with the task and the teammates' notes (the failure among them) but without the
    routing instructions, sampled at ``retry_temperature`` with a seed of its own (the agent's
    position in the path), and handed back to the checker. "fresh": the same with the task alone,
    a new and independent attempt. Other teammates after a failed check have ordinary turns. On
    Qwen2.5-Coder-0.5B a "turn" retry after a failed MBPP example was the reply ``NEXT: runner``
    with no code, the coder given the failure mostly wrote its failed code again, and "fresh" beat
    "turn" on MBPP in 5 of 5 seeds and on HumanEval in 4 (NOTEBOOK §31 to §34)."""

    retry_temperature: float = 0.8
    """Sampling temperature of a "fix" or "fresh" retry (a retry at the turn's 0.1 repeats itself)."""

    choice_max_tokens: int = 8
    """Completion limit of the constrained routing call (a name; the constraint ends it)."""

    python_tool: str = "python"
    """Name of the sandbox tool (``orchestrator.tools.sandbox.python_tool``) that runs the code
    agents with the python tool write, and the tests of code tasks."""

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> WorkflowOptions:
        """Options from a run's ``ctx.config``: the mapping under ``"priordynaflow"`` (every key
        one of these options, an unknown one refused: a misspelt or misplaced option, such as a
        :class:`RouterConfig` field outside ``router``, is not silently dropped), else the known
        keys at the top level (other keys belong to the runtime and are ignored). Values are typed
        by the project's option rules (``orchestrator.options``); ``router`` is a mapping of
        :class:`RouterConfig` fields, unknown ones refused."""
        nested = "priordynaflow" in config
        raw = config["priordynaflow"] if nested else config
        if not isinstance(raw, Mapping):
            raise BadInputError("priordynaflow options", "a mapping of option names to values", f"got {raw!r}")
        return config_from_options(cls, raw, what="priordynaflow", strict=nested)

    def __post_init__(self) -> None:
        if self.next_choice not in ("marker", "constrained", "auto"):
            raise BadInputError("priordynaflow next_choice", "'marker', 'constrained' or 'auto'",
                                f"got {self.next_choice!r}")
        if self.route_context not in ("compact", "brief", "full"):
            raise BadInputError("priordynaflow route_context", "'compact', 'brief' or 'full'",
                                f"got {self.route_context!r}")
        if not self.marker_in_turn and self.next_choice != "constrained":
            raise BadInputError("priordynaflow marker_in_turn", "true unless next_choice is 'constrained' (without "
                                "the marker only the routing call can name the next agent)",
                                f"got false with next_choice={self.next_choice!r}")
        if self.retry not in (None, *RETRY_MODES):
            raise BadInputError("priordynaflow retry", "'turn', 'fix' or 'fresh'", f"got {self.retry!r}")
        for name in ("max_tokens", "choice_max_tokens"):
            if (value := getattr(self, name)) < 1:
                raise BadInputError(f"priordynaflow {name}", "an integer >= 1", f"got {value!r}")
        for name in ("temperature", "retry_temperature"):
            if not 0.0 <= (value := getattr(self, name)) <= 2.0:
                raise BadInputError(f"priordynaflow {name}", "a number from 0 to 2", f"got {value!r}")
