"""Labelling chains and the judge task's prompt, letter parsing and reward."""

from __future__ import annotations

from workflows.drqa.datasets import get_spec
from workflows.drqa.training.judge import judge_messages, label_reward, parse_letter
from workflows.drqa.training.labels import Chain, Label, LabelConfig, label_chains


def _chain(item: str, mode: str, answer: str | None, tokens: int, gold: str = "7") -> Chain:
    return Chain(item, f"question {item}", gold, mode, f"work ... #### {answer}", answer, tokens,  # type: ignore[arg-type]
                 2 if mode == "batch" else 1)


def test_labels_follow_the_rule() -> None:
    chains = [
        _chain("q1", "single", "7", 300),  # correct, 300 > 1.3 * 100 -> verbose
        _chain("q1", "single", "7", 120),  # correct, 120 <= 130 -> concise
        _chain("q1", "batch", "7", 100),  # correct batch -> concise (and the shortest)
        _chain("q1", "batch", "8", 40),  # wrong -> incorrect, even in batch mode
        _chain("q2", "single", "7", 500),  # the only correct chain of q2 -> concise
        _chain("q3", "single", None, 50),  # no answer -> incorrect
        _chain("q4", "batch", "0.70e1", 90, gold="7"),  # wrong by normalisation -> incorrect
    ]
    spec = get_spec("gsm8k")
    labels = [c.label for c in label_chains(chains, spec.is_correct, LabelConfig(verbose_ratio=1.3))]
    assert labels == [
        Label.VERBOSE.value, Label.CONCISE.value, Label.CONCISE.value, Label.INCORRECT.value,
        Label.CONCISE.value, Label.INCORRECT.value, Label.INCORRECT.value,
    ]


def test_chain_round_trips_through_dict() -> None:
    c = label_chains([_chain("q1", "single", "7", 10)], get_spec("gsm8k").is_correct)[0]
    assert Chain.from_dict(c.to_dict()) == c


def test_judge_prompt_hides_the_gold_and_shows_the_chain() -> None:
    c = Chain("q", "How many apples?", "12345", "single", "I count 5 apples.\n#### 5", "5", 8)
    msgs = judge_messages(c)
    text = "\n".join(m.content for m in msgs)
    assert "How many apples?" in text and "I count 5 apples." in text
    assert "12345" not in text
    assert "A)" in text and "B)" in text and "C)" in text


def test_letter_parsing_and_reward() -> None:
    assert parse_letter("C") == "C"
    assert parse_letter("(B) because it rambles") == "B"
    assert parse_letter("Answer: A") == "A"
    assert parse_letter("Because the answer...") is None
    assert parse_letter("") is None
    assert label_reward("C", "correct-concise") == 1.0
    assert label_reward("B", "correct-concise") == 0.0
    assert label_reward("B", "correct-concise", format_reward=0.1) == 0.1
    assert label_reward("nothing", "incorrect", format_reward=0.1) == 0.0
    assert label_reward("A)", "incorrect") == 1.0
