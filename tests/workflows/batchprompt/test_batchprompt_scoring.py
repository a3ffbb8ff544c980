"""Labels scored by calibrated logprobs, the shared prompt prefix and cached-token counts."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence

import pytest

from orchestrator.types import LLMResponse, Message, SamplingOptions, TokenLogprob, Usage
from workflows.batchprompt.engine import BatchPromptConfig, RunState, run_batchprompt
from workflows.batchprompt.prompt import compose_messages
from workflows.batchprompt.scoring import (
    PROBABILITY_FLOOR,
    calibrate,
    content_free_inputs,
    label_distributions,
    mean_prior,
)
from workflows.batchprompt.tasks import Item, TaskSpec


def _token(text: str, p: float, *alternatives: tuple[str, float]) -> TokenLogprob:
    return TokenLogprob(text, math.log(p), tuple((t, math.log(q)) for t, q in ((text, p), *alternatives)))


def test_label_distributions_read_the_label_tokens_alternatives(rte: TaskSpec) -> None:
    tokens = [
        _token("[", 1.0), _token("1", 1.0), _token("]", 1.0),
        _token(" yes", 0.6, (" Yes", 0.1), (" no", 0.2)),  # spellings of one label are summed
        _token(" (", 1.0), _token("sure", 0.9), _token(")", 1.0),
        _token("\n", 1.0), _token("[", 1.0), _token("2", 1.0), _token("]", 1.0),
        _token(" no", 0.9),  # "yes" not among the alternatives: the floor
        _token("\n[3]", 1.0), _token(" maybe", 0.9),  # no label token on the line
    ]
    found = label_distributions(rte, tokens, 3)
    assert set(found) == {1, 2}
    assert found[1]["entailment"] == pytest.approx(0.7 / 0.9) and found[1]["not_entailment"] == pytest.approx(0.2 / 0.9)
    assert found[2]["entailment"] == pytest.approx(PROBABILITY_FLOOR / (0.9 + PROBABILITY_FLOOR))


def test_calibration_divides_by_the_prior() -> None:
    leaning = {"yes": 0.6, "no": 0.4}
    prior = mean_prior([{"yes": 0.8, "no": 0.2}, leaning], ["yes", "no"])
    assert prior == pytest.approx({"yes": 0.7, "no": 0.3})
    q = calibrate(leaning, prior)
    assert q["no"] > q["yes"]  # below the model's usual lean towards yes: a "no"
    assert calibrate(leaning, None) == leaning and mean_prior([], ["yes"]) is None


def test_content_free_item_has_every_field_na(rte: TaskSpec) -> None:
    assert content_free_inputs(rte) == {"premise": "N/A", "hypothesis": "N/A"}


class YesSayer:
    """A chat that always writes "yes" but whose probability of "yes" is 0.8 for entailed items
    and 0.6 for the others (0.7 for a content-free item): the text is useless, the logprobs not."""

    def __init__(self, items: Sequence[Item]) -> None:
        self.gold = {item.inputs["hypothesis"]: item.gold for item in items}
        self.samplings: list[SamplingOptions] = []
        self.prompts: list[list[Message]] = []

    async def __call__(self, messages: list[Message], sampling: SamplingOptions) -> LLMResponse:
        self.samplings.append(sampling)
        self.prompts.append(messages)
        hypotheses = re.findall(r"Sentence 2: (.*)", messages[-1].content)
        lines, tokens = [], []
        for n, hypothesis in enumerate(hypotheses, start=1):
            gold = self.gold.get(hypothesis)
            p_yes = 0.7 if gold is None else 0.8 if gold == "entailment" else 0.6
            lines.append(f"[{n}] yes (sure)")
            tokens += [_token(("\n" if n > 1 else "") + f"[{n}]", 1.0), _token(" yes", p_yes, (" no", 1 - p_yes)),
                       _token(" (sure)", 1.0)]
        prompt_tokens = sum(len(m.content.split()) for m in messages)
        usage = Usage(input_tokens=prompt_tokens, cached_input_tokens=prompt_tokens // 2, output_tokens=3 * len(lines))
        return LLMResponse("\n".join(lines), usage, "m", logprobs=tuple(tokens) if sampling.logprobs else None)


def _run(task: TaskSpec, items: list[Item], chat: YesSayer, **config: object):  # type: ignore[no-untyped-def]
    return asyncio.run(run_batchprompt(task, items, BatchPromptConfig(**config), chat,  # type: ignore[arg-type]
                                       lambda text: len(text.split())))


@pytest.mark.parametrize("batch_size", [1, 8])
def test_logprob_scoring_with_calibration_recovers_what_the_text_hides(rte, rte_items, batch_size) -> None:
    text = _run(rte, rte_items, YesSayer(rte_items), batch_size=batch_size)
    assert text.accuracy == 0.5  # every answer "yes"
    uncalibrated = _run(rte, rte_items, YesSayer(rte_items), batch_size=batch_size, label_scoring="logprob",
                        calibration="none")
    assert uncalibrated.accuracy == 0.5  # p(yes) > 0.5 everywhere
    chat = YesSayer(rte_items)
    mean = _run(rte, rte_items, chat, batch_size=batch_size, label_scoring="logprob", calibration="mean")
    assert mean.accuracy == 1.0 and mean.stats.logprob_scored_answers == len(rte_items)
    assert all(s.logprobs and s.top_logprobs == 5 for s in chat.samplings)
    assert mean.stats.calibration_calls == 0 and mean.stats.num_calls == text.stats.num_calls


def test_content_free_calibration_costs_one_call_per_run(rte, rte_items) -> None:
    chat = YesSayer(rte_items)
    result = _run(rte, rte_items, chat, batch_size=8, rounds=3, label_scoring="logprob", calibration="content_free")
    assert result.accuracy == 1.0
    assert result.stats.calibration_calls == 1 and result.stats.num_calls == 1 + 3 * 3
    assert "Sentence 1: N/A" in chat.prompts[0][-1].content


def test_text_scoring_asks_for_no_logprobs(rte, rte_items) -> None:
    chat = YesSayer(rte_items)
    _run(rte, rte_items, chat, batch_size=8)
    assert not any(s.logprobs or s.top_logprobs for s in chat.samplings)


def test_calls_share_the_instructions_and_examples_as_a_prefix_and_cached_tokens_are_counted(rte, rte_items):
    first, second = compose_messages(rte, [rte_items[0].inputs]), compose_messages(rte, [rte_items[1].inputs])
    assert len(first) == len(second) and first[:-1] == second[:-1] and first[-1] != second[-1]
    result = _run(rte, rte_items, YesSayer(rte_items), batch_size=8)
    assert 0 < result.stats.cached_input_tokens < result.stats.input_tokens


def test_run_state_keeps_the_label_prior_and_reads_older_states() -> None:
    state = RunState(batches=[["a"]], active=["a"], votes={"a": []}, label_prior={"yes": 0.7, "no": 0.3})
    assert RunState.from_dict(state.to_dict()) == state
    older = {k: v for k, v in state.to_dict().items() if k != "label_prior"}
    assert RunState.from_dict(older).label_prior is None
    stats = dict(state.stats.to_dict())
    for newer in ("cached_input_tokens", "logprob_scored_answers", "calibration_calls"):
        stats.pop(newer)
    assert RunState.from_dict({**older, "stats": stats}).stats.cached_input_tokens == 0


def test_bad_scoring_options_are_refused() -> None:
    with pytest.raises(ValueError, match="label_scoring"):
        BatchPromptConfig(label_scoring="vibes")
    with pytest.raises(ValueError, match="calibration"):
        BatchPromptConfig(calibration="prior")
