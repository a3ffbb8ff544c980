"""QuotaFlow's own test in vLLM's offloading-connector harness: the plugin's KV-cache pins beside
vLLM's native CPU offloading (``ContinuumConfig.pin_with_offloading``).

``tests/serving_patch/test_vllm_upstream.py`` copies this file (as ``test_quotaflow_pins.py``) next to vLLM's
``tests/v1/kv_connector/unit/offloading_connector/test_scheduler.py`` for each run, so that it uses
their ``RequestRunner``: a real ``Scheduler`` (the plugin's in the plugin lane) with the real
``OffloadingConnector`` and a mocked transfer backend that completes every transfer at once.

A program's first turn ends with a tool call; two unrelated requests then need the whole cache;
the program's second turn arrives. vLLM's scheduler frees the first turn's blocks at its end and
the two requests evict them: the second turn computes its prompt again. The plugin, asked to pin
beside the connector, keeps them through the "tool call": the second turn finds its prefix on
the GPU. In both, the connector stores the first turn's full blocks (the last of them after the
turn ended, from the pinned blocks in the plugin's case) and nothing is flushed.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.v1.kv_connector.unit.offloading_connector.utils import RequestRunner, generate_store_output
from tests.v1.kv_connector.unit.utils import EOS_TOKEN_ID
from vllm import SamplingParams
from vllm.v1.request import Request

BLOCK = 4


def _turn(runner: RequestRunner, k: int, tokens: list[int]) -> Request:
    from serving_patch.core.hints import ProgramHints

    hints = ProgramHints("program", turn=k, is_last_step=k == 1, tool_name="bash", ttl_hint_s=30.0)
    params = SamplingParams(max_tokens=1000, extra_args=hints.to_xargs())
    params.update_from_generation_config({}, EOS_TOKEN_ID)
    runner.req_id += 1
    request = Request(request_id=str(runner.req_id), prompt_token_ids=tokens, sampling_params=params,
                      pooling_params=None, block_hasher=runner._block_hasher)
    runner.scheduler.add_request(request)
    return request


@pytest.mark.parametrize("async_scheduling", [True, False])
def test_quotaflow_turn_pinned_through_a_tool_call_beside_the_offloading_connector(
    monkeypatch: pytest.MonkeyPatch, async_scheduling: bool
) -> None:
    monkeypatch.setenv("QUOTAFLOW_CONTINUUM_PIN_WITH_OFFLOADING", "1")
    monkeypatch.setenv("QUOTAFLOW_CONTINUUM_METRICS", "0")
    # 12 blocks, one of them vLLM's null block: 11 to use.
    runner = RequestRunner(block_size=BLOCK, num_gpu_blocks=12, async_scheduling=async_scheduling)
    scheduler: Any = runner.scheduler
    plugin = hasattr(scheduler, "continuum")
    # Prompt tokens each request computed when first scheduled (the rest came from the cache).
    first_scheduled: dict[str, int] = {}
    schedule = scheduler.schedule

    def recording_schedule() -> Any:
        out = schedule()
        for new in out.scheduled_new_reqs:
            first_scheduled.setdefault(new.req_id, out.num_scheduled_tokens[new.req_id])
        return out

    scheduler.schedule = recording_schedule

    runner.manager.prepare_store.side_effect = lambda keys, req_context: generate_store_output(keys)
    first = [7] * (3 * BLOCK)
    _turn(runner, 0, first)
    runner.run(decoded_tokens=[EOS_TOKEN_ID], expected_stored=(0, 1, 2))
    if plugin:
        assert scheduler.continuum.counters.pins_created == 1
        assert len(scheduler._pinned_requests) == 1

    # Two requests of 7 blocks each, one after the other: the second needs blocks the first
    # turn left (stock), or finds the first request's (plugin: 4 pinned, 7 free).
    runner.manager.prepare_store.side_effect = lambda keys, req_context: generate_store_output([])
    for filler in (1, 2):
        runner.new_request(token_ids=[100 * filler] * (6 * BLOCK))
        runner.run(decoded_tokens=[EOS_TOKEN_ID])

    prompt = [*first, EOS_TOKEN_ID, *([8] * (2 * BLOCK - 1))]
    second = _turn(runner, 1, prompt)
    runner.run(decoded_tokens=[EOS_TOKEN_ID])
    cached = len(prompt) - first_scheduled[second.request_id]
    if plugin:
        assert cached == 3 * BLOCK  # the pinned prefix, on the GPU
        assert scheduler.continuum.counters.pin_hits == 1
        assert not scheduler._pinned_requests  # handed to the turn, which ended the program
    else:
        assert cached == 0  # evicted by the two requests
    assert scheduler.kv_cache_manager.block_pool.get_num_free_blocks() == 11
