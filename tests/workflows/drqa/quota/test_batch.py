"""The batch-mode probe: composing k questions, parsing k answers from noisy replies."""

from __future__ import annotations

from workflows.drqa.quota.batch import (
    approx_token_count,
    chunk_indices,
    compose_probe_messages,
    compose_quick_messages,
    parse_probe_response,
    parse_quick_answer,
)


def test_probe_prompt_lists_every_question_with_its_marker() -> None:
    msgs = compose_probe_messages(["What is 2+2?", "What is 3*3?", "Name 5 squared."], answer_hint="a number")
    user = msgs[-1].content
    assert msgs[-1].role == "user"
    for i, q in enumerate(["What is 2+2?", "What is 3*3?", "Name 5 squared."], start=1):
        assert f"[Q{i}] {q}" in user
    assert "Answer all 3 questions" in user and "Confidence" in user and "a number" in user


def test_parser_reads_clean_blocks() -> None:
    text = (
        "[Q1]\nReasoning: 2+2 is 4.\nAnswer: 4\nConfidence: 95\n\n"
        "[Q2]\nReasoning: 3 times 3 is 9, since 3+3+3 = 9.\nAnswer: 9\nConfidence: 80\n"
    )
    items = parse_probe_response(text, 2)
    assert [i.answer for i in items] == ["4", "9"]
    assert [i.confidence for i in items] == [0.95, 0.8]
    assert items[1].reasoning_tokens > items[0].reasoning_tokens > 0
    assert not any(i.missing for i in items)


def test_parser_tolerates_markdown_variants_order_and_confidence_forms() -> None:
    text = (
        "Sure! Here are my answers.\n"
        "**Question 2:**\n- **Answer**: \\boxed{\\frac{1}{2}}\n- Confidence: 0.4\n"
        "### Q1.\nReasoning: easy\nFinal answer: $1,200\nConfidence: 90%\n"
        "Q3) Reasoning: not sure\nAnswer: 7 apples.\nConfidence: high\n"
    )
    items = parse_probe_response(text, 3)
    assert items[0].answer == "$1,200" and items[0].confidence == 0.9
    assert items[1].answer == "\\frac{1}{2}" and items[1].confidence == 0.4
    assert items[2].answer == "7 apples" and items[2].confidence == 0.9
    assert [i.position for i in items] == [1, 2, 3]


def test_parser_detects_missing_items_and_missing_fields() -> None:
    text = "[Q1]\nReasoning: ok\nAnswer: 5\n[Q3]\nReasoning: I could not finish because"
    items = parse_probe_response(text, 4)
    assert items[0].answer == "5" and items[0].confidence is None and not items[0].missing
    assert items[1].missing and items[1].answer is None
    assert items[2].answer is None and not items[2].missing and "could not finish" in items[2].reasoning
    assert items[3].missing


def test_parser_ignores_out_of_range_markers_and_keeps_first_answered_duplicate() -> None:
    text = "[Q1]\nReasoning: a\n[Q9]\nAnswer: 99\n[Q1]\nAnswer: 3\nConfidence: 70\n[Q1]\nAnswer: 4\n"
    items = parse_probe_response(text, 1)
    assert items[0].answer == "3" and items[0].confidence == 0.7


def test_parser_single_question_without_header() -> None:
    items = parse_probe_response("The total is 12 + 5 = 17.\n#### 17", 1)
    assert items[0].answer == "17" and not items[0].missing


def test_answer_field_keeps_whole_expression() -> None:
    items = parse_probe_response("[Q1]\nAnswer: \\frac{\\sqrt{3}}{2}\n", 1)
    assert items[0].answer == "\\frac{\\sqrt{3}}{2}"


def test_quick_answer_parsing() -> None:
    assert parse_quick_answer("Answer: 42") == "42"
    assert parse_quick_answer("42.") == "42"
    assert parse_quick_answer("") is None
    assert parse_quick_answer("First we add 3 and 4 to get 7, then double it to 14") == "14"
    assert "final answer only" in compose_quick_messages("2+2?")[0].content


def test_chunking_and_token_estimate() -> None:
    assert chunk_indices(5, 2) == [[0, 1], [2, 3], [4]]
    assert chunk_indices(0, 3) == []
    assert approx_token_count("") == 0
    assert approx_token_count("one two three") >= 3
