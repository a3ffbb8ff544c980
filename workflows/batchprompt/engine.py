"""The BatchPrompt core: plan batches, run voting rounds, re-ask what the model dropped, vote.

It talks to the model only through an injected ``chat(messages, sampling)`` coroutine, so the
workflow passes ``ctx.chat`` (every call through ledger, store and metrics) and the benchmark
passes a bare client. State between rounds is a :class:`RunState` that converts to plain JSON for
LangGraph checkpoints; :func:`run_batchprompt` chains the steps for callers without a graph.

Re-asks: the items a round's batch calls left without a usable answer (missing, unlabeled,
conflicting) are pooled over the round's batches and asked again in batches of half the round's
batch size, what still fails in batches of a quarter, and so on down to 2; what is left is asked
singly. Pooling and halving keep the fallback cheap when a small model drops many labels (most
items come back at the next smaller size; few need a call of their own). With
``reask_singles="unvoted"`` (the default) the single re-asks of rounds after the first are only
for items that have no usable vote yet: an item already answered in an earlier round just casts
an empty vote this round. Every re-ask is a real call, counted in calls and tokens like any
other. An item that gets no usable answer in a round casts an empty vote; one with no usable
vote at all gets the task's fallback label and is listed in ``unanswered``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from orchestrator.options import check_ranges
from orchestrator.types import LLMResponse, Message, SamplingOptions
from workflows.batchprompt.prompt import (
    BatchParse,
    answer_regex,
    compose_messages,
    label_probabilities,
    max_output_tokens,
    parse_answers,
    plan_batches,
)
from workflows.batchprompt.scoring import (
    CALIBRATIONS,
    LABEL_SCORINGS,
    calibrate,
    content_free_inputs,
    label_distributions,
    mean_prior,
)
from workflows.batchprompt.tasks import Item, TaskSpec
from workflows.batchprompt.voting import (
    SEAS_RULES,
    Vote,
    VotingConfig,
    permute,
    seas_done,
    tally,
    validate_rounds,
)

__all__ = [
    "CONFIDENCE_SOURCES",
    "BatchPromptConfig",
    "BatchPromptResult",
    "CallStats",
    "ChatFn",
    "RunState",
    "finish",
    "is_finished",
    "run_batchprompt",
    "start",
    "step",
]

ChatFn = Callable[[list[Message], SamplingOptions], Awaitable[LLMResponse]]
"""One LLM call: the messages and sampling options in, the response (with usage) out."""

CONFIDENCE_SOURCES: tuple[str, ...] = ("self", "logprob")


@dataclass(frozen=True)
class BatchPromptConfig:
    """How a BatchPrompt run asks and votes."""

    batch_size: int = 16
    """Most items per call (1 is SinglePrompt); the context window may force smaller batches."""
    rounds: int = 1
    """Voting rounds K, odd; round 1 in the original order, later rounds permuted."""
    seas: bool = False
    """SEAS: drop an item after two consecutive confident, agreeing rounds."""
    voting: VotingConfig = field(default_factory=VotingConfig)
    """How the rounds' answers are combined."""
    seed: int = 0
    """Seed of the per-round permutations."""
    max_concurrency: int = 16
    """Most calls in flight at once within a round."""
    context_window: int = 8192
    """The model's context length in tokens; batches are cut to fit it."""
    max_tokens_per_answer: int = 12
    """Output tokens allowed per item in a call (``max_tokens`` = items x this + a little)."""
    reask: bool = True
    """Re-ask items without a usable answer (smaller batches, then singly)."""
    reask_singles: str = "unvoted"
    """Which items still unanswered after the smaller re-asks get a call of their own:
    ``always`` (every one), ``unvoted`` (in rounds after the first, only items without any usable
    vote so far; round 1 is always ``always``), ``never``."""
    confidence: str = "self"
    """Where an answer's confidence comes from: ``self`` (the paper: the model's own
    ``(sure)``/``(unsure)`` mark) or ``logprob`` (the probability of the answer's label token is
    at least ``confidence_threshold``; the calls ask for logprobs (:attr:`LLMResponse.logprobs`),
    calls answered without them fall back to the marks and are counted in
    ``logprob_missing_calls``)."""
    confidence_threshold: float = 0.9
    """Label-token probability from which a ``logprob`` answer counts as confident."""
    seas_rule: str = "confident"
    """SEAS exit test: ``confident`` (the paper: same label twice, both marked confident) or
    ``agree`` (the released code's: same label twice)."""
    label_scoring: str = "text"
    """How an answer's label is read: ``text`` (the paper: the answer word the model wrote) or
    ``logprob`` (the label with the highest calibrated probability at the answer's label token,
    :mod:`workflows.batchprompt.scoring`; the calls ask for ``label_top_logprobs`` alternatives;
    answers whose response has no logprobs keep their word, calls without them are counted in
    ``logprob_missing_calls``). With ``confidence="logprob"`` the calibrated probability is the
    confidence too."""
    calibration: str = "mean"
    """The label prior ``logprob`` scoring divides by: ``mean`` (the mean label distribution over
    the round's answers; no extra call, assumes roughly balanced labels), ``content_free`` (the
    distribution for an all-``N/A`` item, one extra call per run; ``mean`` when that call gives
    none) or ``none``."""
    label_top_logprobs: int = 5
    """Alternatives per generated token the calls ask for under ``logprob`` scoring (every label's
    first token should be among them)."""
    constrained: bool = False
    """Force the answer format: each call carries the regex of its answer block
    (:func:`~workflows.batchprompt.prompt.answer_regex`, as :attr:`SamplingOptions.regex`), which
    a server with structured outputs (vLLM) decodes under, so no answer goes missing or
    unparsable; the words and marks stay the model's. Other backends answer free text, parsed as
    usual."""

    def __post_init__(self) -> None:
        validate_rounds(self.rounds)
        if self.reask_singles not in ("always", "unvoted", "never"):
            raise ValueError(f"reask_singles must be always, unvoted or never, got {self.reask_singles!r}")
        if self.confidence not in CONFIDENCE_SOURCES:
            raise ValueError(f"confidence must be one of {CONFIDENCE_SOURCES}, got {self.confidence!r}")
        if not 0.0 < self.confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must be in (0, 1], got {self.confidence_threshold}")
        if self.seas_rule not in SEAS_RULES:
            raise ValueError(f"seas_rule must be one of {SEAS_RULES}, got {self.seas_rule!r}")
        if self.label_scoring not in LABEL_SCORINGS:
            raise ValueError(f"label_scoring must be one of {LABEL_SCORINGS}, got {self.label_scoring!r}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        check_ranges(self, batch_size=(1, None), max_concurrency=(1, None), label_top_logprobs=(1, 20),
                     max_tokens_per_answer=(1, None), context_window=(1, None))

    @property
    def wants_logprobs(self) -> bool:
        """Whether the calls ask the backend for token logprobs."""
        return self.confidence == "logprob" or self.label_scoring == "logprob"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchPromptConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("voting"), dict):
            values["voting"] = VotingConfig(**values["voting"])
        elif isinstance(values.get("voting"), str):
            values["voting"] = VotingConfig(rule=values["voting"])  # type: ignore[arg-type]
        return cls(**values)


@dataclass
class CallStats:
    """Counters over the calls of a run (or a round)."""

    num_calls: int = 0
    """LLM calls, re-asks included."""
    input_tokens: int = 0
    """Prompt tokens over all calls, as the server reported them."""
    cached_input_tokens: int = 0
    """The part of ``input_tokens`` the server served from its prefix cache (the instructions and
    few-shot examples every call shares; 0 where the server does not report it)."""
    output_tokens: int = 0
    """Generated tokens over all calls."""
    items_asked: int = 0
    """Item slots in first-attempt calls (one per active item per round)."""
    parse_failures: int = 0
    """First-attempt item slots without a usable answer (missing, unlabeled or conflicting)."""
    num_missing: int = 0
    """First-attempt slots with no line at all."""
    num_duplicates: int = 0
    """First-attempt slots answered more than once."""
    num_out_of_range: int = 0
    """Answers to numbers that were not asked (first attempts)."""
    reask_calls: int = 0
    """Calls spent on re-asks."""
    reask_input_tokens: int = 0
    """Prompt tokens spent on re-asks (included in ``input_tokens``)."""
    reasked_items: int = 0
    """Item slots in re-ask calls."""
    unanswered_votes: int = 0
    """Item-rounds left without an answer after every re-ask."""
    confident_answers: int = 0
    """Usable answers (all attempts) that counted as confident."""
    logprob_missing_calls: int = 0
    """Calls that asked for logprobs (``confidence`` or ``label_scoring`` ``logprob``) whose
    response carried none (marks and answer words used instead)."""
    logprob_scored_answers: int = 0
    """Answers whose label came from calibrated logprobs (``label_scoring="logprob"``)."""
    calibration_calls: int = 0
    """Calls spent estimating the label prior (``calibration="content_free"``; in ``num_calls``)."""

    def add(self, other: CallStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> CallStats:
        return cls(**data)


@dataclass
class RunState:
    """Everything between rounds; :meth:`to_dict` is what the LangGraph checkpoint stores."""

    batches: list[list[str]]
    """Fixed batch membership (item keys in original order); SEAS shrinks, never refills."""
    active: list[str]
    """Keys still being asked."""
    votes: dict[str, list[Vote]]
    """Per item, one vote per round it was asked in."""
    round: int = 0
    """Rounds completed."""
    stats: CallStats = field(default_factory=CallStats)
    """Totals so far."""
    per_round: list[dict[str, Any]] = field(default_factory=list)
    """Per completed round: active items, calls, tokens, failures, SEAS exits."""
    exited_at: dict[str, int] = field(default_factory=dict)
    """SEAS: item key -> the round after which it left."""
    label_prior: dict[str, float] | None = None
    """``calibration="content_free"``: the label distribution of the content-free item, asked once."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": 1,
            "label_prior": self.label_prior,
            "batches": [list(b) for b in self.batches],
            "active": list(self.active),
            "votes": {k: [v.to_list() for v in vs] for k, vs in self.votes.items()},
            "round": self.round,
            "stats": self.stats.to_dict(),
            "per_round": list(self.per_round),
            "exited_at": dict(self.exited_at),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        return cls(
            batches=[list(b) for b in data["batches"]],
            active=list(data["active"]),
            votes={k: [Vote.from_list(v) for v in vs] for k, vs in data["votes"].items()},
            round=int(data["round"]),
            stats=CallStats.from_dict(data["stats"]),
            per_round=list(data["per_round"]),
            exited_at=dict(data["exited_at"]),
            label_prior=data.get("label_prior"),
        )


@dataclass
class BatchPromptResult:
    """The outcome of a run."""

    labels: dict[str, str]
    """Final label per item key (fallback label for unanswered items)."""
    unanswered: list[str]
    """Items that never got a usable answer."""
    accuracy: float | None
    """Share of gold-labelled items whose final label is right; ``None`` without gold labels."""
    num_gold: int
    """Items with a gold label."""
    stats: CallStats
    """Totals over the run."""
    rounds_run: int
    """Rounds actually run (fewer than K when SEAS emptied every batch)."""
    per_round: list[dict[str, Any]]
    """Per-round counters."""
    votes: dict[str, list[Vote]]
    """Every vote per item."""
    exited_at: dict[str, int]
    """SEAS exits."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "unanswered": self.unanswered,
            "accuracy": self.accuracy,
            "num_gold": self.num_gold,
            "stats": self.stats.to_dict(),
            "rounds_run": self.rounds_run,
            "per_round": self.per_round,
            "votes": {k: [v.to_list() for v in vs] for k, vs in self.votes.items()},
            "exited_at": self.exited_at,
        }


def start(
    task: TaskSpec, items: Sequence[Item], config: BatchPromptConfig, count_tokens: Callable[[str], int]
) -> RunState:
    """The state before round 1: batches planned against the context window, all items active."""
    batches = plan_batches(
        task,
        items,
        batch_size=config.batch_size,
        count_tokens=count_tokens,
        context_window=config.context_window,
        max_tokens_per_answer=config.max_tokens_per_answer,
    )
    return RunState(batches=batches, active=[item.key for item in items], votes={item.key: [] for item in items})


def is_finished(state: RunState, config: BatchPromptConfig) -> bool:
    """All K rounds done, or SEAS let every item go."""
    return state.round >= config.rounds or not state.active


class _RoundRunner:
    """Asks one round's batches (with re-asks) under a concurrency bound."""

    def __init__(
        self, task: TaskSpec, items: dict[str, Item], config: BatchPromptConfig, chat: ChatFn, round_index: int,
        label_prior: dict[str, float] | None = None,
    ) -> None:
        self.task = task
        self.items = items
        self.config = config
        self.chat = chat
        self.round_index = round_index
        self.label_prior = label_prior
        self.semaphore = asyncio.Semaphore(config.max_concurrency)
        self.stats = CallStats()
        self.distributions: dict[str, dict[str, float]] = {}
        """``label_scoring="logprob"``: per item key, its label distribution (uncalibrated)."""

    def _sampling(self, num_items: int) -> SamplingOptions:
        config = self.config
        return SamplingOptions(
            max_tokens=max_output_tokens(num_items, config.max_tokens_per_answer), temperature=0.0,
            logprobs=config.wants_logprobs,
            top_logprobs=config.label_top_logprobs if config.label_scoring == "logprob" else 0,
            regex=answer_regex(self.task, num_items) if config.constrained else None,
        )

    async def _call(self, rows: list[dict[str, str]]) -> LLMResponse:
        async with self.semaphore:
            response = await self.chat(compose_messages(self.task, rows), self._sampling(len(rows)))
        self.stats.num_calls += 1
        self.stats.input_tokens += response.usage.input_tokens
        self.stats.cached_input_tokens += response.usage.cached_input_tokens
        self.stats.output_tokens += response.usage.output_tokens
        return response

    async def content_free_prior(self) -> dict[str, float] | None:
        """One call with a content-free item; its label distribution (None when it has none)."""
        response = await self._call([content_free_inputs(self.task)])
        self.stats.calibration_calls += 1
        tokens = response.logprobs
        return label_distributions(self.task, tokens, 1).get(1) if tokens else None

    async def _ask(self, keys: list[str], *, first_attempt: bool) -> dict[str, tuple[str, bool]]:
        response = await self._call([self.items[k].inputs for k in keys])
        parse: BatchParse = parse_answers(self.task, response.text, len(keys))
        confident = {pos: a.confident for pos, a in parse.answers.items()}
        tokens = response.logprobs
        if self.config.wants_logprobs and not tokens:
            self.stats.logprob_missing_calls += 1
        if tokens and self.config.confidence == "logprob":
            probs = label_probabilities(self.task, [(t.token, t.logprob) for t in tokens], len(keys))
            confident = {pos: probs.get(pos, 0.0) >= self.config.confidence_threshold for pos in parse.answers}
        if tokens and self.config.label_scoring == "logprob":
            found = label_distributions(self.task, tokens, len(keys))
            self.distributions.update({keys[pos - 1]: found[pos] for pos in parse.answers if pos in found})
        self.stats.confident_answers += sum(confident.values())
        if first_attempt:
            self.stats.items_asked += len(keys)
            self.stats.parse_failures += len(parse.failed)
            self.stats.num_missing += len(parse.missing)
            self.stats.num_duplicates += len(parse.duplicates)
            self.stats.num_out_of_range += len(parse.out_of_range)
        else:
            self.stats.reask_calls += 1
            self.stats.reask_input_tokens += response.usage.input_tokens
            self.stats.reasked_items += len(keys)
        return {keys[pos - 1]: (a.label, confident[pos]) for pos, a in parse.answers.items()}

    async def ask_all(self, calls: list[list[str]], *, first_attempt: bool) -> dict[str, tuple[str, bool]]:
        """Ask every call concurrently; answers of all calls merged by item key."""
        outcomes = await asyncio.gather(*(self._ask(c, first_attempt=first_attempt) for c in calls),
                                        return_exceptions=True)
        # Let every call in flight settle before failing (e.g. on BudgetExhausted): no call
        # outlives the round, and the ones that finished are journaled for the resumed run.
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        merged: dict[str, tuple[str, bool]] = {}
        for answers in outcomes:
            merged.update(answers)  # type: ignore[arg-type]
        return merged

    async def run(self, orders: list[list[str]], voted: set[str] | frozenset[str] = frozenset()) -> dict[str, Vote]:
        """One vote per item of ``orders`` (each order is one call).

        Phases, each a set of concurrent calls created in a fixed order, so a resumed run issues
        its calls in the same sequence and the runtime's journal replays them correctly: first
        attempts; then the round's failures pooled (in order) into batches of half the round's
        batch size, what still fails into batches of half that, and so on down to 2; then what
        is still unanswered, singly (subject to ``reask_singles``; ``voted`` are the items with
        a usable vote from an earlier round).
        """
        answers = await self.ask_all(orders, first_attempt=True)
        if self.config.reask:
            size = max((len(o) for o in orders), default=0) // 2
            while size >= 2:
                failed = [k for order in orders for k in order if k not in answers]
                if len(failed) < 2:
                    break
                chunks = [failed[i : i + size] for i in range(0, len(failed), size)]
                answers.update(await self.ask_all(chunks, first_attempt=False))
                size //= 2
            rule = self.config.reask_singles
            if rule == "unvoted" and self.round_index == 1:
                rule = "always"
            singles = [
                [k] for order in orders if len(order) > 1 for k in order
                if k not in answers and (rule == "always" or (rule == "unvoted" and k not in voted))
            ]
            answers.update(await self.ask_all(singles, first_attempt=False))
        if self.config.label_scoring == "logprob":
            answers.update(self._scored(answers))
        votes: dict[str, Vote] = {}
        for order in orders:
            for key in order:
                if key in answers:
                    label, confident = answers[key]
                    votes[key] = Vote(self.round_index, label, confident)
                else:
                    self.stats.unanswered_votes += 1
                    votes[key] = Vote(self.round_index, None, False)
        return votes


    def _scored(self, answers: dict[str, tuple[str, bool]]) -> dict[str, tuple[str, bool]]:
        """The answers that have a label distribution, relabelled by its calibrated maximum; the
        confidence is the calibrated probability (``confidence="logprob"``) or the model's mark
        when the label did not change."""
        prior = None
        if self.config.calibration == "content_free":
            prior = self.label_prior
        if self.config.calibration != "none" and prior is None:
            prior = mean_prior(self.distributions.values(), [label.value for label in self.task.labels])
        scored: dict[str, tuple[str, bool]] = {}
        for key, (word, marked) in answers.items():
            if key not in self.distributions:
                continue
            q = calibrate(self.distributions[key], prior)
            label = max(q, key=lambda value: q[value])
            if self.config.confidence == "logprob":
                confident = q[label] >= self.config.confidence_threshold
            else:
                confident = marked and label == word
            self.stats.confident_answers += confident - marked
            scored[key] = (label, confident)
        self.stats.logprob_scored_answers += len(scored)
        return scored


async def step(
    state: RunState, task: TaskSpec, items: dict[str, Item], config: BatchPromptConfig, chat: ChatFn
) -> RunState:
    """Run the next round over the active items and apply SEAS; returns the new state."""
    round_index = state.round + 1
    runner = _RoundRunner(task, items, config, chat, round_index, state.label_prior)
    label_prior = state.label_prior
    if config.label_scoring == "logprob" and config.calibration == "content_free" and label_prior is None:
        label_prior = runner.label_prior = await runner.content_free_prior()
    active = set(state.active)
    orders = [
        permute([k for k in batch if k in active], round_index, seed=config.seed, batch_index=b)
        for b, batch in enumerate(state.batches)
    ]
    voted = {k for k in state.active if any(v.label is not None for v in state.votes[k])}
    round_votes = await runner.run([order for order in orders if order], voted)
    votes = {k: list(vs) for k, vs in state.votes.items()}
    for key, vote in round_votes.items():
        votes[key].append(vote)
    exited = [k for k in state.active if seas_done(votes[k], config.seas_rule)] if config.seas else []  # type: ignore[arg-type]
    exited_set = set(exited)
    stats = CallStats(**state.stats.to_dict())
    stats.add(runner.stats)
    summary = {
        "round": round_index,
        "num_active": len(state.active),
        "num_batches": sum(1 for o in orders if o),
        "num_exited": len(exited),
        **runner.stats.to_dict(),
    }
    return RunState(
        batches=state.batches,
        active=[k for k in state.active if k not in exited_set],
        votes=votes,
        round=round_index,
        stats=stats,
        per_round=[*state.per_round, summary],
        exited_at={**state.exited_at, **{k: round_index for k in exited}},
        label_prior=label_prior,
    )


def finish(state: RunState, task: TaskSpec, items: Sequence[Item], config: BatchPromptConfig) -> BatchPromptResult:
    """Vote, fill in fallbacks and score against gold labels."""
    labels: dict[str, str] = {}
    unanswered: list[str] = []
    for item in items:
        winner = tally(state.votes.get(item.key, []), config.voting)
        if winner is None:
            unanswered.append(item.key)
            winner = task.fallback_label
        labels[item.key] = winner
    gold = [item for item in items if item.gold is not None]
    accuracy = sum(labels[i.key] == i.gold for i in gold) / len(gold) if gold else None
    return BatchPromptResult(
        labels=labels,
        unanswered=unanswered,
        accuracy=accuracy,
        num_gold=len(gold),
        stats=state.stats,
        rounds_run=state.round,
        per_round=state.per_round,
        votes=state.votes,
        exited_at=state.exited_at,
    )


async def run_batchprompt(
    task: TaskSpec,
    items: Sequence[Item],
    config: BatchPromptConfig,
    chat: ChatFn,
    count_tokens: Callable[[str], int],
) -> BatchPromptResult:
    """Run BatchPrompt (or SinglePrompt, ``batch_size=1``) over ``items`` without a graph."""
    by_key = {item.key: item for item in items}
    state = start(task, items, config, count_tokens)
    while not is_finished(state, config):
        state = await step(state, task, by_key, config, chat)
    return finish(state, task, items, config)
