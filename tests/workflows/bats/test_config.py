"""BATS's and its baselines' options go through the project's one converter: strings from the
command line are typed (``"false"`` is False), a value that does not fit names its option."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator import workflow
from orchestrator.errors import BadInputError
from orchestrator.testing import FakeRunContext, ScriptedClient, ScriptedConfig

QUESTION = "Where was the Eiffel Tower's designer born?"  # the demo's subject: its words are fair here


def test_string_options_are_typed() -> None:
    ctx = FakeRunContext(llm=ScriptedClient(ScriptedConfig(["answer: Dijon"])),
                         config={"demo": "false", "temperature": "0.5", "max_tokens": "64", "tools": ["search"]})
    wf = workflow.get("react_harness")
    state = asyncio.run(wf.build(ctx).compile().ainvoke(wf.initial_state({"question": QUESTION})))
    assert wf.result(state)["answer"] == "Dijon"
    first = ctx.calls[0]
    assert (first.sampling.temperature, first.sampling.max_tokens) == (0.5, 64)
    assert first.messages[1].content.startswith("Question: Where")  # no demo exchange before it


@pytest.mark.parametrize(("name", "options", "option"), [
    ("bats", {"agent_plan": "some"}, "agent_plan"),
    ("bats", {"max_attempts": "two"}, "max_attempts"),
    ("tracker", {"stop_when_any_exhausted": "maybe"}, "stop_when_any_exhausted"),
    ("parallel", {"num_samples": 2.5}, "num_samples"),
])
def test_a_value_that_does_not_fit_names_its_option(name: str, options: dict[str, object], option: str) -> None:
    with pytest.raises(BadInputError, match=f"option {option}"):
        workflow.get(name).build(FakeRunContext(config=dict(options)))
