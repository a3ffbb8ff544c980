"""The budgeted solve prompt and answer extraction, against what Qwen2.5-Coder-0.5B did on the H200.

The old prompt ended "...budget is 111 tokens (about 83 words)... a reply cut off before its
final answer line scores zero. Reason step by step. End with a final line of the form
'#### <number>'." and the model replied "#### 111" (its budget as the answer) on GSM8K
(bench/results/drqa/cpu-prompt-check.json).
"""

from __future__ import annotations

import re

from workflows.answers import extract_final_answer
from workflows.drqa.datasets import get_spec
from workflows.drqa.prompts import solve_messages
from workflows.drqa.quota.enforcement import reasoning_budget_statement

QUESTION = "A team of 4 painters worked 3/8ths of a day every day for 3 weeks. How many hours did each work?"


def test_budget_is_stated_as_the_order_of_work() -> None:
    spec = get_spec("gsm8k")
    user = solve_messages(QUESTION, spec.answer_instruction, quota_tokens=135, answer_reserve_tokens=24)[-1].content
    statement = reasoning_budget_statement(135, 24)
    assert statement == "First reason step by step, in about 83 words at most."
    assert user.endswith(f"{QUESTION}\n\n{statement} Then end with a final line of the form '#### <number>'.")
    # The only number after the question is the word budget; no token count, no "scores zero".
    tail = user[user.index(QUESTION) + len(QUESTION):]
    assert re.findall(r"\d+", tail) == ["83"]
    assert "scores zero" not in user and "tokens" not in user
    math = solve_messages("p", get_spec("math").answer_instruction, quota_tokens=135, answer_reserve_tokens=24)
    assert math[-1].content.endswith("at most. Then write the final answer in \\boxed{} on the last line.")


def test_unlimited_prompt_has_no_budget() -> None:
    user = solve_messages(QUESTION, "End with '#### <number>'.", quota_tokens=None, answer_reserve_tokens=0)[-1]
    assert user.content.startswith(QUESTION) and "words at most" not in user.content


def test_a_zero_budget_asks_for_the_answer_alone() -> None:
    assert reasoning_budget_statement(20, 24) == "Give the final answer immediately, with no working."


def test_hash_heading_is_not_an_answer() -> None:
    # What the model wrote under the budgeted prompt, cut off mid-working.
    cut = "#### 1. Calculate the total number of days in 3 weeks:\n   \\[\n   3 \\text{ weeks} \\times 7"
    assert extract_final_answer(cut, allow_last_number=False) is None
    assert extract_final_answer(cut + " = 21 days\n#### 189") == "189"
    assert extract_final_answer("#### $18 per hour") == "$18 per hour"


def test_continuation_and_forced_prompts_carry_no_number_to_copy() -> None:
    from workflows.drqa.prompts import continuation_messages, force_answer_messages

    spec = get_spec("gsm8k")
    cont = continuation_messages(QUESTION, spec.answer_instruction, "There are 7 days", extra_tokens=120,
                                 answer_reserve_tokens=24)[-1].content
    plain = solve_messages(QUESTION, spec.answer_instruction, quota_tokens=None, answer_reserve_tokens=0)
    forced = force_answer_messages(plain, "There are 7 days", spec.answer_instruction)[-1].content
    for text in (cont, forced):
        assert not re.search(r"\d", text) and "####" in text
