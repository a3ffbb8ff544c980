"""DRQA's decisions, pure: what to ask the model next and what its replies mean for the run.

A run goes through the stages of :data:`NODE_ORDER`. In each, :func:`decide` looks at the run
state (plain JSON: plans, quotas, answers so far) and, when it has one, the observation of what
its last calls returned, and gives the next action:

- :class:`Ask`: make these calls (concurrently, each through the runtime) and call
  :func:`decide` again with their replies as the :class:`Observation`;
- :class:`Advance`: merge this update into the state and record this step; the stage is over
  when ``done``, otherwise call :func:`decide` again (the next 'easiest_first' solve wave).

The stages, per method (see :mod:`workflows.drqa.quota.plan`): ``probe`` asks the batch-mode
probe prompts and quick answers (drqa; skipped when the budget is too small); ``allocate``
splits what is left into solve quotas; ``solve`` asks one call per funded question, in waves
for 'easiest_first' (each wave funds the next easiest questions from what the last one left);
``reallocate`` (drqa) continues cut-off solutions and re-asks doubtful ones with what is still
unspent; ``answer`` forces a final answer out of every working cut at its quota, paid from the
quota's reserve; ``final`` picks each item's answer and scores it.

Every call's ``max_tokens`` comes out of what the run has left, so the run never spends more
than its ``total_budget`` output tokens, whatever the model does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias, TypedDict

from orchestrator.types import LLMResponse, Message, SamplingOptions
from workflows.answers import answers_match
from workflows.drqa.config import DRQARunConfig
from workflows.drqa.datasets import get_spec
from workflows.drqa.prompts import continuation_messages, force_answer_messages, solve_messages
from workflows.drqa.quota.allocation import RetryCandidate, reallocate
from workflows.drqa.quota.batch import (
    ProbeItem,
    compose_probe_messages,
    compose_quick_messages,
    parse_probe_response,
    parse_quick_answer,
)
from workflows.drqa.quota.difficulty import difficulty_signals, estimate_difficulty, size_ranks
from workflows.drqa.quota.enforcement import WORDS_PER_TOKEN, quota_sampling
from workflows.drqa.quota.plan import ProbePlan, answer_reserve, plan_probe, policy_for, solve_quotas
from workflows.drqa.quota.signals import span_logprobs
from workflows.drqa.records import attempt_record, clip, final_answer, held_for_answers, tokens_of, working_of

__all__ = ["NODE_ORDER", "Action", "Advance", "Ask", "Call", "DRQAState", "Observation", "decide"]

NODE_ORDER = ("probe", "allocate", "solve", "reallocate", "answer", "final")
"""The stages, in the order every method runs them."""


class DRQAState(TypedDict, total=False):
    """The run state (all JSON): the graph's state and what :func:`decide` reads."""

    items: list[dict[str, str]]
    dataset: str
    task_options: dict[str, Any]
    spent: int
    spent_by_purpose: dict[str, int]
    probe: list[dict[str, Any]]
    quotas: list[int]
    num_waves: int
    """Solve waves run so far (one, except for 'easiest_first')."""
    attempts: list[dict[str, Any] | None]
    extras: list[int]
    retries: list[dict[str, Any] | None]
    forced: list[dict[str, Any] | None]
    final: list[dict[str, Any]]
    method: str
    total_budget: int | None


@dataclass(frozen=True)
class Call:
    """One LLM call the engine asks for."""

    purpose: str
    """What it is for (the runtime's ``purpose``): probe, quick, solve, continuation, retry, answer."""
    item: int
    """The item it is about (a probe call: the index of its batch in the probe plan)."""
    messages: tuple[Message, ...]
    """The prompt."""
    sampling: SamplingOptions
    """Sampling options; ``max_tokens`` is the call's share of the budget."""
    quota: int = 0
    """Tokens granted to the call, as its attempt record states them."""
    kind: str = ""
    """Kind of its attempt record: solve, continuation, retry, forced."""
    details: dict[str, Any] = field(default_factory=dict)
    """More fields of its attempt record (a solve's reserve, stated budget and wave)."""


@dataclass(frozen=True)
class Ask:
    """Make these calls; their replies are the next :class:`Observation`."""

    calls: tuple[Call, ...]


@dataclass(frozen=True)
class Advance:
    """Merge ``update`` into the state and record ``record`` as a step (unless None)."""

    update: dict[str, Any]
    record: dict[str, Any] | None = None
    done: bool = True
    """The stage is over; otherwise :func:`decide` has more to do in it."""


Action: TypeAlias = Ask | Advance


@dataclass(frozen=True)
class Observation:
    """What the last :class:`Ask` returned: its calls and their responses, in the same order."""

    calls: tuple[Call, ...]
    responses: tuple[LLMResponse, ...]

    def __iter__(self) -> Iterator[tuple[Call, LLMResponse]]:
        return iter(zip(self.calls, self.responses, strict=True))

    def tokens(self, *purposes: str) -> int:
        """Output tokens of the calls made for ``purposes`` (all calls when none is named)."""
        return sum(tokens_of(r) for c, r in self if not purposes or c.purpose in purposes)


_Stage: TypeAlias = Callable[[DRQAState, DRQARunConfig, Observation | None], Action]


def decide(stage: str, state: DRQAState, config: DRQARunConfig, observation: Observation | None = None) -> Action:
    """The next action of ``stage``, given the run state and the replies to its last :class:`Ask`."""
    try:
        step = _STAGES[stage]
    except KeyError:
        raise ValueError(f"unknown DRQA stage {stage!r}; expected one of {NODE_ORDER}") from None
    return step(state, config, observation)


def _spend(state: Mapping[str, Any], tokens_by_purpose: Mapping[str, int]) -> dict[str, Any]:
    """The state's ``spent`` and ``spent_by_purpose`` with ``tokens_by_purpose`` added."""
    by = dict(state.get("spent_by_purpose", {}))
    for purpose, tokens in tokens_by_purpose.items():
        by[purpose] = by.get(purpose, 0) + tokens
    return {"spent": state.get("spent", 0) + sum(tokens_by_purpose.values()), "spent_by_purpose": by}


def _base(config: DRQARunConfig) -> SamplingOptions:
    return SamplingOptions(temperature=config.temperature)


def _quotas(state: DRQAState, config: DRQARunConfig, budget_left: int, funded: list[bool] | None = None) -> list[int]:
    probe = state["probe"]
    return solve_quotas(policy_for(config.method), [p["difficulty"] for p in probe],
                        [bool(p["resolved"]) for p in probe], budget_left, config.quota, funded=funded)


# -- probe --------------------------------------------------------------------------------------
def _probe(state: DRQAState, config: DRQARunConfig, observation: Observation | None) -> Action:
    policy = policy_for(config.method)
    questions = [it["question"] for it in state["items"]]
    dcfg = config.quota.difficulty
    # The question-size prior costs no call: drqa uses it even when the probe is skipped, and
    # with difficulty_signal="size" it is the whole estimate, so no probe runs.
    by_size = dcfg.difficulty_signal == "size"
    ranks = (size_ranks(questions, dcfg.numbers_weight)
             if policy.probe and (dcfg.weight_prior > 0 or by_size) else None)
    plan = plan_probe(len(questions), config.total_budget or 0, config.quota) if policy.probe and not by_size else None
    if plan is None or not plan.enabled:
        neutral = [{"difficulty": max(ranks[i], dcfg.min_difficulty) if ranks is not None else 1.0,
                    "resolved": False, "answer": None, "confidence": None,
                    "size_rank": ranks[i] if ranks is not None else None,
                    **({"signals": {"size": ranks[i]}} if ranks is not None else {})}
                   for i in range(len(questions))]
        record: dict[str, Any] = {"enabled": False, "method": config.method}
        if policy.probe:
            record["skipped_for"] = "difficulty_signal=size" if by_size else "budget"
        return Advance({"probe": neutral}, record)
    if observation is None:
        return Ask(_probe_calls(state, config, plan))
    parsed = [ProbeItem(i + 1, None, "", 0, None, missing=True) for i in range(len(questions))]
    quick: list[str | None] = [None] * len(questions)
    samples: list[list[str | None]] = [[] for _ in questions]
    # Token logprobs of each question's answer, for the 'logprob' signal (None: none came back):
    # the probe's own answer tokens, or the greedy quick answer's where the probe states none.
    probe_logprobs: list[list[float] | None] = [None] * len(questions)
    quick_logprobs: list[list[float] | None] = [None] * len(questions)
    for call, response in observation:
        if call.purpose == "probe":
            batch = plan.batches[call.item]
            # The tokens' text laid end to end is the reply's (up to a multi-byte character split
            # across tokens, which shifts the answer's span by a few characters at worst).
            tokens = [(t.token, t.logprob) for t in response.logprobs] if response.logprobs else None
            for i, p in zip(batch, parse_probe_response(response.text, len(batch)), strict=True):
                parsed[i] = p
                if tokens is not None:
                    probe_logprobs[i] = span_logprobs(tokens, p.answer_span) if p.answer_span else []
            continue
        answer = parse_quick_answer(response.text)
        samples[call.item].append(answer)
        if call.details.get("sample", 0) == 0:
            quick[call.item] = answer
            if response.logprobs is not None:
                quick_logprobs[call.item] = [t.logprob for t in response.logprobs]
    per_item: list[dict[str, Any]] = []
    num_logprob = 0
    for i, p in enumerate(parsed):
        rank = ranks[i] if ranks is not None else None
        d = estimate_difficulty(p, quick[i], dcfg, size_rank=rank)
        # The probe's answer tokens; the quick answer's where the probe has none; else the probe's
        # own value again: [] (logprobs came back, no answer to read them over: hard) or None.
        answer_logprobs = probe_logprobs[i] or quick_logprobs[i]
        if not answer_logprobs:
            answer_logprobs = probe_logprobs[i]
        num_logprob += bool(answer_logprobs)
        signals = difficulty_signals(p, samples[i], answer_logprobs, rank, dcfg, mixed=d.value)
        chosen = dcfg.difficulty_signal
        value = d.value if chosen == "mixed" else max(signals[chosen], dcfg.min_difficulty)
        per_item.append({"answer": p.answer, "confidence": p.confidence, "reasoning_tokens": p.reasoning_tokens,
                         "missing": p.missing, "quick": quick[i], "difficulty": value, "resolved": d.resolved,
                         "agrees": d.agrees, "size_rank": rank, "signals": signals})
    update = _spend(state, {"probe": observation.tokens("probe"), "quick": observation.tokens("quick")})
    return Advance({"probe": per_item, **update}, {
        "enabled": True, "num_prompts": len(plan.batches), "max_spend": plan.max_spend, "spent": update["spent"],
        "num_resolved": sum(1 for e in per_item if e["resolved"]),
        "num_missing": sum(1 for e in per_item if e["missing"]),
        # Questions whose 'logprob' signal read an answer's token logprobs (0 when none were
        # asked for, see record_logprobs, or the server returned none).
        "num_logprob_signals": num_logprob,
    })


def _probe_calls(state: DRQAState, config: DRQARunConfig, plan: ProbePlan) -> tuple[Call, ...]:
    spec = get_spec(state["dataset"])
    questions = [it["question"] for it in state["items"]]
    words = int(plan.probe_max_tokens[0] / max(len(plan.batches[0]), 1) * WORDS_PER_TOKEN * 0.8)
    # The 'logprob' signal reads the probe's answer tokens (and the greedy quick answer's).
    dcfg = config.quota.difficulty
    wants_logprobs = dcfg.difficulty_signal == "logprob" or dcfg.record_logprobs
    probes = [
        Call("probe", j, compose_probe_messages([questions[i] for i in batch], answer_hint=spec.answer_hint,
                                                max_words_per_question=words),
             quota_sampling(plan.probe_max_tokens[j], replace(_base(config), logprobs=wants_logprobs)))
        for j, batch in enumerate(plan.batches)
    ]
    samplings = [replace(_base(config), logprobs=wants_logprobs)] + [
        SamplingOptions(temperature=config.quota.quick_sample_temperature, seed=s)
        for s in range(1, plan.num_quick_samples)
    ]
    quick = [
        Call("quick", i, compose_quick_messages(q, answer_hint=spec.answer_hint),
             quota_sampling(plan.quick_max_tokens, sampling), details={"sample": s} if s else {})
        for i, q in enumerate(questions) for s, sampling in enumerate(samplings)
    ] if plan.quick_max_tokens > 0 else []
    return (*probes, *quick)


# -- allocate -----------------------------------------------------------------------------------
def _allocate(state: DRQAState, config: DRQARunConfig, observation: Observation | None) -> Action:
    budget_left = (config.total_budget or 0) - state.get("spent", 0)
    quotas = _quotas(state, config, budget_left)
    return Advance({"quotas": quotas}, {"method": config.method, "budget_left": budget_left,
                                        "allocated": sum(quotas), "num_funded": sum(1 for q in quotas if q > 0),
                                        "min_quota_tokens": config.quota.min_quota_tokens})


# -- solve --------------------------------------------------------------------------------------
def _solve(state: DRQAState, config: DRQARunConfig, observation: Observation | None) -> Action:
    """One wave: ask every funded question, then record what came back. With drqa's
    'easiest_first' strategy, what a wave did not spend funds the next easiest questions, until a
    wave funds none; otherwise there is one wave, on the allocated quotas."""
    if observation is None:
        return Ask(_wave_calls(state, config))
    wave = state.get("num_waves", 0)
    attempts = list(state.get("attempts") or [None] * len(state["items"]))
    quotas = list(state["quotas"])
    num_truncated = 0
    for call, response in observation:
        quotas[call.item] = call.quota
        attempts[call.item] = record = attempt_record(response, call.quota, call.kind, **call.details)
        num_truncated += record["truncated"]
    update = {"attempts": attempts, "quotas": quotas, "num_waves": wave + 1,
              **_spend(state, {"solve": observation.tokens()})}
    policy = policy_for(config.method)
    waves = policy.weighting == "difficulty" and config.quota.strategy == "easiest_first"
    return Advance(update, {"wave": wave, "num_calls": len(observation.calls), "spent": update["spent"],
                            "num_truncated": num_truncated}, done=not waves or not observation.calls)


def _wave_calls(state: DRQAState, config: DRQARunConfig) -> tuple[Call, ...]:
    wave = state.get("num_waves", 0)
    if wave == 0:
        quotas = state["quotas"]
    else:
        attempts = state["attempts"]
        left = (config.total_budget or 0) - state.get("spent", 0) - held_for_answers(attempts)
        quotas = _quotas(state, config, left, funded=[a is not None for a in attempts])
    policy = policy_for(config.method)
    spec = get_spec(state["dataset"])
    cfg = config.quota
    style = cfg.solve_style if policy.weighting != "none" else "plain"
    calls = []
    for i, quota in enumerate(quotas):
        if quota <= 0:
            continue
        reserve = answer_reserve(quota, cfg)
        # With forcing on, the stated budget is exactly what the solve call may spend. A whole
        # quota (the ceiling) does not bind: saying it only changes the prompt. On the H200
        # (bench/NOTEBOOK.md, DRQA) stating whole quotas cost drqa 1-2 points on GSM8K.
        stated_reserve = reserve if cfg.force_answer else cfg.answer_reserve_tokens
        binds = policy.weighting != "none" and cfg.state_budget and quota < cfg.allocation.ceiling_tokens
        stated = quota if binds else None
        messages = solve_messages(state["items"][i]["question"], spec.answer_instruction, quota_tokens=stated,
                                  answer_reserve_tokens=stated_reserve, style=style)
        calls.append(Call("solve", i, messages, quota_sampling(quota - reserve, _base(config)), quota=quota,
                          kind="solve", details={"reserve": reserve, "stated_quota": stated,
                                                 "stated_reserve": stated_reserve, "wave": wave}))
    return tuple(calls)


# -- reallocate ---------------------------------------------------------------------------------
def _reallocate(state: DRQAState, config: DRQARunConfig, observation: Observation | None) -> Action:
    """Spend what is left (less the reserves held for forced answers) on unresolved questions
    first, then on answered ones that look doubtful (drqa only)."""
    n = len(state["items"])
    if not policy_for(config.method).reallocate:
        return Advance({"extras": [0] * n, "retries": [None] * n})
    held = held_for_answers(state["attempts"])
    pool = max((config.total_budget or 0) - state.get("spent", 0) - held, 0)
    candidates = _retry_candidates(state, config)
    extras = reallocate(pool, candidates, config.quota.reallocation)
    if observation is None:
        return Ask(_retry_calls(state, config, candidates, extras))
    retries: list[dict[str, Any] | None] = [None] * n
    for call, response in observation:
        retries[call.item] = attempt_record(response, call.quota, call.kind)
    update = _spend(state, {"reallocate": observation.tokens()})
    return Advance({"extras": extras, "retries": retries, **update},
                   {"pool": pool, "held_for_answers": held, "allocated": sum(extras),
                    "num_calls": len(observation.calls), "spent": update["spent"]})


def _retry_candidates(state: DRQAState, config: DRQARunConfig) -> list[RetryCandidate]:
    candidates = []
    for p, a in zip(state["probe"], state["attempts"], strict=True):
        unresolved = not p["resolved"] and (a is None or a["answer"] is None)
        doubtful = a is not None and a["answer"] is not None and (
            (p.get("answer") is not None and not answers_match(p["answer"], a["answer"]))
            or (p.get("confidence") is not None and p["confidence"] < config.quota.low_confidence_threshold)
        )
        candidates.append(RetryCandidate(unresolved, doubtful, float(p["difficulty"])))
    return candidates


def _retry_calls(
    state: DRQAState, config: DRQARunConfig, candidates: list[RetryCandidate], extras: list[int]
) -> tuple[Call, ...]:
    """A cut-off unresolved solve is continued; another unresolved one is solved afresh; a
    doubtful answer gets a second opinion at the retry temperature."""
    spec = get_spec(state["dataset"])
    reserve = config.quota.answer_reserve_tokens
    calls = []
    for i, extra in enumerate(extras):
        if extra <= 0:
            continue
        question, attempt = state["items"][i]["question"], state["attempts"][i]
        if candidates[i].unresolved and attempt is not None and attempt["truncated"]:
            messages = continuation_messages(question, spec.answer_instruction, attempt["text"],
                                             extra_tokens=extra, answer_reserve_tokens=reserve)
            calls.append(Call("continuation", i, messages, quota_sampling(extra, _base(config)), extra,
                              "continuation"))
            continue
        kind = "solve" if candidates[i].unresolved else "retry"
        temperature = config.temperature if kind == "solve" else config.retry_temperature
        messages = solve_messages(question, spec.answer_instruction, quota_tokens=extra,
                                  answer_reserve_tokens=reserve, style=config.quota.solve_style)
        calls.append(Call("retry", i, messages, quota_sampling(extra, SamplingOptions(temperature=temperature)),
                          extra, kind))
    return tuple(calls)


# -- answer -------------------------------------------------------------------------------------
def _answer(state: DRQAState, config: DRQARunConfig, observation: Observation | None) -> Action:
    """Force a final answer out of every working that was cut off (or ended without one)."""
    n = len(state["items"])
    if not config.quota.force_answer:
        return Advance({"forced": [None] * n}, {"enabled": False})
    if observation is None:
        return Ask(_answer_calls(state, config))
    forced: list[dict[str, Any] | None] = [None] * n
    for call, response in observation:
        forced[call.item] = attempt_record(response, call.quota, call.kind)
    update = _spend(state, {"answer": observation.tokens()})
    return Advance({"forced": forced, **update}, {
        "enabled": True, "num_calls": len(observation.calls), "spent": update["spent"],
        "num_answered": sum(1 for f in forced if f and f["answer"] is not None),
    })


def _answer_calls(state: DRQAState, config: DRQARunConfig) -> tuple[Call, ...]:
    """Each forced answer gets what its item's quota and extra have left, at most the reserve."""
    spec = get_spec(state["dataset"])
    # Safety net on top of the per-item arithmetic: never past the run's total.
    left = None if config.total_budget is None else max(config.total_budget - state.get("spent", 0), 0)
    calls = []
    for i, (attempt, retry) in enumerate(zip(state["attempts"], state["retries"], strict=True)):
        working, _, needs = working_of(attempt, retry)
        if not needs or attempt is None:
            continue
        used = attempt["tokens"] + (retry["tokens"] if retry else 0)
        allowance = min(attempt["reserve"], attempt["quota"] + state["extras"][i] - used)
        if left is not None:
            allowance = min(allowance, left)
        if allowance <= 0:
            continue
        if left is not None:
            left -= allowance
        # The plain solve prompt, without the budget sentence: a 0.5B model shown a number
        # right before "give the answer" copies it as the answer (bench/NOTEBOOK.md, DRQA).
        prompt = solve_messages(state["items"][i]["question"], spec.answer_instruction, quota_tokens=None,
                                answer_reserve_tokens=0)
        messages = force_answer_messages(prompt, working, spec.answer_instruction)
        calls.append(Call("answer", i, messages, quota_sampling(allowance, _base(config)), allowance, "forced"))
    return tuple(calls)


# -- final --------------------------------------------------------------------------------------
def _final(state: DRQAState, config: DRQARunConfig, observation: Observation | None) -> Action:
    spec = get_spec(state["dataset"])
    n = len(state["items"])
    forced_all = state.get("forced") or [None] * n
    out = []
    for idx, item in enumerate(state["items"]):
        a, r, f = state["attempts"][idx], state["retries"][idx], forced_all[idx]
        probe = state["probe"][idx]
        answer, source = final_answer(probe, a, r, f)
        working, _, _ = working_of(a, r)
        out.append({
            "id": item["id"], "answer": answer, "gold": item["gold"], "source": source,
            "correct": spec.is_correct(answer, item["gold"]),
            "quota": state["quotas"][idx], "extra": state["extras"][idx],
            "solve_tokens": sum(x["tokens"] for x in (a, r, f) if x),
            "finish_reason": a["finish_reason"] if a else None,
            "wave": a.get("wave") if a else None,
            "retry_kind": r["kind"] if r else None,
            "forced": f is not None,
            "forced_finish_reason": f["finish_reason"] if f else None,
            "text": clip(working),
            "forced_text": clip(f["text"], 200) if f else None,
            "probe_answer": probe.get("answer"),
            "difficulty": probe["difficulty"],
        })
    return Advance({"final": out, "method": config.method, "total_budget": config.total_budget},
                   {"num_correct": sum(1 for o in out if o["correct"]), "num_items": len(out),
                    "spent": state.get("spent", 0)})


_STAGES: dict[str, _Stage] = {
    "probe": _probe, "allocate": _allocate, "solve": _solve, "reallocate": _reallocate, "answer": _answer,
    "final": _final,
}
