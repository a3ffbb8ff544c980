"""Step (a): chains of thought from a served model, single-question and batch mode.

Talks to any :class:`~orchestrator.llm.base.LLMClient` (``create_client("openai", ...)`` for
vLLM). Batch mode puts ``batch_size`` questions in one prompt (the probe format of
``workflows.drqa.quota.batch``) and splits the reply into one chain per question.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from orchestrator.aio import gather_limited
from orchestrator.errors import EngineDead
from orchestrator.llm.base import LLMClient
from orchestrator.types import LLMRequest, SamplingOptions
from workflows.answers import extract_final_answer
from workflows.drqa.datasets import DatasetSpec, Item
from workflows.drqa.prompts import solve_messages
from workflows.drqa.quota.batch import approx_token_count, compose_probe_messages, parse_probe_response
from workflows.drqa.training.labels import Chain

__all__ = ["GenerationConfig", "generate_chains", "request_plan"]


@dataclass(frozen=True)
class GenerationConfig:
    """How many chains, how long, how random."""

    num_single: int = 2
    """Single-question chains per question."""
    num_batch: int = 1
    """Batch-mode rounds (each question appears once per round, with different partners)."""
    batch_size: int = 2
    """Questions per batch prompt (DRQA's main setting is Batch-2)."""
    max_tokens: int = 512
    """Cap per single chain; a batch prompt gets ``batch_size`` times this."""
    temperature: float = 0.7
    """Sampling temperature (several chains per question should differ)."""
    concurrency: int = 128
    """Requests in flight."""
    seed: int = 0
    """Seed of the batch partner shuffles."""


async def generate_chains(
    client: LLMClient,
    items: Sequence[Item],
    spec: DatasetSpec,
    config: GenerationConfig,
    *,
    on_done: Callable[[], None] | None = None,
    done: Mapping[str, list[Chain]] | None = None,
    on_result: Callable[[str, list[Chain]], None] | None = None,
    on_refused: Callable[[str, EngineDead], None] | None = None,
) -> list[Chain]:
    """Single and batch-mode chains for ``items``; truncated or unparsable ones are kept (they
    are labelled incorrect), questions missing from a batch reply are dropped.

    Every request has a key (dataset, mode, round and the items' positions): one in ``done`` is
    not sent again and its chains are used as they are; ``on_result(key, chains)`` is called as
    each request finishes (the data step journals it). Chains come back in request order, so a
    resumed job returns what an uninterrupted one would. A request the server refuses for good
    (:class:`~orchestrator.errors.EngineDead`: a 4xx such as a prompt past the context, a
    malformed reply) gives no chains and goes to ``on_refused`` when one is given (else it
    raises); an unavailable server (``EngineUnavailable``, after the client's retries) always
    raises.
    """
    count = getattr(client, "count_tokens", approx_token_count)

    async def single(item: Item, k: int) -> list[Chain]:
        msgs = solve_messages(item.question, spec.answer_instruction, quota_tokens=None, answer_reserve_tokens=0)
        sampling = SamplingOptions(max_tokens=config.max_tokens, temperature=config.temperature,
                                   seed=config.seed * 1000 + k)
        resp = await client.complete(LLMRequest(messages=msgs, sampling=sampling))
        if on_done:
            on_done()
        truncated = resp.finish_reason == "length"
        answer = extract_final_answer(resp.text, allow_last_number=not truncated)
        return [Chain(item.id, item.question, item.gold, "single", resp.text.strip(), answer,
                      resp.usage.output_tokens or count(resp.text))]

    async def batch(group: list[Item], k: int) -> list[Chain]:
        msgs = compose_probe_messages([it.question for it in group], answer_hint=spec.answer_hint)
        sampling = SamplingOptions(max_tokens=config.max_tokens * len(group), temperature=config.temperature,
                                   seed=config.seed * 1000 + 500 + k)
        resp = await client.complete(LLMRequest(messages=msgs, sampling=sampling))
        if on_done:
            on_done()
        out = []
        for it, parsed in zip(group, parse_probe_response(resp.text, len(group), count_tokens=count), strict=True):
            if parsed.missing:
                continue
            text = f"{parsed.reasoning}\nAnswer: {parsed.answer}" if parsed.answer else parsed.reasoning
            out.append(Chain(it.id, it.question, it.gold, "batch", text.strip(), parsed.answer,
                             count(text), len(group)))
        return out

    requests: list[tuple[str, Callable[[], Awaitable[list[Chain]]]]] = [
        (f"{spec.name}/{mode}/{k}/" + ",".join(map(str, group)),
         partial(single, items[group[0]], k) if mode == "single" else partial(batch, [items[i] for i in group], k))
        for mode, k, group in request_plan(len(items), config)
    ]
    results = await _send_all(requests, config.concurrency, done or {}, on_done, on_result, on_refused)
    return [c for chunk in results for c in chunk]


def request_plan(num_items: int, config: GenerationConfig) -> list[tuple[str, int, list[int]]]:
    """The requests :func:`generate_chains` sends for ``num_items`` questions, in order: (mode,
    round, the questions' positions); batch rounds group a seeded shuffle."""
    plan = [("single", k, [i]) for k in range(config.num_single) for i in range(num_items)]
    rng = random.Random(config.seed)
    for k in range(config.num_batch):
        order = list(range(num_items))
        rng.shuffle(order)
        plan += [("batch", k, order[start : start + config.batch_size])
                 for start in range(0, num_items, config.batch_size)]
    return plan


async def _send_all(
    requests: list[tuple[str, Callable[[], Awaitable[list[Chain]]]]],
    concurrency: int,
    known: Mapping[str, list[Chain]],
    on_done: Callable[[], None] | None,
    on_result: Callable[[str, list[Chain]], None] | None,
    on_refused: Callable[[str, EngineDead], None] | None,
) -> list[list[Chain]]:
    """Each request's chains, in order: known ones as they are, the rest sent (see generate_chains)."""

    async def one(key: str, send: Callable[[], Awaitable[list[Chain]]]) -> list[Chain]:
        if key in known:
            if on_done:
                on_done()
            return known[key]
        try:
            chains = await send()
        except EngineDead as exc:
            if on_refused is None:
                raise
            on_refused(key, exc)
            if on_done:
                on_done()
            return []
        if on_result:
            on_result(key, chains)
        return chains

    return await gather_limited(concurrency, [partial(one, key, send) for key, send in requests])
