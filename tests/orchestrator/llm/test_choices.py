"""Matching a free reply to one of a fixed set of strings, and what each backend and the journal
do with the constrained-choice and logprob sampling fields."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.journal import llm_request, request_hash
from orchestrator.llm.choices import closest_choice, match_choice, normalize_choice
from orchestrator.llm.scripted import ScriptedClient, ScriptedConfig
from orchestrator.types import LLMRequest, Message, SamplingOptions

AGENTS = ("Solver", "Solver2", "Verifier", "END")


@pytest.mark.parametrize(("reply", "expected"), [
    ("Verifier", "Verifier"),
    ("  **verifier**. ", "Verifier"),
    ('"END"', "END"),
    ("<END>", "END"),
    ("I will hand this to the Verifier now.", "Verifier"),
    ("Solver2 should check it", "Solver2"),  # the longer name, not its prefix
    ("Verifier, then Solver", "Verifier"),  # the earliest named
    ("the solvers disagree", None),  # not a whole word
    ("nobody", None),
])
def test_match_choice(reply: str, expected: str | None) -> None:
    assert match_choice(reply, AGENTS) == expected


def test_closest_choice_always_answers_and_is_deterministic() -> None:
    assert closest_choice("Verifer", AGENTS) == "Verifier"  # a misspelling: most similar by characters
    assert closest_choice("zzz", ("a", "b")) == "a"  # nothing similar: the first listed
    with pytest.raises(ValueError):
        closest_choice("x", ())


def test_normalize_choice() -> None:
    assert normalize_choice("  `Next  Agent`: ") == "next agent"


def test_sampling_checks_the_new_fields() -> None:
    assert SamplingOptions(choices=["a", "b"]).choices == ("a", "b")  # type: ignore[arg-type]
    assert SamplingOptions(top_logprobs=3).wants_logprobs and not SamplingOptions().wants_logprobs
    with pytest.raises(ValueError, match="two constraints"):
        SamplingOptions(choices=("a",), json_schema={"type": "string"})
    with pytest.raises(ValueError, match="two constraints"):
        SamplingOptions(choices=("a",), regex="a|b")
    with pytest.raises(ValueError, match="empty pattern"):
        SamplingOptions(regex="")
    with pytest.raises(ValueError, match="non-empty"):
        SamplingOptions(choices=("a", ""))
    with pytest.raises(ValueError, match="top_logprobs"):
        SamplingOptions(top_logprobs=21)


def test_journal_keys_of_requests_without_the_new_fields_are_unchanged() -> None:
    # The form a run journaled before choices/logprobs existed: its keys must still match.
    old_form = {"max_tokens": 8, "temperature": 0.0, "top_p": 1.0, "seed": None, "stop": (), "json_schema": None}
    from dataclasses import asdict

    wire = [{"role": "user", "content": "hi"}]
    now = llm_request(wire, asdict(SamplingOptions(max_tokens=8)))
    assert request_hash("llm", now) == request_hash("llm", {"messages": wire, "sampling": old_form})
    constrained = llm_request(wire, asdict(SamplingOptions(max_tokens=8, choices=("a", "b"))))
    assert request_hash("llm", constrained) != request_hash("llm", now)
    by_regex = llm_request(wire, asdict(SamplingOptions(max_tokens=8, regex="a|b")))
    assert by_regex["sampling"]["regex"] == "a|b" and "regex" not in now["sampling"]
    assert request_hash("llm", by_regex) not in {request_hash("llm", now), request_hash("llm", constrained)}


def _ask(**sampling: object) -> LLMRequest:
    return LLMRequest(messages=(Message("user", "Who goes next?"),),
                      sampling=SamplingOptions(max_tokens=16, **sampling))  # type: ignore[arg-type]


def test_scripted_client_snaps_to_a_choice_and_reports_logprobs() -> None:
    client = ScriptedClient(ScriptedConfig(["Next: the verifier.", "Next: the verifier."],
                                           logprobs=lambda text: [(text, -0.25)]))
    chosen = asyncio.run(client.complete(_ask(choices=AGENTS, top_logprobs=1)))
    assert chosen.text == "Verifier"
    assert chosen.logprobs is not None and [(t.token, t.logprob) for t in chosen.logprobs] == [("Verifier", -0.25)]
    assert chosen.logprobs[0].top_logprobs == (("Verifier", -0.25),)
    plain = asyncio.run(client.complete(_ask()))
    assert plain.text == "Next: the verifier." and plain.logprobs is None


def test_scripted_client_hands_out_its_reply_under_a_regex_and_counts_a_mismatch() -> None:
    client = ScriptedClient(ScriptedConfig(["[1] yes", "maybe", "anything"]))
    matching = asyncio.run(client.complete(_ask(regex=r"\[1\] (yes|no)")))
    assert matching.text == "[1] yes" and client.num_regex_mismatches == 0
    unmatched = asyncio.run(client.complete(_ask(regex=r"\[1\] (yes|no)")))
    assert unmatched.text == "maybe" and client.num_regex_mismatches == 1  # not enforced: noted
    asyncio.run(client.complete(_ask(regex="(unclosed")))  # a pattern Python cannot read: no match
    assert client.num_regex_mismatches == 2
