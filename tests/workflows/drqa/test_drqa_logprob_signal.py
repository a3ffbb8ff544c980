"""DRQA's ``logprob`` difficulty signal reads the batch-mode probe's own answer tokens, so it has a
value even when the budget leaves no room for quick answers (run 3be667f: no quick call ran and
every question's logprob signal was 0.5)."""

from __future__ import annotations

import math
from typing import Any, cast

import pytest

from orchestrator.types import LLMResponse, TokenLogprob, Usage
from workflows.drqa.config import run_config_from
from workflows.drqa.engine import Advance, Ask, Call, DRQAState, Observation, decide
from workflows.drqa.graph import initial_state
from workflows.drqa.quota.batch import parse_probe_response
from workflows.drqa.quota.difficulty import difficulty_signals
from workflows.drqa.quota.plan import plan_probe
from workflows.drqa.quota.signals import span_logprobs
from workflows.drqa.sim import make_rows


def test_the_probe_parser_says_where_each_answer_lies() -> None:
    text = ("[Q1]\nReasoning: 2+2, and Answer: 5 is wrong\n**Answer:**  4 apples \nConfidence: 90\n"
            "[Q2] Reasoning: x\nAnswer:\n[Q3]\nReasoning: y\nFinal answer: 12\n")
    items = parse_probe_response(text, 4)
    spans = [it.answer_span for it in items]
    assert spans[1] is None and spans[3] is None  # no answer; no block
    assert [text[s[0]:s[1]] for s in (spans[0], spans[2]) if s is not None] == ["4 apples", "12"]
    assert [it.answer for it in items] == ["4 apples", None, "12", None]
    # The span is not part of equality: parsed items compare as before.
    assert items[0] == type(items[0])(1, "4 apples", "2+2, and Answer: 5 is wrong", items[0].reasoning_tokens, 0.9)


def test_span_logprobs_picks_the_tokens_over_the_span() -> None:
    tokens = [("Ans", -1.0), ("wer", -2.0), (": ", -3.0), ("4", -4.0), ("2", -5.0), ("\n", -6.0)]
    assert span_logprobs(tokens, (8, 10)) == [-4.0, -5.0]
    assert span_logprobs(tokens, (9, 10)) == [-5.0]
    assert span_logprobs(tokens, (7, 9)) == [-3.0, -4.0]  # a token that straddles the start counts
    assert span_logprobs(tokens, (4, 4)) == [] and span_logprobs(tokens, (50, 60)) == []


def test_the_signal_value_without_logprobs_without_an_answer_and_with_one() -> None:
    item = parse_probe_response("[Q1]\nAnswer: 7", 1)[0]
    config = run_config_from({"method": "drqa", "total_budget": 100}).quota.difficulty

    def lp(logprobs: list[float] | None) -> float:
        return difficulty_signals(item, [], logprobs, None, config, mixed=0.3)["logprob"]

    assert lp(None) == 0.5  # nothing asked or returned: neutral
    assert lp([]) == 1.0  # returned, but no answer to read: hard
    assert lp([math.log(0.5)] * 2) == pytest.approx(0.5)
    assert lp([0.0]) == 0.0


STEPS = [1, 2, 12, 14]
SURE = {0: 0.99, 1: 0.8, 2: 0.3}
"""Per question, the probe's probability of each answer token; question 3 gets no answer."""


def _state() -> DRQAState:
    return cast(DRQAState, initial_state({"rows": make_rows(STEPS), "dataset": "gsm8k"}))


def _config(**options: Any):  # type: ignore[no-untyped-def]
    # quick_max_tokens 200 cannot fit beside the probe in 30% of 2,000: the plan drops the quick
    # answers, as the bench's budgets did in run 3be667f.
    return run_config_from({"method": "drqa", "total_budget": 2000, "batch_size": 2, "floor_tokens": 16,
                            "ceiling_tokens": 300, "quick_max_tokens": 200, "difficulty_signal": "mixed", **options})


def _probe_reply(call: Call, with_logprobs: bool) -> LLMResponse:
    tokens: list[TokenLogprob] = []
    for k in range(2):
        q = 2 * call.item + k
        tokens.append(TokenLogprob(f"[Q{k + 1}]\nReasoning: w w\n", -0.01))
        if q in SURE:
            tokens += [TokenLogprob("Answer:", -0.001), TokenLogprob(" ", -0.001)]
            tokens += [TokenLogprob(d, math.log(SURE[q])) for d in str(11 * q + 10)]
            tokens.append(TokenLogprob("\nConfidence: 90\n", -0.2))
    text = "".join(t.token for t in tokens)
    return LLMResponse(text, Usage(output_tokens=len(tokens)), "m",
                       logprobs=tuple(tokens) if with_logprobs and call.sampling.logprobs else None)


@pytest.mark.parametrize("returned", [True, False])
def test_the_logprob_signal_reads_the_probes_answer_tokens_without_quick_answers(returned: bool) -> None:
    config = _config(difficulty_signal="logprob")
    assert plan_probe(len(STEPS), 2000, config.quota).quick_max_tokens == 0
    state = _state()
    action = decide("probe", state, config)
    assert isinstance(action, Ask)
    assert {c.purpose for c in action.calls} == {"probe"}
    assert all(c.sampling.logprobs for c in action.calls)
    replies = tuple(_probe_reply(c, returned) for c in action.calls)
    done = decide("probe", state, config, Observation(action.calls, replies))
    assert isinstance(done, Advance) and done.record is not None
    signals = [p["signals"]["logprob"] for p in done.update["probe"]]
    values = [p["difficulty"] for p in done.update["probe"]]
    if not returned:  # a server that sends no logprobs: no signal, and the record says so
        assert signals == [0.5] * 4 and done.record["num_logprob_signals"] == 0
        return
    assert signals == pytest.approx([1 - SURE[0], 1 - SURE[1], 1 - SURE[2], 1.0])
    assert values == [max(s, config.quota.difficulty.min_difficulty) for s in signals]
    assert done.record["num_logprob_signals"] == 3


def test_every_signal_records_the_logprob_signal_unless_told_not_to() -> None:
    for signal in ("mixed", "length", "agreement"):  # "size" runs no probe (test_engine)
        state = _state()
        action = decide("probe", state, _config(difficulty_signal=signal))
        assert isinstance(action, Ask) and all(c.sampling.logprobs for c in action.calls)
        replies = tuple(_probe_reply(c, True) for c in action.calls)
        done = decide("probe", state, _config(difficulty_signal=signal), Observation(action.calls, replies))
        assert isinstance(done, Advance)
        assert [p["signals"]["logprob"] for p in done.update["probe"]] == pytest.approx(
            [1 - SURE[0], 1 - SURE[1], 1 - SURE[2], 1.0])
        off = decide("probe", _state(), _config(difficulty_signal=signal, record_logprobs=False))
        assert isinstance(off, Ask) and not any(c.sampling.logprobs for c in off.calls)
    chosen = decide("probe", _state(), _config(difficulty_signal="logprob", record_logprobs=False))
    assert isinstance(chosen, Ask) and all(c.sampling.logprobs for c in chosen.calls)
