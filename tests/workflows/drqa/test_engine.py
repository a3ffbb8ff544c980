"""The DRQA decision core: each stage's actions and what it makes of the replies, without a model."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from orchestrator.testing import FakeRunContext
from orchestrator.types import LLMResponse, Usage
from workflows.drqa.config import DRQARunConfig, run_config_from
from workflows.drqa.engine import NODE_ORDER, Advance, Ask, Call, DRQAState, Observation, decide
from workflows.drqa.graph import initial_state, make_nodes
from workflows.drqa.prompts import FORCE_ANSWER_CUE
from workflows.drqa.quota.difficulty import size_ranks
from workflows.drqa.records import final_answer
from workflows.drqa.sim import make_rows, sim_client

STEPS = [1, 2, 12, 14]
ANSWERS = [str(11 * i) for i in range(len(STEPS))]


def _config(method: str = "drqa", budget: int | None = 1000, **options: Any) -> DRQARunConfig:
    return run_config_from({"method": method, "total_budget": budget, "batch_size": 2, "floor_tokens": 16,
                            "ceiling_tokens": 300, "difficulty_signal": "mixed", **options})


def _state(**fields: Any) -> DRQAState:
    return cast(DRQAState, {**initial_state({"rows": make_rows(STEPS), "dataset": "gsm8k"}), **fields})


def _reply(text: str, finish_reason: str = "stop", tokens: int | None = None) -> LLMResponse:
    return LLMResponse(text, Usage(output_tokens=len(text.split()) if tokens is None else tokens), "m", finish_reason)


def _observe(action: Any, reply: Any) -> Observation:
    """The observation of ``action``'s calls, each answered by ``reply(call)``."""
    assert isinstance(action, Ask)
    return Observation(action.calls, tuple(reply(c) for c in action.calls))


def _merge(state: DRQAState, action: Any) -> DRQAState:
    assert isinstance(action, Advance)
    return cast(DRQAState, {**state, **action.update})


def _probe(difficulty: float, resolved: bool = False, answer: str | None = None,
           confidence: float | None = None) -> dict[str, Any]:
    return {"difficulty": difficulty, "resolved": resolved, "answer": answer, "confidence": confidence,
            "quick": None, "size_rank": None}


def _attempt(answer: str | None, *, tokens: int, quota: int, reserve: int = 24, truncated: bool = False,
             kind: str = "solve", text: str = "step step") -> dict[str, Any]:
    return {"kind": kind, "text": text, "answer": answer, "truncated": truncated,
            "finish_reason": "length" if truncated else "stop", "tokens": tokens, "quota": quota, "reserve": reserve,
            "wave": 0}


# -- probe ----------------------------------------------------------------------------------------
def test_uniform_skips_the_probe_with_equal_weights() -> None:
    action = decide("probe", _state(), _config("uniform"))
    assert isinstance(action, Advance) and action.done
    assert action.record == {"enabled": False, "method": "uniform"}
    assert [p["difficulty"] for p in action.update["probe"]] == [1.0] * len(STEPS)
    assert "spent" not in action.update


def test_drqa_without_room_for_a_probe_keeps_the_question_size_prior() -> None:
    action = decide("probe", _state(), _config(budget=100))
    assert isinstance(action, Advance)
    assert action.record == {"enabled": False, "method": "drqa", "skipped_for": "budget"}
    ranks = [p["size_rank"] for p in action.update["probe"]]
    assert [p["difficulty"] for p in action.update["probe"]] == ranks and None not in ranks
    flat = decide("probe", _state(), _config(budget=100, weight_prior=0))
    assert isinstance(flat, Advance)
    assert [(p["difficulty"], p["size_rank"]) for p in flat.update["probe"]] == [(1.0, None)] * len(STEPS)


def test_probe_asks_batches_and_quick_answers_within_its_share() -> None:
    config = _config()
    action = decide("probe", _state(), config)
    assert isinstance(action, Ask)
    assert [(c.purpose, c.item) for c in action.calls] == [
        ("probe", 0), ("probe", 1), ("quick", 0), ("quick", 1), ("quick", 2), ("quick", 3)]
    assert sum(c.sampling.max_tokens for c in action.calls) <= 1000 * config.quota.max_probe_fraction
    assert "[Q2]" in action.calls[0].messages[-1].content


def test_probe_replies_become_difficulties_and_spend() -> None:
    state = _state()
    action = decide("probe", state, _config())

    def reply(call: Call) -> LLMResponse:
        if call.purpose == "quick":
            return _reply(f"Answer: {ANSWERS[call.item]}")
        first = 2 * call.item  # batches of two; the second question is long and unsure
        return _reply(f"[Q1]\nReasoning: w w\nAnswer: {ANSWERS[first]}\nConfidence: 95\n"
                      f"[Q2]\nReasoning: {'w ' * 90}\nAnswer: 7\nConfidence: 30")

    observation = _observe(action, reply)
    done = decide("probe", state, _config(), observation)
    assert isinstance(done, Advance) and done.done
    probe = done.update["probe"]
    assert [p["resolved"] for p in probe] == [True, False, True, False]
    assert probe[1]["difficulty"] > probe[0]["difficulty"] and probe[1]["agrees"] is False
    by = done.update["spent_by_purpose"]
    assert by == {"probe": observation.tokens("probe"), "quick": observation.tokens("quick")}
    assert done.update["spent"] == observation.tokens() > 0
    assert done.record is not None and done.record["num_resolved"] == 2 and done.record["num_prompts"] == 2


def test_probe_drops_quick_answers_first_when_the_share_is_small() -> None:
    # 30% of 400 is 120: 4 quick answers (64) would leave 14 a question, under the minimum 24.
    state = _state()
    action = decide("probe", state, _config(budget=400))
    assert isinstance(action, Ask) and {c.purpose for c in action.calls} == {"probe"}
    done = decide("probe", state, _config(budget=400), _observe(action, lambda c: _reply("nothing")))
    assert isinstance(done, Advance) and done.update["spent_by_purpose"]["quick"] == 0
    assert all(p["missing"] and p["difficulty"] > 0.5 for p in done.update["probe"])


# -- allocate and solve ---------------------------------------------------------------------------
def test_allocate_splits_what_the_probe_left_and_skips_resolved_questions() -> None:
    state = _state(probe=[_probe(0.2, resolved=True), _probe(0.3), _probe(0.8), _probe(0.9)], spent=400)
    action = decide("allocate", state, _config())
    assert isinstance(action, Advance) and action.done
    quotas = action.update["quotas"]
    assert quotas[0] == 0 and sum(quotas) <= 600
    assert quotas[1] == 300  # easiest first: whole quotas (the ceiling)
    assert action.record == {"method": "drqa", "budget_left": 600, "allocated": sum(quotas),
                             "num_funded": sum(1 for q in quotas if q > 0), "min_quota_tokens": 0}


def test_solve_keeps_a_reserve_and_states_only_binding_quotas() -> None:
    state = _state(probe=[_probe(0.2)] * 4, quotas=[300, 100, 0, 40])
    action = decide("solve", state, _config("uniform"))
    assert isinstance(action, Ask)
    assert [(c.item, c.quota, c.sampling.max_tokens) for c in action.calls] == [(0, 300, 276), (1, 100, 76),
                                                                               (3, 40, 20)]
    assert [c.details["stated_quota"] for c in action.calls] == [None, 100, 40]
    assert ["words at most" in c.messages[-1].content for c in action.calls] == [False, True, True]
    assert {c.details["reserve"] for c in action.calls} == {24, 20}


def test_solve_without_forcing_states_the_full_reserve_and_spends_it() -> None:
    state = _state(probe=[_probe(0.2)] * 4, quotas=[100, 100, 100, 100])
    action = decide("solve", state, _config("uniform", force_answer=False))
    assert isinstance(action, Ask)
    assert all(c.sampling.max_tokens == 100 and c.details["stated_reserve"] == 24 for c in action.calls)


def test_unlimited_solves_plainly_in_one_wave() -> None:
    state = _state(probe=[_probe(1.0)] * 4, quotas=[500] * 4)
    config = _config("unlimited", None, solve_style="brief")
    action = decide("solve", state, config)
    assert isinstance(action, Ask) and len(action.calls) == 4
    assert all(len(c.messages) == 2 and "words at most" not in c.messages[-1].content for c in action.calls)
    done = decide("solve", state, config, _observe(action, lambda c: _reply("#### 1")))
    assert isinstance(done, Advance) and done.done and done.update["num_waves"] == 1


def test_easiest_first_funds_further_waves_from_what_each_left() -> None:
    config = _config(budget=900)
    state = _state(probe=[_probe(0.1), _probe(0.2), _probe(0.8), _probe(0.9)], spent=0)
    state = _merge(state, decide("allocate", state, config))
    assert state["quotas"] == [300, 300, 300, 0]
    wave0 = decide("solve", state, config)
    # Each solve stops early (100 tokens): the next wave funds the hardest question with the rest.
    observed = decide("solve", state, config, _observe(wave0, lambda c: _reply("w " * 98 + "#### 1")))
    assert isinstance(observed, Advance) and not observed.done
    assert observed.record == {"wave": 0, "num_calls": 3, "spent": 300, "num_truncated": 0}
    state = _merge(state, observed)
    wave1 = decide("solve", state, config)
    assert isinstance(wave1, Ask) and [(c.item, c.details["wave"]) for c in wave1.calls] == [(3, 1)]
    assert wave1.calls[0].quota == 300 <= 900 - 300
    state = _merge(state, decide("solve", state, config, _observe(wave1, lambda c: _reply("#### 2"))))
    assert state["quotas"] == [300, 300, 300, 300] and state["spent_by_purpose"]["solve"] == 302
    # Nothing left to fund: an empty wave closes the stage.
    last = decide("solve", state, config)
    assert isinstance(last, Ask) and last.calls == ()
    closed = decide("solve", state, config, Observation((), ()))
    assert isinstance(closed, Advance) and closed.done and closed.record == {
        "wave": 2, "num_calls": 0, "spent": 302, "num_truncated": 0}


def test_a_wave_does_not_spend_the_reserves_held_for_forced_answers() -> None:
    config = _config(budget=600)
    attempts = [_attempt(None, tokens=276, quota=300, truncated=True), _attempt("1", tokens=10, quota=300), None, None]
    state = _state(probe=[_probe(0.1), _probe(0.2), _probe(0.8), _probe(0.9)], quotas=[300, 300, 0, 0],
                   num_waves=1, attempts=attempts, spent=286)
    wave = decide("solve", state, config)
    # 314 tokens are unspent, 24 of them held for the cut-off solve's forced answer.
    assert isinstance(wave, Ask) and [(c.item, c.quota, c.details["wave"]) for c in wave.calls] == [(2, 290, 1)]


# -- reallocate -----------------------------------------------------------------------------------
def test_reallocation_is_off_for_uniform() -> None:
    action = decide("reallocate", _state(), _config("uniform"))
    assert action == Advance({"extras": [0] * 4, "retries": [None] * 4})


def _solved_state() -> DRQAState:
    return _state(
        probe=[_probe(0.9), _probe(0.3, answer="5"), _probe(0.8), _probe(0.1, resolved=True, answer="33")],
        quotas=[100, 100, 100, 0], spent=276 + 40 + 60,
        attempts=[_attempt(None, tokens=76, quota=100, truncated=True),  # cut off: continued
                  _attempt("11", tokens=40, quota=100),  # disagrees with the probe: a second opinion
                  _attempt(None, tokens=60, quota=100),  # ended without an answer: solved afresh
                  None],
    )


def test_reallocation_continues_cut_solutions_and_re_asks_doubtful_ones() -> None:
    state, config = _solved_state(), _config(budget=1000, realloc_ceiling_tokens=100)
    action = decide("reallocate", state, config)
    assert isinstance(action, Ask)
    calls = {c.item: c for c in action.calls}
    assert (calls[0].purpose, calls[0].kind) == ("continuation", "continuation")
    assert calls[0].messages[2].role == "assistant" and calls[0].messages[2].content == "step step"
    assert (calls[1].purpose, calls[1].kind, calls[1].sampling.temperature) == ("retry", "retry", 0.7)
    assert (calls[2].purpose, calls[2].kind, calls[2].sampling.temperature) == ("retry", "solve", 0.0)
    assert 3 not in calls
    # The pool is what is left less the reserves of the two answerless solves.
    pool = 1000 - 376 - 48
    assert sum(c.quota for c in action.calls) <= pool
    done = decide("reallocate", state, config, _observe(action, lambda c: _reply("#### 11")))
    assert isinstance(done, Advance)
    assert [r and r["kind"] for r in done.update["retries"]] == ["continuation", "retry", "solve", None]
    assert done.update["extras"] == [calls[i].quota if i in calls else 0 for i in range(4)]
    assert done.update["spent_by_purpose"] == {"reallocate": 6}
    assert done.record == {"pool": pool, "held_for_answers": 48, "allocated": sum(done.update["extras"]),
                           "num_calls": 3, "spent": 382}


# -- answer and final -----------------------------------------------------------------------------
def test_forced_answers_are_off_with_force_answer() -> None:
    action = decide("answer", _state(), _config(force_answer=False))
    assert action == Advance({"forced": [None] * 4}, {"enabled": False})


def test_cut_workings_get_a_forced_answer_from_their_reserve() -> None:
    state = _state(attempts=[_attempt(None, tokens=76, quota=100, truncated=True), _attempt("11", tokens=40, quota=100),
                             _attempt(None, tokens=90, quota=100), None],
                   retries=[None] * 4, extras=[0] * 4, spent=206)
    config = _config(budget=1000)
    action = decide("answer", state, config)
    assert isinstance(action, Ask)
    assert [(c.item, c.purpose, c.quota, c.sampling.max_tokens) for c in action.calls] == [
        (0, "answer", 24, 24), (2, "answer", 10, 10)]  # 100 - 90 left of item 2's quota
    messages = action.calls[0].messages
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert "words at most" not in messages[1].content and FORCE_ANSWER_CUE in messages[3].content
    done = decide("answer", state, config, _observe(action, lambda c: _reply("#### 22")))
    assert isinstance(done, Advance)
    assert [f and (f["kind"], f["answer"]) for f in done.update["forced"]] == [
        ("forced", "22"), None, ("forced", "22"), None]
    assert done.record == {"enabled": True, "num_calls": 2, "spent": 210, "num_answered": 2}


def test_forced_answers_never_pass_the_run_total() -> None:
    state = _state(attempts=[_attempt(None, tokens=76, quota=100, truncated=True)] * 3 + [None],
                   retries=[None] * 4, extras=[0] * 4, spent=970)
    action = decide("answer", state, _config(budget=1000))
    assert isinstance(action, Ask) and [(c.item, c.quota) for c in action.calls] == [(0, 24), (1, 6)]


def test_a_continuation_that_answers_needs_no_forcing() -> None:
    state = _state(attempts=[_attempt(None, tokens=76, quota=100, truncated=True)] + [None] * 3,
                   retries=[_attempt("11", tokens=20, quota=50, kind="continuation"), None, None, None],
                   extras=[50, 0, 0, 0], spent=96)
    assert decide("answer", state, _config()) == Ask(())


def test_final_scores_each_item_and_says_where_its_answer_came_from() -> None:
    state = _state(
        probe=[_probe(0.9), _probe(0.3, answer="11"), _probe(0.1, resolved=True, answer="22"), _probe(0.8)],
        quotas=[100, 100, 0, 100], extras=[50, 0, 0, 0],
        attempts=[_attempt(None, tokens=100, quota=100, truncated=True), _attempt("11", tokens=40, quota=100),
                  None, _attempt(None, tokens=76, quota=100, truncated=True)],
        retries=[_attempt("0", tokens=20, quota=50, kind="continuation", text="done"), None, None, None],
        forced=[None, None, None, _attempt("33", tokens=3, quota=24, kind="forced")], spent=400)
    action = decide("final", state, _config())
    assert isinstance(action, Advance) and action.done
    final = action.update["final"]
    assert [(f["source"], f["answer"], f["correct"]) for f in final] == [
        ("continuation", "0", True), ("solve", "11", True), ("probe", "22", True), ("forced", "33", True)]
    assert final[0]["text"] == "step step done" and final[0]["solve_tokens"] == 120
    assert final[3]["forced"] and final[3]["solve_tokens"] == 79
    assert action.update["method"] == "drqa" and action.update["total_budget"] == 1000
    assert action.record == {"num_correct": 4, "num_items": 4, "spent": 400}


@pytest.mark.parametrize("attempt,retry,forced,probe,expected", [
    ("1", ("2", "solve"), None, {}, ("2", "solve")),
    ("1", ("2", "retry"), None, {"answer": "2"}, ("2", "vote")),
    ("1", ("2", "retry"), None, {"answer": "3"}, ("1", "vote")),  # a tie keeps the full-quota solve
    (None, ("2", "retry"), "4", {}, ("4", "forced")),
    (None, None, None, {"answer": "5", "resolved": False}, ("5", "probe-fallback")),
    (None, None, None, {"quick": "6"}, ("6", "quick-fallback")),
    (None, None, None, {}, (None, "none")),
])
def test_final_answer_order(attempt: str | None, retry: tuple[str, str] | None, forced: str | None,
                            probe: dict[str, Any], expected: tuple[str | None, str]) -> None:
    a = _attempt(attempt, tokens=1, quota=1)
    r = _attempt(retry[0], tokens=1, quota=1, kind=retry[1]) if retry else None
    f = _attempt(forced, tokens=1, quota=1, kind="forced") if forced else None
    assert final_answer(probe, a, r, f) == expected


def test_decide_refuses_an_unknown_stage() -> None:
    with pytest.raises(ValueError, match="unknown DRQA stage 'solv'"):
        decide("solv", _state(), _config())


def test_nodes_only_carry_out_the_decisions_through_ctx_chat() -> None:
    ctx = FakeRunContext(llm=sim_client(), config={"method": "drqa", "total_budget": 900, "batch_size": 4,
                                                  "floor_tokens": 16, "ceiling_tokens": 300,
                                                  "difficulty_signal": "mixed"})
    nodes = make_nodes(ctx)
    state: dict[str, Any] = dict(_state())
    for stage in NODE_ORDER:
        before = len(ctx.calls)
        update = asyncio.run(nodes[stage](cast(DRQAState, state)))
        if stage in ("allocate", "final"):
            assert len(ctx.calls) == before
        state.update(update)
    assert ctx.purposes()[:3] == ["probe", "quick", "quick"]
    assert state["spent"] == ctx.usage.output_tokens == sum(state["spent_by_purpose"].values()) <= 900
    assert {name for name, _ in ctx.steps} == set(NODE_ORDER)


def test_by_default_drqa_orders_by_question_size_and_runs_no_probe() -> None:
    # difficulty_signal="size" (the default) needs no model call: the probe stage asks nothing,
    # every question's difficulty is its size rank (recorded as its signal), and the whole budget
    # is left to the solve round; the same budget with the probe gives part of it to the probe.
    rows = make_rows(STEPS)
    state = _state()
    config = run_config_from({"method": "drqa", "total_budget": 1000, "batch_size": 2, "floor_tokens": 16,
                              "ceiling_tokens": 300})
    assert config.quota.difficulty.difficulty_signal == "size"
    action = decide("probe", state, config)
    assert isinstance(action, Advance) and action.record["skipped_for"] == "difficulty_signal=size"
    ranks = size_ranks([r["question"] for r in rows], config.quota.difficulty.numbers_weight)
    probe = action.update["probe"]
    assert [p["size_rank"] for p in probe] == ranks and [p["signals"] for p in probe] == [{"size": r} for r in ranks]
    assert [p["difficulty"] for p in probe] == [max(r, config.quota.difficulty.min_difficulty) for r in ranks]
    assert "spent" not in action.update
    # The smallest question is funded in the first wave, the largest last (easiest first).
    allocated = decide("allocate", {**state, **action.update}, config)
    assert isinstance(allocated, Advance) and allocated.record["budget_left"] == 1000
    quotas = allocated.update["quotas"]
    assert quotas[ranks.index(min(ranks))] > 0 and sum(quotas) <= 1000
    with_probe = decide("probe", _state(), _config())
    assert isinstance(with_probe, Ask) and {c.purpose for c in with_probe.calls} >= {"probe"}
