"""Difficulty signals the model gives, their AUC, selection on one part of validation and report
on the other, and the probe stage's option that picks the signal the allocation uses."""

from __future__ import annotations

import math
import random
from typing import Any, cast

import pytest

from orchestrator.types import LLMResponse, TokenLogprob, Usage
from workflows.drqa.config import run_config_from
from workflows.drqa.engine import Advance, Ask, Call, DRQAState, Observation, decide
from workflows.drqa.graph import initial_state
from workflows.drqa.quota.plan import QuotaConfig, plan_probe
from workflows.drqa.quota.signals import (
    agreement_difficulty,
    length_difficulty,
    logprob_difficulty,
    roc_auc,
    select_signal,
    split_indices,
)
from workflows.drqa.sim import make_rows


def test_agreement_difficulty() -> None:
    assert agreement_difficulty(["12", "12.0", "$12"]) == 0.0  # one answer, spelled three ways
    assert agreement_difficulty(["12", "13", "12", None]) == pytest.approx(0.5)
    assert agreement_difficulty([None, None]) == 1.0 and agreement_difficulty([]) == 1.0


def test_logprob_and_length_difficulty() -> None:
    assert logprob_difficulty([0.0, 0.0]) == 0.0
    assert logprob_difficulty([math.log(0.5)] * 3) == pytest.approx(0.5)
    assert logprob_difficulty([]) is None
    assert length_difficulty(60, 120) == 0.5 and length_difficulty(500, 120) == 1.0


def test_roc_auc_by_hand() -> None:
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [False, False, True, True]) == 1.0  # every wrong one ranks higher
    assert roc_auc([0.1, 0.2, 0.9, 0.8], [False, False, True, True]) == 0.0
    assert roc_auc([0.5, 0.5], [False, True]) == 0.5  # a tie counts half
    # Three wrong (0.9, 0.4, 0.3) against two right (0.6, 0.1): pairs won 1+1+1 + 0+1+1 = 5 of 6.
    assert roc_auc([0.9, 0.6, 0.4, 0.3, 0.1], [False, True, False, False, True]) == pytest.approx(4 / 6)
    assert roc_auc([0.1], [True]) is None
    with pytest.raises(ValueError):
        roc_auc([0.1], [True, False])


def test_split_indices_partitions() -> None:
    select, report = split_indices(10, 0.5, random.Random(0))
    assert len(select) == len(report) == 5 and sorted(select + report) == list(range(10))


def test_select_signal_picks_the_informative_one_and_reports_it_on_held_out_questions() -> None:
    rng = random.Random(1)
    correct = [rng.random() < 0.5 for _ in range(200)]
    informative = [(0.2 if ok else 0.8) + rng.uniform(-0.25, 0.25) for ok in correct]
    noise = [rng.random() for _ in correct]
    picked = select_signal({"noise": noise, "agreement": informative}, correct, repeats=5, seed=0)
    assert picked.chosen == ("agreement",) * 5 and picked.winner == "agreement"
    assert picked.mean_report_auc is not None and picked.mean_report_auc > 0.9
    assert picked.std_report_auc is not None and len(picked.report_auc) == 5
    noise_auc = picked.auc_by_signal["noise"]
    assert noise_auc is not None and abs(noise_auc - 0.5) < 0.15


STEPS = [1, 2, 12, 14]
ANSWERS = [str(11 * i) for i in range(len(STEPS))]


def _state() -> DRQAState:
    return cast(DRQAState, initial_state({"rows": make_rows(STEPS), "dataset": "gsm8k"}))


def _config(**options: Any):  # type: ignore[no-untyped-def]
    return run_config_from({"method": "drqa", "total_budget": 2000, "batch_size": 2, "floor_tokens": 16,
                            "ceiling_tokens": 300, "difficulty_signal": "mixed", **options})


def _reply(call: Call) -> LLMResponse:
    """Probe answers are right; quick samples agree on questions 0 and 1 only; the greedy quick
    answer is sure (p=0.9 per token) on question 0 only."""
    if call.purpose == "probe":
        first = 2 * call.item
        text = "".join(f"[Q{k + 1}]\nReasoning: w w\nAnswer: {ANSWERS[first + k]}\nConfidence: 90\n" for k in range(2))
        return LLMResponse(text, Usage(output_tokens=20), "m")
    sample = call.details.get("sample", 0)
    answer = ANSWERS[call.item] if call.item < 2 or sample == 0 else str(1000 + sample)
    p = 0.9 if call.item == 0 else 0.4
    tokens = (TokenLogprob("Answer", math.log(p)), TokenLogprob(": 1", math.log(p))) if call.sampling.logprobs else None
    return LLMResponse(f"Answer: {answer}", Usage(output_tokens=3), "m", logprobs=tokens)


def test_quick_samples_are_asked_budgeted_and_seeded() -> None:
    config = _config(num_quick_samples=3, quick_sample_temperature=0.9)
    action = decide("probe", _state(), config)
    assert isinstance(action, Ask)
    quick = [c for c in action.calls if c.purpose == "quick"]
    assert len(quick) == 3 * len(STEPS)
    assert [(c.sampling.temperature, c.sampling.seed) for c in quick[:3]] == [(0.0, None), (0.9, 1), (0.9, 2)]
    plan = plan_probe(len(STEPS), 2000, config.quota)
    assert sum(c.sampling.max_tokens for c in action.calls) <= plan.max_spend <= 2000 * config.quota.max_probe_fraction
    three, one = plan_probe(4, 2000, QuotaConfig(num_quick_samples=3)), plan_probe(4, 2000, QuotaConfig())
    assert three.max_spend > one.max_spend and three.num_quick_samples == 3


@pytest.mark.parametrize(("signal", "expected_order"), [
    ("agreement", [0, 1, 2, 3]),  # questions 2 and 3: the samples disagree
    ("logprob", [0, 1, 2, 3]),  # question 0: sure; the rest 0.4 per token
])
def test_the_signal_option_sets_the_difficulty_and_every_signal_is_recorded(signal, expected_order) -> None:
    config = _config(num_quick_samples=3, difficulty_signal=signal)
    state = _state()
    action = decide("probe", state, config)
    assert isinstance(action, Ask)
    # The greedy quick answer asks for logprobs whatever the signal (record_logprobs), the samples never.
    assert all(c.sampling.logprobs == (c.details.get("sample", 0) == 0) for c in action.calls if c.purpose == "quick")
    done = decide("probe", state, config, Observation(action.calls, tuple(_reply(c) for c in action.calls)))
    assert isinstance(done, Advance)
    probe = done.update["probe"]
    assert set(probe[0]["signals"]) == {"mixed", "length", "agreement", "logprob", "size"}
    values = [p["difficulty"] for p in probe]
    assert values == [max(p["signals"][signal], config.quota.difficulty.min_difficulty) for p in probe]
    if signal == "agreement":
        assert values[0] == values[1] < values[2] == values[3]
    else:
        assert values[0] < values[1] == values[2] == values[3]
    assert sorted(range(4), key=lambda i: (values[i], i)) == expected_order


def test_unknown_signal_is_refused() -> None:
    from orchestrator.errors import BadInputError

    with pytest.raises((ValueError, BadInputError)):
        _config(difficulty_signal="vibes")


def test_signal_aucs_of_a_run() -> None:
    from workflows.drqa.quota.signals import signal_aucs

    probe = [{"signals": {"agreement": 0.0, "size": 0.9}}, {"signals": {"agreement": 1.0, "size": 0.1}}]
    assert signal_aucs(probe, [True, False]) == {"agreement": 1.0, "size": 0.0}
    assert signal_aucs([{"difficulty": 1.0}], [True]) == {} and signal_aucs([], []) == {}


def test_a_run_through_the_runtime_uses_the_chosen_signal_and_reports_every_signals_auc(tmp_path) -> None:
    import asyncio

    from orchestrator.runtime import Runtime
    from orchestrator.settings import Settings
    from orchestrator.tools.registry import ToolRegistry
    from workflows.drqa.sim import sim_client

    sim = sim_client()

    async def go() -> dict[str, Any]:
        rt = Runtime(Settings(db_url=f"sqlite:///{tmp_path / 'drqa.db'}", home=tmp_path),
                     clients={"sim": sim}, tools=ToolRegistry())
        try:
            res = await rt.run("drqa", {"rows": make_rows([1, 1, 2, 12, 1, 14, 2, 10]), "dataset": "gsm8k"},
                               backend="sim", options={"total_budget": 3000, "batch_size": 4, "floor_tokens": 16,
                                                       "ceiling_tokens": 600, "difficulty_signal": "agreement",
                                                       "num_quick_samples": 3})
        finally:
            await rt.aclose()
        assert res.status == "succeeded", res.error
        assert res.result is not None
        return res.result

    result = asyncio.run(go())
    assert set(result["difficulty_auc"]) == {"mixed", "length", "agreement", "logprob", "size"}
    quick = [r for r in sim.requests if len(r.messages) == 1 and "final answer only" in r.messages[0].content]
    assert len(quick) == 3 * 8 and {r.sampling.seed for r in quick} == {None, 1, 2}


def test_the_bench_entry_chooses_a_signal_on_one_half_and_reports_the_other() -> None:
    from bench.drqa.run import _signal_selection

    rng = random.Random(3)
    correct = [rng.random() < 0.5 for _ in range(40)]
    rows = [{"agreement": 0.1 if ok else 0.9, "size": rng.random()} for ok in correct]
    out = {"difficulty_signals": rows, "items": [{"correct": ok} for ok in correct]}
    picked = _signal_selection(out)
    assert picked is not None and picked["winner"] == "agreement" and picked["report_auc_mean"] == 1.0
    assert _signal_selection({"difficulty_signals": [None] * 40, "items": out["items"]}) is None
