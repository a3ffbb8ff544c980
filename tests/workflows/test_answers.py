"""Answer extraction and normalisation used for agreement and scoring."""

from __future__ import annotations

from workflows.answers import (
    answers_match,
    extract_boxed,
    extract_final_answer,
    normalize_answer,
)


def test_extract_markers_in_priority_order() -> None:
    assert extract_final_answer("so 3+4=7\n#### 7") == "7"
    assert extract_final_answer("thus \\boxed{\\frac{a}{b}} done") == "\\frac{a}{b}"
    assert extract_final_answer("The answer is 12.") == "12"
    assert extract_final_answer("we get 3 then 5") == "5"
    assert extract_final_answer("we get 3 then 5", allow_last_number=False) is None


def test_boxed_with_nested_braces() -> None:
    assert extract_boxed("x = \\boxed{\\frac{\\sqrt{3}}{2}}.") == "\\frac{\\sqrt{3}}{2}"
    assert extract_boxed("no box") is None


def test_normalisation_makes_equal_forms_match() -> None:
    assert normalize_answer("$1,200.00") == "1200"
    assert normalize_answer("\\dfrac{1}{2}") == "0.5" == normalize_answer("1/2") == normalize_answer("0.50")
    assert normalize_answer("\\frac{1}{3}") == "1/3"
    assert normalize_answer("90^\\circ") == "90"
    assert normalize_answer("18 dollars") == "18"
    assert normalize_answer("\\text{(B)}") == "(B)"
    assert answers_match("x = 5", "5")
    assert not answers_match("5", "6")
    assert not answers_match(None, None)
