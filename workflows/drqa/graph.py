"""The ``drqa`` workflow: probe -> allocate -> solve -> reallocate -> answer -> final, over a dataset.

Every call goes through ``ctx.chat`` (ledger, store, metrics, journal). The run's own reasoning
budget (output tokens) is enforced on top of that: each call's ``max_tokens`` is carved out of
what is left, so the run never spends more than ``total_budget`` output tokens, whatever the
model does. Methods ``uniform`` and ``unlimited`` take the same path with stages switched off.

A solve cut off at its quota is not scored as "no answer": each quota keeps a small reserve
(``answer_reserve_tokens``) out of the solve call, and the ``answer`` stage spends it on one
short call that shows the model its working and asks for the final answer now (every method,
when ``force_answer`` is on).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, cast

from workflows.drqa.quota.allocation import RetryCandidate, reallocate
from workflows.answers import answers_match, extract_final_answer, normalize_answer
from workflows.drqa.quota.batch import (
    ProbeItem,
    approx_token_count,
    compose_probe_messages,
    compose_quick_messages,
    parse_probe_response,
    parse_quick_answer,
)
from workflows.drqa.quota.difficulty import estimate_difficulty, size_ranks
from workflows.drqa.quota.enforcement import WORDS_PER_TOKEN, quota_sampling
from workflows.drqa.quota.plan import answer_reserve, plan_probe, policy_for, solve_quotas
from orchestrator.aio import gather_limited
from orchestrator.errors import BadInputError
from orchestrator.types import LLMResponse, Message, SamplingOptions
from workflows.drqa.config import DRQARunConfig, run_config_from
from workflows.drqa.datasets import Item, detect_dataset, get_spec
from workflows.drqa.prompts import continuation_messages, force_answer_messages, solve_messages

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

    from orchestrator.context import RunContext

__all__ = ["NODE_ORDER", "DRQAState", "build", "initial_state", "make_nodes", "result", "run_nodes"]

NODE_ORDER = ("probe", "allocate", "solve", "reallocate", "answer", "final")
"""The stages, in the order every method runs them."""



class DRQAState(TypedDict, total=False):
    items: list[dict[str, str]]
    dataset: str
    task_options: dict[str, Any]
    spent: int
    spent_by_purpose: dict[str, int]
    probe: list[dict[str, Any]]
    quotas: list[int]
    attempts: list[dict[str, Any] | None]
    extras: list[int]
    retries: list[dict[str, Any] | None]
    forced: list[dict[str, Any] | None]
    final: list[dict[str, Any]]
    method: str
    total_budget: int | None


_TASK_OPTION_KEYS = ("method", "total_budget", "budget_tokens")


def initial_state(task: dict[str, Any]) -> dict[str, Any]:
    """The graph input for a dataset task: ``{"rows": [...], "dataset": "gsm8k"|"math"}``.

    ``rows`` are raw dataset rows (or ``items`` already shaped ``{"id","question","gold"}``);
    ``method`` and ``total_budget`` may ride along and win over the run options.
    """
    dataset = task.get("dataset")
    if task.get("items"):
        items = [{"id": str(r["id"]), "question": str(r["question"]), "gold": str(r["gold"])} for r in task["items"]]
        dataset = dataset or "gsm8k"
    else:
        rows = task.get("rows")
        if not rows:
            raise BadInputError("task", 'an object with "rows" (dataset rows) or "items"')
        dataset = dataset or detect_dataset(rows)
        spec = get_spec(dataset)
        items = [spec.item(r).to_dict() for r in rows]
    get_spec(dataset)
    return {
        "items": items,
        "dataset": dataset,
        "task_options": {k: task[k] for k in _TASK_OPTION_KEYS if task.get(k) is not None},
        "spent": 0,
        "spent_by_purpose": {},
    }


def result(state: dict[str, Any]) -> dict[str, Any]:
    """Answers, accuracy and token use of a finished run."""
    final = state.get("final", [])
    num_correct = sum(1 for f in final if f.get("correct"))
    counts = {
        # Solve calls stopped by max_tokens, answers forced out of a cut-off working, and items
        # left with no parsable answer at all (scored wrong).
        "num_truncated": sum(1 for f in final if f.get("finish_reason") == "length"),
        "num_forced": sum(1 for f in final if f.get("forced")),
        "num_unparsable": sum(1 for f in final if f.get("answer") is None),
    }
    return {
        "answer": [f.get("answer") for f in final],
        "dataset": state.get("dataset"),
        "method": state.get("method"),
        "total_budget": state.get("total_budget"),
        "num_items": len(final),
        "num_correct": num_correct,
        "accuracy": num_correct / len(final) if final else 0.0,
        "reasoning_tokens": state.get("spent", 0),
        "tokens_by_purpose": state.get("spent_by_purpose", {}),
        **counts,
        "items": final,
    }


def _tokens(response: LLMResponse) -> int:
    # Backends that do not report usage still spend: estimate rather than count zero.
    return response.usage.output_tokens or approx_token_count(response.text)


def _add_spend(state: DRQAState, purpose: str, tokens: int) -> dict[str, Any]:
    by = dict(state.get("spent_by_purpose", {}))
    by[purpose] = by.get(purpose, 0) + tokens
    return {"spent": state.get("spent", 0) + tokens, "spent_by_purpose": by}


def _held_for_answers(attempts: Sequence[dict[str, Any] | None]) -> int:
    """Quota reserves of answerless solves: held for their forced answers, not spendable elsewhere."""
    return sum(a["reserve"] for a in attempts if a is not None and a["answer"] is None)


def _attempt(response: LLMResponse, quota: int, kind: str, **extra: Any) -> dict[str, Any]:
    truncated = response.finish_reason == "length"
    return {
        "kind": kind,
        "text": response.text,
        "answer": extract_final_answer(response.text, allow_last_number=not truncated),
        "truncated": truncated,
        "finish_reason": response.finish_reason,
        "tokens": _tokens(response),
        "quota": quota,
        **extra,
    }


TEXT_RECORD_CHARS = 600
"""Per-item records keep at most this much of the raw output (its start and its end)."""


def _clip(text: str, limit: int = TEXT_RECORD_CHARS) -> str:
    if len(text) <= limit:
        return text
    head = limit // 3
    return f"{text[:head]} [...] {text[-(limit - head):]}"


def _chain(attempt: dict[str, Any] | None, retry: dict[str, Any] | None) -> tuple[str, str | None, bool]:
    """The working a forced answer continues from, its answer so far, and whether it needs one.

    A continuation extends the solve's text; a fresh re-solve replaces it; a 'retry' (second
    opinion on an answered question) never needs forcing, the first answer stands.
    """
    if attempt is None:
        return "", None, False
    if retry is not None and retry["kind"] == "continuation":
        joiner = "" if retry["text"][:1].isspace() or attempt["text"][-1:].isspace() else " "
        return attempt["text"] + joiner + retry["text"], retry["answer"], retry["answer"] is None
    if retry is not None and retry["kind"] == "solve":
        if retry["answer"] is None and attempt["answer"] is None:
            return retry["text"], None, True
        return retry["text"], retry["answer"] or attempt["answer"], False
    return attempt["text"], attempt["answer"], attempt["answer"] is None


def make_nodes(ctx: RunContext) -> dict[str, Callable[[DRQAState], Awaitable[dict[str, Any]]]]:
    """The stage functions, closing over ``ctx`` (all calls go through ``ctx.chat``)."""

    def config_of(state: DRQAState) -> DRQARunConfig:
        return run_config_from(ctx.config, state.get("task_options", {}))

    def items_of(state: DRQAState) -> list[Item]:
        return [Item(r["id"], r["question"], r["gold"]) for r in state["items"]]

    async def chat(messages: Sequence[Message], sampling: SamplingOptions, purpose: str) -> LLMResponse:
        return await ctx.chat(tuple(messages), sampling=sampling, purpose=purpose)

    async def probe(state: DRQAState) -> dict[str, Any]:
        cfg = config_of(state)
        policy = policy_for(cfg.method)
        items = items_of(state)
        spec = get_spec(state["dataset"])
        dcfg = cfg.quota.difficulty
        # The question-size prior costs no call: drqa uses it even when the probe is skipped.
        ranks = (size_ranks([it.question for it in items], dcfg.numbers_weight)
                 if policy.probe and dcfg.weight_prior > 0 else None)
        neutral = [{"difficulty": ranks[i] if ranks is not None else 1.0, "resolved": False, "answer": None,
                    "confidence": None, "size_rank": ranks[i] if ranks is not None else None}
                   for i in range(len(items))]
        plan = plan_probe(len(items), cfg.total_budget or 0, cfg.quota) if policy.probe else None
        if plan is None or not plan.enabled:
            await ctx.record_step("probe", {"enabled": False, "method": cfg.method})
            return {"probe": neutral}
        base = SamplingOptions(temperature=cfg.temperature)
        words = int(plan.probe_max_tokens[0] / max(len(plan.batches[0]), 1) * WORDS_PER_TOKEN * 0.8)
        probe_calls = [
            (lambda b=b, j=j: chat(
                compose_probe_messages([items[i].question for i in b], answer_hint=spec.answer_hint,
                                       max_words_per_question=words),
                quota_sampling(plan.probe_max_tokens[j], base), "probe"))
            for j, b in enumerate(plan.batches)
        ]
        quick_calls = (
            [
                (lambda it=it: chat(compose_quick_messages(it.question, answer_hint=spec.answer_hint),
                                    quota_sampling(plan.quick_max_tokens, base), "quick"))
                for it in items
            ]
            if plan.quick_max_tokens > 0
            else []
        )
        responses = await gather_limited(cfg.max_concurrency, [*probe_calls, *quick_calls])
        probe_responses, quick_responses = responses[: len(probe_calls)], responses[len(probe_calls):]
        parsed: list[ProbeItem] = [ProbeItem(i + 1, None, "", 0, None, missing=True) for i in range(len(items))]
        for b, resp in zip(plan.batches, probe_responses, strict=True):
            for i, p in zip(b, parse_probe_response(resp.text, len(b)), strict=True):
                parsed[i] = p
        quick_answers = [parse_quick_answer(r.text) for r in quick_responses] or [None] * len(items)
        per_item: list[dict[str, Any]] = []
        for i, (p, quick) in enumerate(zip(parsed, quick_answers, strict=True)):
            rank = ranks[i] if ranks is not None else None
            d = estimate_difficulty(p, quick, dcfg, size_rank=rank)
            per_item.append({"answer": p.answer, "confidence": p.confidence, "reasoning_tokens": p.reasoning_tokens,
                             "missing": p.missing, "quick": quick, "difficulty": d.value, "resolved": d.resolved,
                             "agrees": d.agrees, "size_rank": rank})
        update = _add_spend(state, "probe", sum(_tokens(r) for r in probe_responses))
        update = _add_spend(cast(DRQAState, {**state, **update}), "quick", sum(_tokens(r) for r in quick_responses))
        await ctx.record_step("probe", {
            "enabled": True, "num_prompts": len(plan.batches), "max_spend": plan.max_spend,
            "spent": update["spent"], "num_resolved": sum(1 for e in per_item if e["resolved"]),
            "num_missing": sum(1 for e in per_item if e.get("missing")),
        })
        return {"probe": per_item, **update}

    async def allocate_node(state: DRQAState) -> dict[str, Any]:
        cfg = config_of(state)
        policy = policy_for(cfg.method)
        probe_info = state["probe"]
        budget_left = (cfg.total_budget or 0) - state.get("spent", 0)
        quotas = solve_quotas(policy, [p["difficulty"] for p in probe_info],
                              [bool(p["resolved"]) for p in probe_info], budget_left, cfg.quota)
        await ctx.record_step("allocate", {"method": cfg.method, "budget_left": budget_left,
                                           "allocated": sum(quotas), "num_funded": sum(1 for q in quotas if q > 0)})
        return {"quotas": quotas}

    async def solve(state: DRQAState) -> dict[str, Any]:
        """Solve every funded question; with drqa's 'easiest_first' strategy, in waves: what a
        wave did not spend funds the next easiest questions, until a wave funds none."""
        cfg = config_of(state)
        policy = policy_for(cfg.method)
        spec = get_spec(state["dataset"])
        items = items_of(state)
        quotas = list(state["quotas"])
        base = SamplingOptions(temperature=cfg.temperature)
        stated = policy.weighting != "none" and cfg.quota.state_budget
        ceiling = cfg.quota.allocation.ceiling_tokens

        def states(quota: int) -> bool:
            # A whole quota (the ceiling) does not bind: saying it only changes the prompt. On the
            # H200 (bench/NOTEBOOK.md, DRQA) stating whole quotas cost drqa 1-2 points on GSM8K.
            return stated and quota < ceiling

        attempts: list[dict[str, Any] | None] = [None] * len(items)
        style = cfg.quota.solve_style if policy.weighting != "none" else "plain"
        waves = policy.weighting == "difficulty" and cfg.quota.strategy == "easiest_first"
        update: dict[str, Any] = {"spent": state.get("spent", 0),
                                  "spent_by_purpose": dict(state.get("spent_by_purpose", {}))}
        wave_quotas, wave = quotas, 0
        while True:
            funded = [i for i, q in enumerate(wave_quotas) if q > 0]
            reserves = [answer_reserve(q, cfg.quota) for q in wave_quotas]
            # With forcing on, the stated budget is exactly what the solve call may spend.
            stated_reserve = [r if cfg.quota.force_answer else cfg.quota.answer_reserve_tokens for r in reserves]
            calls = [
                (lambda i=i, q=wave_quotas[i], r=reserves[i], sr=stated_reserve[i]: chat(
                    solve_messages(items[i].question, spec.answer_instruction,
                                   quota_tokens=q if states(q) else None, answer_reserve_tokens=sr, style=style),
                    quota_sampling(q - r, base), "solve"))
                for i in funded
            ]
            responses = await gather_limited(cfg.max_concurrency, calls)
            done = []
            for k, resp in zip(funded, responses, strict=True):
                quotas[k] = wave_quotas[k]
                attempts[k] = _attempt(resp, wave_quotas[k], "solve", reserve=reserves[k],
                                       stated_quota=wave_quotas[k] if states(wave_quotas[k]) else None,
                                       stated_reserve=stated_reserve[k], wave=wave)
                done.append(attempts[k])
            update = _add_spend(cast(DRQAState, {**state, **update}), "solve", sum(_tokens(r) for r in responses))
            await ctx.record_step("solve", {"wave": wave, "num_calls": len(calls), "spent": update["spent"],
                                            "num_truncated": sum(1 for a in done if a and a["truncated"])})
            if not waves or not funded:
                break
            left = (cfg.total_budget or 0) - update["spent"] - _held_for_answers(attempts)
            probe_info = state["probe"]
            wave_quotas = solve_quotas(policy, [p["difficulty"] for p in probe_info],
                                       [bool(p["resolved"]) for p in probe_info], left, cfg.quota,
                                       funded=[a is not None for a in attempts])
            wave += 1
        return {"attempts": attempts, "quotas": quotas, **update}

    async def reallocate_node(state: DRQAState) -> dict[str, Any]:
        cfg = config_of(state)
        policy = policy_for(cfg.method)
        n = len(state["items"])
        if not policy.reallocate:
            return {"extras": [0] * n, "retries": [None] * n}
        spec = get_spec(state["dataset"])
        items = items_of(state)
        held = _held_for_answers(state["attempts"])
        pool = max((cfg.total_budget or 0) - state.get("spent", 0) - held, 0)
        candidates = []
        for p, a in zip(state["probe"], state["attempts"], strict=True):
            unresolved = not p["resolved"] and (a is None or a["answer"] is None)
            doubtful = a is not None and a["answer"] is not None and (
                (p.get("answer") is not None and not answers_match(p["answer"], a["answer"]))
                or (p.get("confidence") is not None and p["confidence"] < cfg.quota.low_confidence_threshold)
            )
            candidates.append(RetryCandidate(unresolved, doubtful, float(p["difficulty"])))
        extras = reallocate(pool, candidates, cfg.quota.reallocation)
        base = SamplingOptions(temperature=cfg.temperature)
        reserve = cfg.quota.answer_reserve_tokens
        thunks: list[Callable[[], Awaitable[LLMResponse]]] = []
        kinds: list[tuple[int, str]] = []
        for i, extra in enumerate(extras):
            if extra <= 0:
                continue
            a = state["attempts"][i]
            if candidates[i].unresolved and a is not None and a["truncated"]:
                msgs = continuation_messages(items[i].question, spec.answer_instruction, a["text"],
                                             extra_tokens=extra, answer_reserve_tokens=reserve)
                kinds.append((i, "continuation"))
                thunks.append(lambda m=msgs, e=extra: chat(m, quota_sampling(e, base), "continuation"))
            else:
                kind = "solve" if candidates[i].unresolved else "retry"
                temp = cfg.temperature if kind == "solve" else cfg.retry_temperature
                msgs = solve_messages(items[i].question, spec.answer_instruction, quota_tokens=extra,
                                      answer_reserve_tokens=reserve, style=cfg.quota.solve_style)
                kinds.append((i, kind))
                thunks.append(lambda m=msgs, e=extra, t=temp: chat(
                    m, quota_sampling(e, SamplingOptions(temperature=t)), "retry"))
        responses = await gather_limited(cfg.max_concurrency, thunks)
        retries: list[dict[str, Any] | None] = [None] * n
        for (i, kind), resp in zip(kinds, responses, strict=True):
            retries[i] = _attempt(resp, extras[i], kind)
        update = _add_spend(state, "reallocate", sum(_tokens(r) for r in responses))
        await ctx.record_step("reallocate", {"pool": pool, "held_for_answers": held, "allocated": sum(extras),
                                             "num_calls": len(thunks), "spent": update["spent"]})
        return {"extras": extras, "retries": retries, **update}

    async def answer(state: DRQAState) -> dict[str, Any]:
        """Force a final answer out of every working that was cut off (or ended without one)."""
        cfg = config_of(state)
        n = len(state["items"])
        if not cfg.quota.force_answer:
            await ctx.record_step("answer", {"enabled": False})
            return {"forced": [None] * n}
        spec = get_spec(state["dataset"])
        items = items_of(state)
        # Safety net on top of the per-item arithmetic: never past the run's total.
        left = None if cfg.total_budget is None else max(cfg.total_budget - state.get("spent", 0), 0)
        base = SamplingOptions(temperature=cfg.temperature)
        thunks: list[Callable[[], Awaitable[LLMResponse]]] = []
        order: list[tuple[int, int]] = []
        for i in range(n):
            a, r = state["attempts"][i], state["retries"][i]
            working, _, needs = _chain(a, r)
            if not needs or a is None:
                continue
            used = a["tokens"] + (r["tokens"] if r else 0)
            allowance = min(a["reserve"], a["quota"] + state["extras"][i] - used)
            if left is not None:
                allowance = min(allowance, left)
            if allowance <= 0:
                continue
            if left is not None:
                left -= allowance
            # The plain solve prompt, without the budget sentence: a 0.5B model shown a number
            # right before "give the answer" copies it as the answer (bench/NOTEBOOK.md, DRQA).
            prompt = solve_messages(items[i].question, spec.answer_instruction, quota_tokens=None,
                                    answer_reserve_tokens=0)
            msgs = force_answer_messages(prompt, working, spec.answer_instruction)
            order.append((i, allowance))
            thunks.append(lambda m=msgs, k=allowance: chat(m, quota_sampling(k, base), "answer"))
        responses = await gather_limited(cfg.max_concurrency, thunks)
        forced: list[dict[str, Any] | None] = [None] * n
        for (i, allowance), resp in zip(order, responses, strict=True):
            forced[i] = _attempt(resp, allowance, "forced")
        update = _add_spend(state, "answer", sum(_tokens(r) for r in responses))
        await ctx.record_step("answer", {"enabled": True, "num_calls": len(thunks), "spent": update["spent"],
                                         "num_answered": sum(1 for f in forced if f and f["answer"] is not None)})
        return {"forced": forced, **update}

    async def final(state: DRQAState) -> dict[str, Any]:
        cfg = config_of(state)
        spec = get_spec(state["dataset"])
        out = []
        forced_all = state.get("forced") or [None] * len(state["items"])
        for idx, it in enumerate(items_of(state)):
            a, r, f = state["attempts"][idx], state["retries"][idx], forced_all[idx]
            answer, source = _final_answer(state["probe"][idx], a, r, f)
            working, _, _ = _chain(a, r)
            out.append({
                "id": it.id, "answer": answer, "gold": it.gold, "source": source,
                "correct": spec.is_correct(answer, it.gold),
                "quota": state["quotas"][idx], "extra": state["extras"][idx],
                "solve_tokens": sum(x["tokens"] for x in (a, r, f) if x),
                "finish_reason": a["finish_reason"] if a else None,
                "wave": a.get("wave") if a else None,
                "retry_kind": r["kind"] if r else None,
                "forced": f is not None,
                "forced_finish_reason": f["finish_reason"] if f else None,
                "text": _clip(working),
                "forced_text": _clip(f["text"], 200) if f else None,
                "probe_answer": state["probe"][idx].get("answer"),
                "difficulty": state["probe"][idx]["difficulty"],
            })
        await ctx.record_step("final", {"num_correct": sum(1 for o in out if o["correct"]),
                                        "num_items": len(out), "spent": state.get("spent", 0)})
        return {"final": out, "method": cfg.method, "total_budget": cfg.total_budget}

    return {"probe": probe, "allocate": allocate_node, "solve": solve, "reallocate": reallocate_node,
            "answer": answer, "final": final}


def build(ctx: RunContext) -> StateGraph:
    """The DRQA LangGraph graph: the stages of :func:`make_nodes` in :data:`NODE_ORDER`."""
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(DRQAState)
    nodes = make_nodes(ctx)
    previous = START
    for name in NODE_ORDER:
        graph.add_node(name, nodes[name])  # type: ignore[call-overload]
        graph.add_edge(previous, name)
        previous = name
    graph.add_edge(previous, END)
    return graph


async def run_nodes(ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
    """Run the stages in order without LangGraph (no checkpoints): for benchmark machines that
    have the LLM client but not the runtime's dependencies."""
    nodes = make_nodes(ctx)
    current: dict[str, Any] = dict(state)
    for name in NODE_ORDER:
        current.update(await nodes[name](current))  # type: ignore[arg-type]
    return current


def _final_answer(
    probe: dict[str, Any], attempt: dict[str, Any] | None, retry: dict[str, Any] | None,
    forced: dict[str, Any] | None = None,
) -> tuple[str | None, str]:
    """Pick the answer: continuation > vote(solve, retry, probe) > solve > forced > probe > quick."""
    if retry is not None and retry["answer"] is not None and retry["kind"] in ("continuation", "solve"):
        return retry["answer"], retry["kind"]
    if attempt is not None and attempt["answer"] is not None:
        if retry is not None and retry["answer"] is not None:
            return _vote(attempt["answer"], retry["answer"], probe.get("answer")), "vote"
        return attempt["answer"], "solve"
    if forced is not None and forced["answer"] is not None:
        return forced["answer"], "forced"
    if probe.get("answer") is not None:
        return probe["answer"], "probe" if probe.get("resolved") else "probe-fallback"
    if probe.get("quick") is not None:
        return probe["quick"], "quick-fallback"
    return None, "none"


def _vote(first: str, second: str, third: str | None) -> str:
    """Majority over normalised answers; a tie keeps ``first`` (the full-quota solve)."""
    votes = Counter(normalize_answer(a) for a in (first, second, third) if a is not None)
    best, count = votes.most_common(1)[0]
    if count > 1 and best != normalize_answer(first):
        return second if normalize_answer(second) == best else (third or first)
    return first
