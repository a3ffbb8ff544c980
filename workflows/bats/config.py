"""The options of BATS and its baselines, typed (built from a run's options by
:func:`orchestrator.options.config_from_options`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from orchestrator.options import check_ranges
from workflows.bats.tracker import TrackerConfig

__all__ = ["ANSWER_MAX_WORDS", "EXTRACT_MAX_TOKENS", "READ_MAX_CHARS", "READ_MAX_TOKENS", "AgentConfig", "BatsConfig",
           "LoopMode"]

READ_MAX_CHARS = 6000
"""Default characters of tool results a reading call sees (BATS's loop and the ``react`` workflow)."""
READ_MAX_TOKENS = 24
"""Output tokens of a reading call (the short answer)."""
ANSWER_MAX_WORDS = 5
"""Default: answers with more words than this get the extraction call (BATS's loop, ``react``'s reading)."""
EXTRACT_MAX_TOKENS = 24
"""Default output tokens of the extraction call."""


@dataclass(frozen=True)
class AgentConfig:
    """Limits and sampling of one agent attempt (read from the run's options)."""

    max_turns: int = 0
    """LLM turns of one attempt before the agent is asked for its final answer; 0 (default):
    derived from the budget, the units left over all limited tools plus 2 (so the budget, not a
    turn cap, ends an agent that spends at least one unit per turn), at most ``max_turns_cap``."""
    max_turns_cap: int = 48
    """Upper bound of the derived turn cap (and the cap when no tool is limited)."""
    demo: bool = True
    """Show a worked two-search example exchange before the question (every method alike)."""
    short_answer: bool = True
    """Shorten a long final answer with one extraction call (the shortest answering span)."""
    answer_max_words: int = ANSWER_MAX_WORDS
    """Answers with more words than this get the extraction call."""
    extract_max_tokens: int = EXTRACT_MAX_TOKENS
    """Output tokens of the extraction call."""
    answer_from: Literal["evidence", "agent"] = "evidence"
    """Where an attempt's answer comes from. ``evidence`` (default): one reading call answers the
    question from every tool result the attempt saw (the agent itself sees only the latest in
    full), and the agent's own answer stands when the reading is empty, of the wrong kind (a bare
    yes/no to an open question) or not affordable (token or dollar budget spent); ``agent``: the
    agent's answer line. The reading call is made only when a tool returned something. On
    Qwen2.5-Coder-0.5B the agent answered with the entity it had searched for (HotpotQA, 60
    questions, the recorded actions of the GPU runs replayed on the CPU: 2-5% EM by the agent's
    line, 10-13% read from the same results; bench/NOTEBOOK.md §38)."""
    read_max_chars: int = READ_MAX_CHARS
    """Characters of tool results the reading call sees: each result cut to
    ``max_observation_chars``; when they are more, the first result and the latest that fit."""
    read_max_tokens: int = READ_MAX_TOKENS
    """Output tokens of the reading call."""
    yes_no_form: bool = False
    """Answer a yes/no question (:func:`workflows.answers.is_yes_no_question`) with the bare word
    its answer opens with ("Yes, both were American" -> "yes", no extraction call): HotpotQA's
    judge gives a yes/no gold answer credit only for the bare word."""
    max_tokens: int = 128
    """Output tokens of one agent turn (action lines are short)."""
    temperature: float = 0.0
    """Sampling temperature of agent turns."""
    repeat_temperature: float | None = None
    """Temperature of the turn after one whose tool actions were all repeats (nothing new ran);
    None keeps ``temperature``. A small model at a low temperature answers the "already did
    this" note with the same reply until ``max_stale_turns`` ends the attempt (Qwen2.5-Coder-0.5B:
    identical replies three times over, bench/NOTEBOOK.md §20); a higher one may take it elsewhere."""
    max_observation_chars: int = 1200
    """One tool output is cut to this many characters before the agent sees it."""
    keep_tool_outputs: int = 1
    """Tool outputs shown in full; older ones are replaced by a one-line stub."""
    max_actions_per_turn: int = 3
    """Tool actions executed from one reply (more lines are ignored)."""
    max_format_errors: int = 1
    """Replies without an action line that get a reminder of the format; the next such reply
    is taken as the answer."""
    max_stale_turns: int = 2
    """Consecutive turns whose tool actions were all repeats (nothing new ran) before the agent
    is asked for its final answer: a looping small model would otherwise spend the whole
    budget-derived turn cap on calls that cost no budget."""
    max_idle_turns: int = 5
    """Budget forcing: stop after this many consecutive turns without a tool call."""
    stop_when_any_exhausted: bool = True
    """End the attempt as soon as any tool budget reaches 0 (BATS's rule)."""
    high_at: float = 0.7
    """Budget Tracker: remaining fraction at or above which the regime is high."""
    medium_at: float = 0.3
    """Budget Tracker: remaining fraction at or above which the regime is medium."""
    low_at: float = 0.1
    """Budget Tracker: remaining fraction at or above which the regime is low (else critical)."""

    def __post_init__(self) -> None:
        check_ranges(self, max_turns=(0, None), max_turns_cap=(1, None), answer_max_words=(1, None),
                     extract_max_tokens=(1, None), read_max_chars=(1, None), read_max_tokens=(1, None),
                     max_tokens=(1, None), temperature=(0.0, 2.0),
                     max_observation_chars=(1, None), keep_tool_outputs=(0, None), max_actions_per_turn=(1, None),
                     max_format_errors=(0, None), max_stale_turns=(1, None), max_idle_turns=(1, None),
                     high_at=(0.0, 1.0), medium_at=(0.0, 1.0), low_at=(0.0, 1.0), repeat_temperature=(0.0, 2.0))

    @property
    def tracker_config(self) -> TrackerConfig:
        return TrackerConfig(high_at=self.high_at, medium_at=self.medium_at, low_at=self.low_at)


@dataclass(frozen=True)
class LoopMode:
    """What distinguishes the baselines: the Budget Tracker and budget forcing."""

    tracker: bool = False
    """Show the budget policy on the first turn and the tracker block after every tool response."""
    forcing: bool = False
    """When the agent answers with budget left, tell it to keep using the budget."""


@dataclass(frozen=True)
class BatsConfig:
    """BATS's own options (the agent loop's are in AgentConfig; both come from the run options)."""

    max_attempts: int = 3
    """Attempts at most, whatever budget is left."""
    early_stop: bool = True
    """Stop at the first attempt the verifier calls SUCCESS (else keep going until the budget
    or max_attempts runs out, and let the judge choose)."""
    planner_max_tokens: int = 128
    """Output tokens of the planning call."""
    max_plan_items: int = 4
    """Constraints kept from the planner's reply."""
    verifier_max_tokens: int = 256
    """Output tokens of a verifier call (and of its repair)."""
    judge_max_tokens: int = 8
    """Output tokens of the judge call (it answers with a number)."""
    verifier_json_schema: bool = True
    """Send the verifier's JSON schema as a structured-output constraint (vLLM/OpenAI backends)."""
    agent_plan: Literal["all", "explore", "none"] = "none"
    """Plan items the agent sees: ``all``, ``explore`` or ``none`` (default). The verifier always
    checks every item. Default ``none``: the agent's system prompt has no planning section and no
    plan items; a small planner writes guessed answers into its items ("verify: they were both in
    The Beatles") and a small agent then searches the guess. On one H100 (Qwen2.5-Coder-0.5B,
    HotpotQA, 200 questions, plan ``methods-15``) BATS so configured answered 16.0-16.5% at every
    budget in two runs against ReAct's 11.5-13.0%; with the ``explore`` items 11.0-13.0%."""
    max_evidence_chars: int = 600
    """Characters of each tool output the verifier reads."""
    verifier: bool = True
    """Verify each attempt (``False``: no verifier call; an attempt that answered is taken as
    final, one that did not is followed by another attempt, as after a PIVOT). On a verifier too
    small to judge (Qwen2.5-Coder-0.5B, plan ``methods-16``: SUCCESS on 1-2% of attempts) ``False``
    answered as well at 36-37% of the unified cost; the default keeps the paper's loop."""
    pivot: bool = True
    """Follow the verifier's PIVOT (the next attempt is told to take a different lead; ablation
    ``False``: it is told to dig deeper on the same lead, as after CONTINUE)."""
    selection: Literal["judge", "vote"] = "judge"
    """How the final answer is chosen when the attempts disagree: ``judge`` (default), one LLM call
    naming the best attempt; ``vote``, the most common answer, ties to the earliest attempt (no
    call; for a judge as small as the agent)."""

    def __post_init__(self) -> None:
        check_ranges(self, max_attempts=(1, None), planner_max_tokens=(1, None), max_plan_items=(0, None),
                     verifier_max_tokens=(1, None), judge_max_tokens=(1, None), max_evidence_chars=(1, None))
