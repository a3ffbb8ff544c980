from __future__ import annotations

import re

import pytest

from workflows.batchprompt.prompt import (
    compose_messages,
    parse_answers,
    plan_batches,
    render_inputs,
)
from workflows.batchprompt.tasks import Item, TaskSpec


def test_compose_numbers_items_and_shows_demonstration(rte: TaskSpec, rte_items: list[Item]) -> None:
    rows = [i.inputs for i in rte_items[:3]]
    system, demo_in, demo_out, user = compose_messages(rte, rows)
    assert system.role == "system" and "(unsure)" in system.content and "yes or no" in system.content
    assert (demo_in.role, demo_out.role, user.role) == ("user", "assistant", "user")
    # The demonstration is one batch in the real format, with annotated confidence.
    assert demo_out.content.splitlines() == ["[1] yes (sure)", "[2] no (sure)"]
    assert re.findall(r"^\[(\d+)\] Sentence 1: ", user.content, re.MULTILINE) == ["1", "2", "3"]
    assert render_inputs(rte, rows[2]) in user.content
    assert user.content.endswith("Answer all 3, [1] to [3].")


def test_parse_clean_output(rte: TaskSpec) -> None:
    p = parse_answers(rte, "[1] yes (confident)\n[2] no (not confident)\n[3] No (confident)", 3)
    assert p.is_clean
    assert [(a.label, a.confident) for a in (p.answers[1], p.answers[2], p.answers[3])] == [
        ("entailment", True), ("not_entailment", False), ("not_entailment", True)]


def test_parse_tolerates_noise_and_format_variants(rte: TaskSpec) -> None:
    text = (
        "Sure! Here are my answers:\n"
        "1. Yes (confident)\n"
        "Input 2: not entailment (Confident)\n"
        "**[3]** entailment\n"
        "- [4]: NO (unsure) [5] yes (confident)\n"
        "Hope this helps."
    )
    p = parse_answers(rte, text, 5)
    assert p.failed == [] and p.num_noise_lines == 2
    assert {n: (a.label, a.confident) for n, a in p.answers.items()} == {
        1: ("entailment", True),
        2: ("not_entailment", True),  # the longer alias wins over "entailment" inside it
        3: ("entailment", False),  # no mark counts as not confident
        4: ("not_entailment", False),
        5: ("entailment", True),
    }


def test_parse_detects_missing_duplicate_out_of_range_and_unlabeled(rte: TaskSpec) -> None:
    text = "[1] yes (confident)\n[1] yes (not confident)\n[2] yes\n[2] no\n[4] maybe\n[7] yes\n[9] no"
    p = parse_answers(rte, text, 5)
    assert p.missing == [3, 5]
    assert p.duplicates == [1, 2] and p.conflicting == [2]
    assert p.out_of_range == [7, 9]
    assert p.unlabeled == [4]
    assert p.failed == [2, 3, 4, 5]
    # Agreeing repeats are usable, confident only if every repeat says so.
    assert (p.answers[1].label, p.answers[1].confident) == ("entailment", False)
    assert not p.is_clean


def test_parse_garbage_fails_every_item(rte: TaskSpec) -> None:
    p = parse_answers(rte, "I cannot help with that.", 4)
    assert p.failed == [1, 2, 3, 4] and p.missing == [1, 2, 3, 4] and p.num_noise_lines == 1


def _words(text: str) -> int:
    return len(text.split())


def test_plan_respects_batch_size_and_context_window(rte: TaskSpec, rte_items: list[Item]) -> None:
    keys = [i.key for i in rte_items]
    plan = plan_batches(rte, rte_items, batch_size=10, count_tokens=_words, context_window=100_000)
    assert [len(b) for b in plan] == [10, 10, 4] and [k for b in plan for k in b] == keys
    overhead = sum(_words(m.content) + 8 for m in compose_messages(rte, []))
    item_cost = _words(render_inputs(rte, rte_items[0].inputs)) + 4
    # Room for exactly 5 items (+ 5 answers of 12 tokens and 16 slack) above the overhead.
    window = overhead + 5 * (item_cost + 12) + 16
    plan = plan_batches(rte, rte_items, batch_size=32, count_tokens=_words, context_window=window)
    assert max(len(b) for b in plan) == 5 and [k for b in plan for k in b] == keys
    assert len(plan_batches(rte, rte_items, batch_size=32, count_tokens=_words, context_window=window - 1)[0]) == 4


def test_plan_gives_an_oversized_item_its_own_batch(rte: TaskSpec, rte_items: list[Item]) -> None:
    plan = plan_batches(rte, rte_items[:3], batch_size=8, count_tokens=_words, context_window=10)
    assert plan == [["0"], ["1"], ["2"]]
    with pytest.raises(ValueError):
        plan_batches(rte, rte_items, batch_size=0, count_tokens=_words, context_window=10)


def test_short_and_paper_confidence_marks_both_parse(rte: TaskSpec) -> None:
    p = parse_answers(rte, "[1] yes (sure)\n[2] no (unsure)\n[3] yes (confident)\n[4] no (not confident)\n[5] yes", 5)
    assert [(a.label, a.confident) for a in (p.answers[i] for i in range(1, 6))] == [
        ("entailment", True), ("not_entailment", False), ("entailment", True), ("not_entailment", False),
        ("entailment", False),  # no mark: not confident
    ]


def test_builtin_few_shot_items_are_not_evaluated(shared_data) -> None:  # type: ignore[no-untyped-def]
    # The demonstrations are real dev items outside the paper's evaluation subsets (no label leak).
    from workflows.batchprompt.tasks import load_builtin_items, load_task

    for name in ("boolq", "rte"):
        task = load_task(name)
        assert len(task.examples) == {"boolq": 4, "rte": 2}[name]  # the paper's few-shot counts
        shown = {render_inputs(task, ex.inputs) for ex in task.examples}
        evaluated = {render_inputs(task, item.inputs) for item in load_builtin_items(name, shared_data).items}
        assert shown and not shown & evaluated
        assert {ex.label for ex in task.examples} == {lab.value for lab in task.labels}


def test_label_probabilities_reads_the_label_token_of_each_line(rte: TaskSpec) -> None:
    import math

    from workflows.batchprompt.prompt import label_probabilities

    tokens = [("[", 0.0), ("1", 0.0), ("]", 0.0), (" yes", math.log(0.95)), (" (", 0.0), ("sure", math.log(0.5)),
              (")\n", 0.0), ("[2", 0.0), ("]", 0.0), (" No", math.log(0.55)), ("\n", 0.0),
              ("Note: yes", math.log(0.1)), ("\n", 0.0),  # no number: skipped
              ("[9] no", math.log(0.9)), ("\n[3]", 0.0), (" not", math.log(0.7)), (" entailed", 0.0),
              ("\n[2] yes", math.log(0.99))]  # a repeat keeps its first probability
    probs = label_probabilities(rte, tokens, 3)
    assert set(probs) == {1, 2, 3}
    assert math.isclose(probs[1], 0.95) and math.isclose(probs[2], 0.55) and math.isclose(probs[3], 0.7)
