from __future__ import annotations

import asyncio
import itertools
import math
import re
from functools import partial

from orchestrator.testing import ScriptedClient, ScriptedConfig
from orchestrator.types import LLMRequest
from workflows.batchprompt.engine import BatchPromptConfig, run_batchprompt
from workflows.batchprompt.scripted import scripted_labeler
from workflows.batchprompt.tasks import Item, TaskSpec
from workflows.batchprompt.voting import VotingConfig


def _run(task, items, config, client, chat_of):  # type: ignore[no-untyped-def]
    return asyncio.run(run_batchprompt(task, items, config, chat_of(client), client.count_tokens))


def _asked(request: LLMRequest) -> list[str]:
    """Premise numbers of the items a request asked about, in prompt order."""
    return re.findall(r"Premise number (\d+) ", request.messages[-1].content)


def test_single_prompt_is_one_call_per_item(rte: TaskSpec, rte_items: list[Item], chat_of) -> None:  # type: ignore[no-untyped-def]
    client = scripted_labeler(rte, rte_items)
    result = _run(rte, rte_items, BatchPromptConfig(batch_size=1), client, chat_of)
    assert result.accuracy == 1.0 and result.stats.num_calls == 24 and result.stats.parse_failures == 0
    assert all(len(_asked(r)) == 1 for r in client.requests)
    assert result.stats.input_tokens == sum(
        sum(client.count_tokens(m.content) for m in r.messages) for r in client.requests)


def test_bpe_rounds_permute_each_batch(rte: TaskSpec, rte_items: list[Item], chat_of) -> None:  # type: ignore[no-untyped-def]
    client = scripted_labeler(rte, rte_items)
    result = _run(rte, rte_items, BatchPromptConfig(batch_size=8, rounds=3, max_concurrency=1), client, chat_of)
    assert result.stats.num_calls == 3 * 3 and result.rounds_run == 3
    rounds = [client.requests[i : i + 3] for i in (0, 3, 6)]
    first = [_asked(r) for r in rounds[0]]
    assert first == [[str(i) for i in range(b * 8, b * 8 + 8)] for b in range(3)]  # original order
    for later in rounds[1:]:
        orders = [_asked(r) for r in later]
        assert [sorted(o) for o in orders] == [sorted(o) for o in first]  # same batches...
        assert all(o != f for o, f in zip(orders, first, strict=True))  # ...in a new order
    assert [_asked(r) for r in rounds[1]] != [_asked(r) for r in rounds[2]]
    assert all(len(v) == 3 for v in result.votes.values())


def test_voting_fixes_position_dependent_errors(rte: TaskSpec, rte_items: list[Item], chat_of) -> None:  # type: ignore[no-untyped-def]
    def acc(rounds: int) -> float:
        client = scripted_labeler(rte, rte_items, error_rate=0.3)
        return _run(rte, rte_items, BatchPromptConfig(batch_size=8, rounds=rounds), client, chat_of).accuracy or 0.0

    assert acc(1) < 0.9 and acc(5) > acc(1)


def test_missing_answers_are_reasked_smaller_then_singly(rte: TaskSpec, rte_items: list[Item], chat_of) -> None:  # type: ignore[no-untyped-def]
    # The model drops every answer past position 3: a batch of 16 loses 13, re-asked as 8 + 5
    # (5 + 2 lost again), then as 4 + 3 (1 lost again), and the last one singly: 6 calls where
    # "half size, then singly" would need 10; every item ends up answered.
    client = scripted_labeler(rte, rte_items[:16], max_answers=3)
    result = _run(rte, rte_items[:16], BatchPromptConfig(batch_size=16), client, chat_of)
    sizes = [len(_asked(r)) for r in client.requests]
    assert sizes == [16, 8, 5, 4, 3, 1]
    s = result.stats
    assert (s.parse_failures, s.num_missing, s.items_asked) == (13, 13, 16)
    assert (s.reask_calls, s.reasked_items, s.num_calls) == (5, 21, 6)
    assert s.unanswered_votes == 0 and result.unanswered == [] and result.accuracy == 1.0
    assert s.reask_input_tokens < s.input_tokens


def test_no_reask_leaves_empty_votes_and_fallback_labels(rte: TaskSpec, rte_items: list[Item], chat_of) -> None:  # type: ignore[no-untyped-def]
    client = scripted_labeler(rte, rte_items[:8], max_answers=0)
    result = _run(rte, rte_items[:8], BatchPromptConfig(batch_size=8, reask=False), client, chat_of)
    assert result.stats.num_calls == 1 and result.stats.unanswered_votes == 8
    assert len(result.unanswered) == 8 and set(result.labels.values()) == {rte.fallback_label}


def test_hopeless_model_costs_are_counted_and_every_item_answered(
    rte: TaskSpec, rte_items: list[Item], chat_of
) -> None:  # type: ignore[no-untyped-def]
    client = ScriptedClient(ScriptedConfig(responses=lambda _messages: "I am not sure what you mean."))
    result = _run(rte, rte_items[:6], BatchPromptConfig(batch_size=6), client, chat_of)
    assert len(client.requests) == 1 + 2 + 6  # batch, halves (3+3), singles
    prompts = sum(client.count_tokens("\n".join(m.content for m in r.messages)) for r in client.requests)
    assert result.stats.num_calls == 9 and result.stats.input_tokens == prompts and result.stats.output_tokens == 9 * 8
    assert result.stats.reask_calls == 8 and len(result.labels) == 6 and len(result.unanswered) == 6


def test_seas_drops_confident_items_and_never_refills(rte: TaskSpec, rte_items: list[Item], chat_of) -> None:  # type: ignore[no-untyped-def]
    client = scripted_labeler(rte, rte_items, unsure_rate=0.4)
    config = BatchPromptConfig(batch_size=8, rounds=5, seas=True, max_concurrency=1)
    result = _run(rte, rte_items, config, client, chat_of)
    full = _run(
        rte,
        rte_items,
        BatchPromptConfig(batch_size=8, rounds=5),
        scripted_labeler(rte, rte_items, unsure_rate=0.4),
        chat_of,
    )
    assert result.accuracy == 1.0 and result.exited_at
    assert result.stats.input_tokens < full.stats.input_tokens and result.stats.num_calls <= full.stats.num_calls
    batches = [{str(i) for i in range(b * 8, b * 8 + 8)} for b in range(3)]
    for request in client.requests:
        asked = set(_asked(request))
        assert any(asked <= batch for batch in batches)  # a shrunk batch, never refilled from another
    for key, exit_round in result.exited_at.items():
        votes = result.votes[key]
        assert len(votes) == exit_round  # not asked after leaving
        assert votes[-1].confident and votes[-2].confident and votes[-1].label == votes[-2].label
    per_round = [r["num_active"] for r in result.per_round]
    assert per_round[0] == 24 and all(a >= b for a, b in itertools.pairwise(per_round))


def test_seas_needs_confidence(rte: TaskSpec, rte_items: list[Item], chat_of) -> None:  # type: ignore[no-untyped-def]
    client = scripted_labeler(rte, rte_items, unsure_rate=1.0)
    result = _run(rte, rte_items, BatchPromptConfig(batch_size=8, rounds=3, seas=True), client, chat_of)
    assert result.exited_at == {} and result.stats.num_calls == 9


def test_seas_with_all_confident_stops_after_two_rounds(rte: TaskSpec, rte_items: list[Item], chat_of) -> None:  # type: ignore[no-untyped-def]
    client = scripted_labeler(rte, rte_items)
    result = _run(rte, rte_items, BatchPromptConfig(batch_size=8, rounds=5, seas=True), client, chat_of)
    assert result.rounds_run == 2 and result.stats.num_calls == 6 and set(result.exited_at.values()) == {2}


def test_weighted_voting_is_used(rte: TaskSpec, rte_items: list[Item], chat_of) -> None:  # type: ignore[no-untyped-def]
    config = BatchPromptConfig(batch_size=8, rounds=3, voting=VotingConfig("weighted"))
    result = _run(rte, rte_items, config, scripted_labeler(rte, rte_items, error_rate=0.3), chat_of)
    # Wrong answers are never confident in the scripted model, so confidence weighting helps.
    majority = _run(rte, rte_items, BatchPromptConfig(batch_size=8, rounds=3),
                    scripted_labeler(rte, rte_items, error_rate=0.3), chat_of)
    assert (result.accuracy or 0) >= (majority.accuracy or 0)
    assert result.accuracy == 1.0 or result.accuracy > majority.accuracy  # type: ignore[operator]


def test_context_window_caps_the_batch(rte: TaskSpec, rte_items: list[Item], chat_of) -> None:  # type: ignore[no-untyped-def]
    client = scripted_labeler(rte, rte_items)
    result = _run(rte, rte_items, BatchPromptConfig(batch_size=32, context_window=600), client, chat_of)
    sizes = [len(_asked(r)) for r in client.requests]
    assert max(sizes) < 24 and sum(sizes) == 24 and result.stats.num_calls == len(sizes) == math.ceil(24 / max(sizes))


def test_config_round_trip_and_validation() -> None:
    config = BatchPromptConfig(batch_size=4, rounds=3, seas=True, voting=VotingConfig("weighted", unsure_weight=0.1))
    assert BatchPromptConfig.from_dict(config.to_dict()) == config
    for bad in ({"rounds": 2}, {"batch_size": 0}, {"max_tokens_per_answer": 0}, {"context_window": 0}):
        try:
            BatchPromptConfig(**bad)  # type: ignore[arg-type]
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")


def test_seas_agree_rule_stops_without_confidence_marks(rte: TaskSpec, rte_items: list[Item], chat_of) -> None:  # type: ignore[no-untyped-def]
    # The model never says "sure": the paper's rule keeps every item; the released code's rule
    # (two agreeing rounds) lets them all go after round 2.
    config = BatchPromptConfig(batch_size=8, rounds=5, seas=True, seas_rule="agree")
    result = _run(rte, rte_items, config, scripted_labeler(rte, rte_items, unsure_rate=1.0), chat_of)
    assert result.rounds_run == 2 and set(result.exited_at.values()) == {2} and result.stats.num_calls == 6
    paper = _run(rte, rte_items, BatchPromptConfig(batch_size=8, rounds=5, seas=True),
                 scripted_labeler(rte, rte_items, unsure_rate=1.0), chat_of)
    assert paper.rounds_run == 5 and paper.exited_at == {}
    assert BatchPromptConfig.from_dict(config.to_dict()) == config
    for bad in ({"seas_rule": "maybe"}, {"reask_singles": "sometimes"}):
        try:
            BatchPromptConfig(**bad)  # type: ignore[arg-type]
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")


def test_later_rounds_skip_single_reasks_for_items_with_votes(rte: TaskSpec, rte_items: list[Item], chat_of) -> None:  # type: ignore[no-untyped-def]
    # Answers past position 3 are lost. Round 1 re-asks down to single calls so every item gets a
    # vote; in rounds 2-3 ("unvoted") an item left over after the smaller batches only casts an
    # empty vote instead of costing a call of its own.
    def run(rule: str):  # type: ignore[no-untyped-def]
        client = scripted_labeler(rte, rte_items[:8], max_answers=3)
        config = BatchPromptConfig(batch_size=8, rounds=3, reask_singles=rule, max_concurrency=1)
        return _run(rte, rte_items[:8], config, client, chat_of), client

    cheap, _ = run("unvoted")
    full, _ = run("always")
    assert cheap.unanswered == [] == full.unanswered and full.stats.unanswered_votes == 0
    assert cheap.stats.unanswered_votes > 0 and cheap.stats.num_calls < full.stats.num_calls
    assert cheap.per_round[0]["unanswered_votes"] == 0  # round 1 always ends with every item answered


def test_logprob_confidence_replaces_the_marks(rte: TaskSpec, rte_items: list[Item], chat_of) -> None:  # type: ignore[no-untyped-def]
    # The scripted model's label token has p=0.99 when it marks the answer sure, else 0.6.
    def run(threshold: float, logprobs: bool = True):  # type: ignore[no-untyped-def]
        client = scripted_labeler(rte, rte_items, unsure_rate=0.5)
        config = BatchPromptConfig(batch_size=8, rounds=3, confidence="logprob", confidence_threshold=threshold)
        return _run(rte, rte_items, config, client, partial(chat_of, logprobs=logprobs))

    marks = _run(rte, rte_items, BatchPromptConfig(batch_size=8, rounds=3),
                 scripted_labeler(rte, rte_items, unsure_rate=0.5), chat_of)
    same = run(0.9)  # 0.99 >= 0.9 > 0.6: the same split as the marks
    assert same.votes == marks.votes and 0 < same.stats.confident_answers < 72
    lax = run(0.5)  # every label token clears 0.5
    assert lax.stats.confident_answers == 72 and all(v.confident for vs in lax.votes.values() for v in vs)
    fallback = run(0.5, logprobs=False)  # no logprobs: the marks are used, and counted
    assert fallback.votes == marks.votes and fallback.stats.logprob_missing_calls == fallback.stats.num_calls == 9
