"""Pure parsers of BATS: action lines, plans, verifier JSON, judge replies; and scoring."""

from __future__ import annotations

import pytest

from orchestrator.context import ToolBudgetView
from workflows.actions import Action, fallback_answer, parse_actions
from workflows.bats.planning import apply_verdicts, default_plan, parse_plan, render_plan
from workflows.bats.scoring import exact_match, f1_score, normalize_answer
from workflows.bats.selection import fallback_choice, majority_vote, parse_choice, vote_select
from workflows.bats.tracker import tracker_block
from workflows.bats.verifier import (
    CONTINUE,
    PIVOT,
    SUCCESS,
    VerifierFormatError,
    default_verification,
    parse_verification,
)


def test_action_lines_are_parsed_tolerantly_and_in_order() -> None:
    text = (
        "Thought: I should look this up.\n"
        "1. search: Eiffel Tower architect\n"
        '**Search:** "Gustave Eiffel birthplace"\n'
        "Action: browse[wiki://Gustave Eiffel]\n"
        "- open: <wiki://Paris>\n"
        "Search results show nothing useful\n"
        "Final Answer: Dijon.\n"
    )
    assert parse_actions(text) == [
        Action("search", "Eiffel Tower architect"),
        Action("search", "Gustave Eiffel birthplace"),
        Action("browse", "wiki://Gustave Eiffel"),
        Action("browse", "wiki://Paris"),
        Action("answer", "Dijon"),
    ]


def test_a_copied_budget_block_line_is_no_action_but_real_queries_about_use_are() -> None:
    # The block's lines, in the form tracker_block rendered them before it took the paper's, copied by
    # the agent (seen on the CPU with Qwen2.5-Coder-0.5B): no tool call, so no budget is spent on them.
    echoed = ("search: 1 used, 4 left (of 5 queries)\nbrowse: 0 used, no limit (urls)\n"
              "- search: 2.5 used, 0.5 left (of 3 queries)")
    assert parse_actions(echoed) == []
    # The block as rendered now has no line in the action syntax at all.
    views = [ToolBudgetView("search", unit="query", used=1, limit=5),
             ToolBudgetView("browse", unit="url", used=0, limit=None)]
    assert parse_actions(tracker_block(views)) == []
    real = "search: 1 used car dealer in Ohio\nsearch: how many used, 4 left behind\nbrowse: https://x.org/used"
    assert parse_actions(real) == [Action("search", "1 used car dealer in Ohio"),
                                   Action("search", "how many used, 4 left behind"), Action("browse", "https://x.org/used")]
    assert parse_actions("answer: 1 used, 4 left") == [Action("answer", "1 used, 4 left")]  # answers are the agent's


def test_format_lines_copied_with_their_placeholders_are_no_actions_and_no_fallback() -> None:
    # After the budget lines were skipped, the same CPU runs searched "keywords", browsed "url" and
    # answered "<short answer>": the prompt's format line, copied. None of them is an action.
    copied = "search: <keywords>\nbrowse: url\nanswer: <short answer>\nsearch: a few keywords"
    assert parse_actions(copied) == []
    assert parse_actions("search: keywords for the Eiffel Tower\nanswer: <Paris>") == [
        Action("search", "keywords for the Eiffel Tower"), Action("answer", "Paris")]
    assert fallback_answer("<short answer>\nsearch: 2 used, 3 left (of 5 queries)\nBath, Maine") == "Bath, Maine"
    assert fallback_answer("<short answer>") == ""


def test_every_placeholder_the_prompts_show_for_an_action_is_known_to_the_parser() -> None:
    # PLACEHOLDERS is written by hand; the prompts are where the agent copies them from.
    import re
    from pathlib import Path

    from workflows.actions import PLACEHOLDERS

    root = Path(__file__).resolve().parents[3]
    shown = set()
    for source in ("workflows/bats/prompts.py", "workflows/react.py"):
        text = (root / source).read_text()
        shown |= {m.lower() for m in re.findall(r"(?:search|browse|answer):\s*<([^>]+)>", text)}
    assert shown and shown <= PLACEHOLDERS, shown - PLACEHOLDERS


def test_unknown_tools_are_ignored_and_fallback_keeps_numbers() -> None:
    assert parse_actions("calculator: 2+2\nanswer: 4", tools=("search",)) == [Action("answer", "4")]
    assert parse_actions("I think it is Paris.") == []
    assert fallback_answer("1912\nbecause...") == "1912"
    assert fallback_answer('The answer is "Paris".') == "Paris"


def test_plan_puts_exploration_first_and_tracks_verdicts() -> None:
    plan = parse_plan("- verify: born in Dijon\nexplore: who designed the tower\nnoise\nExploration: other leads")
    assert [(p["kind"], p["text"]) for p in plan] == [
        ("explore", "who designed the tower"), ("explore", "other leads"), ("verify", "born in Dijon"),
    ]
    assert parse_plan("nothing useful here") == []
    assert len(default_plan()) == 2
    ticked = apply_verdicts(plan, ["satisfied", "contradicted"])
    assert [p["status"] for p in ticked] == ["satisfied", "contradicted", "pending"]
    text = render_plan(ticked)
    assert "[x] 1. (explore) who designed the tower" in text and "[!] 2." in text and "[ ] 3. (verify)" in text


def test_verifier_json_with_fences_and_prose_is_valid() -> None:
    reply = 'Sure!\n```json\n{"verdicts": ["satisfied", {"verdict": "Unverifiable"}], "decision": "continue",' \
            ' "justification": "half done", "summary": "found the tower"}\n```'
    v = parse_verification(reply, 2)
    assert v.decision == CONTINUE and v.verdicts == ("satisfied", "unverifiable")
    assert v.summary == "found the tower" and v.source == "valid"


def test_verifier_pads_verdicts_and_downgrades_contradicted_success() -> None:
    v = parse_verification('{"verdicts": ["contradicted"], "decision": "SUCCESS"}', 3)
    assert v.verdicts == ("contradicted", "unverifiable", "unverifiable")
    assert v.decision == PIVOT


@pytest.mark.parametrize(
    "reply",
    ["no json here", '{"verdicts": [], "decision": "MAYBE"}', '{"decision": "SUCCESS", "verdicts": 3}',
     "{'decision': 'SUCCESS'}", '["SUCCESS"]', '{"verdicts": ["satisfied"], "decision": "SUCCESS",}'],
)
def test_malformed_verifier_replies_are_rejected(reply: str) -> None:
    with pytest.raises(VerifierFormatError):
        parse_verification(reply, 1)


def test_default_verification_claims_nothing() -> None:
    v = default_verification(2, ["bad"])
    assert v.decision == CONTINUE and v.verdicts == ("unverifiable", "unverifiable")
    assert v.source == "default" and v.errors == ("bad",)
    assert v.decision != SUCCESS


def test_majority_vote_normalises_and_breaks_ties_by_order() -> None:
    assert majority_vote(["Paris", "the paris", "London", ""]) == "Paris"
    assert majority_vote(["London", "Paris"]) == "London"
    assert majority_vote(["", "  "]) == ""


def test_vote_select_takes_the_majority_then_the_earliest_attempt() -> None:
    attempts = [{"answer": "London"}, {"answer": "Paris"}, {"answer": ""}, {"answer": "the Paris"}]
    assert vote_select(attempts) == ("Paris", {"method": "vote", "num_candidates": 3, "choice": 1})
    assert vote_select([{"answer": "B"}, {"answer": "A"}])[0] == "B"
    assert vote_select([{"answer": "x"}, {"answer": "X"}])[1]["method"] == "unanimous"
    assert vote_select([{"answer": " "}]) == ("", {"method": "none", "num_candidates": 0})


def test_judge_reply_parsing_and_fallback() -> None:
    assert parse_choice("Candidate 2 is best", 3) == 1
    assert parse_choice("7", 3) is None and parse_choice("none", 3) is None
    cands = [{"answer": "A", "decision": "PIVOT"}, {"answer": "B", "decision": "SUCCESS"}, {"answer": "C"}]
    assert fallback_choice(cands) == 1
    assert fallback_choice([{"answer": "x"}, {"answer": "y"}, {"answer": "X"}]) == 0
    assert fallback_choice([{"answer": "x"}, {"answer": "y"}]) == 1


def test_squad_style_scoring() -> None:
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert exact_match("the Eiffel Tower", "Eiffel Tower") == 1.0
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0
    assert f1_score("Gustave Eiffel", "Eiffel") == pytest.approx(2 / 3)
    assert f1_score("no", "yes") == 0.0 and f1_score("yes", "yes") == 1.0
    assert f1_score("", "Paris") == 0.0


def test_an_action_naming_the_worked_example_is_a_copy_unless_the_question_or_a_result_names_it() -> None:
    from workflows.actions import copies_example

    question = "Which company founded VIVA Media AG?"
    for value in ("Gustave Eiffel", "Eiffel Tower architect", "wiki://Gustave Eiffel", "Dijon", "1887"):
        assert copies_example(value, question), value
    # Fair use: the question is about the example's subject, or this run's tool results name the word.
    assert not copies_example("Dijon", "Where was the Eiffel Tower's designer born?")
    assert not copies_example("Dijon", question, observed="Gustave Eiffel (born in Dijon) was ...")
    assert copies_example("Gustave Eiffel, Dijon", question, observed="born in Dijon")  # eiffel unseen
    assert not copies_example("VIVA Media AG", question) and not copies_example("18870", question)


def test_every_action_of_the_worked_examples_counts_as_a_copy_for_an_unrelated_question() -> None:
    # EXAMPLE_WORDS is written by hand; the demos are what the agent copies.
    from workflows import react
    from workflows.actions import copies_example
    from workflows.bats import prompts

    shown = parse_actions(prompts.AGENT_SYSTEM)
    shown += [a for role, text in prompts.DEMO_TURNS if role == "assistant" for a in parse_actions(text)]
    shown += [a for m in react.DEMO if m.role == "assistant" for a in parse_actions(m.content)]
    assert len(shown) >= 7
    assert all(copies_example(a.value, "Who founded VIVA Media AG?") for a in shown), shown
