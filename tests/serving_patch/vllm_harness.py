"""Builds a real vLLM 0.26 scheduler on CPU and drives it without a model (test helper).

Recipe from research/vllm_plugin_notes.md (section D): a local config.json with a registered
architecture, ``DeviceConfig("cpu")``, and a fake single-group KV-cache config. Each step
schedules, then feeds one sampled token per request whose prompt is fully computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.serving.sim import STOP, make_scheduler, write_tiny_model

__all__ = ["STOP", "Driver", "FakeClock", "Turn", "build", "make_scheduler", "tokens", "write_tiny_model"]


@dataclass
class Turn:
    """One request the driver feeds."""

    request: Any
    num_output: int
    """Tokens to sample before the stop token (or before max_tokens when ``stop`` is False)."""
    stop: bool = True
    admitted_step: int | None = None
    num_cached_tokens: int | None = None
    """Prompt tokens served from the prefix cache when first admitted."""
    num_sampled: int = 0


@dataclass
class Driver:
    """Feeds requests to a scheduler and plays the model: one token per ready request per step."""

    scheduler: Any
    block_size: int = 16
    turns: dict[str, Turn] = field(default_factory=dict)
    num_steps: int = 0
    num_preemptions: int = 0

    def __post_init__(self) -> None:
        from vllm.utils.hashing import sha256
        from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash

        init_none_hash(sha256)
        self._hasher = get_request_block_hasher(self.block_size, sha256)

    def add(
        self,
        request_id: str,
        prompt: list[int],
        num_output: int,
        xargs: dict[str, Any] | None = None,
        *,
        stop: bool = True,
        priority: int = 0,
        arrival_time: float | None = None,
    ) -> Turn:
        """Submit a request that samples ``num_output`` tokens then the stop token."""
        from vllm.sampling_params import SamplingParams
        from vllm.v1.request import Request

        params = SamplingParams(
            max_tokens=num_output + 1 if stop else num_output,
            ignore_eos=True,
            stop_token_ids=[STOP] if stop else None,
            extra_args=dict(xargs) if xargs else None,
        )
        request = Request(
            request_id=request_id,
            prompt_token_ids=list(prompt),
            sampling_params=params,
            pooling_params=None,
            block_hasher=self._hasher,
            priority=priority,
            arrival_time=arrival_time,
        )
        turn = Turn(request, num_output, stop)
        self.turns[request_id] = turn
        self.scheduler.add_request(request)
        return turn

    def step(self) -> Any:
        """One schedule() + update_from_output(); returns the scheduler output."""
        from vllm.v1.outputs import ModelRunnerOutput

        out = self.scheduler.schedule()
        self.num_steps += 1
        self.num_preemptions += len(out.preempted_req_ids)
        for new in out.scheduled_new_reqs:
            turn = self.turns[new.req_id]
            if turn.admitted_step is None:
                turn.admitted_step = self.num_steps
                turn.num_cached_tokens = turn.request.num_computed_tokens - out.num_scheduled_tokens[new.req_id]
        req_ids = list(out.num_scheduled_tokens)
        sampled: list[list[int]] = []
        for rid in req_ids:
            turn = self.turns[rid]
            request = turn.request
            if request.num_computed_tokens < request.num_tokens:
                sampled.append([])  # prefill chunk: nothing sampled yet
                continue
            turn.num_sampled += 1
            done = turn.num_sampled > turn.num_output
            sampled.append([STOP if (done and turn.stop) else 100 + turn.num_sampled])
        if req_ids:
            self.scheduler.update_from_output(
                out,
                ModelRunnerOutput(
                    req_ids=req_ids,
                    req_id_to_index={rid: i for i, rid in enumerate(req_ids)},
                    sampled_token_ids=sampled,
                ),
            )
        return out

    def run_until(self, predicate: Any, *, max_steps: int = 500) -> None:
        """Step until ``predicate()`` holds (fails the test after ``max_steps``)."""
        for _ in range(max_steps):
            if predicate():
                return
            self.step()
        raise AssertionError(f"condition not reached in {max_steps} steps")

    def finished(self, request_id: str) -> bool:
        """Whether the request has finished."""
        return self.turns[request_id].request.is_finished()

    def next_prompt(self, request_id: str, num_new: int, *, seed: int) -> list[int]:
        """The previous turn's prompt and output, then ``num_new`` new tokens."""
        request = self.turns[request_id].request
        return list(request.prompt_token_ids) + list(request.output_token_ids) + [
            1000 + seed * 97 + i for i in range(num_new)
        ]

    @property
    def num_free_blocks(self) -> int:
        """Free blocks in the pool (cached blocks with no owner included)."""
        return int(self.scheduler.kv_cache_manager.block_pool.get_num_free_blocks())


def tokens(seed: int, n: int) -> list[int]:
    """A deterministic prompt of ``n`` tokens, distinct per ``seed``."""
    return [3000 + seed * 1009 + i for i in range(n)]


class FakeClock:
    """The plugin's clock in these tests: time moves only when a test sets ``now``."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def build(model_dir: Any, kind: str, **kwargs: Any) -> tuple[Driver, FakeClock]:
    """A real vLLM scheduler of ``kind`` (stock, sync plugin, async plugin) on a fake clock."""
    from vllm.v1.core.sched.scheduler import Scheduler

    from serving_patch.vllm_adapter import ContinuumAsyncScheduler, ContinuumScheduler

    cls: Any = {"stock": Scheduler, "sync": ContinuumScheduler, "async": ContinuumAsyncScheduler}[kind]
    policy = kwargs.pop("policy", "fcfs" if kind == "stock" else "priority")
    scheduler = make_scheduler(model_dir, cls, policy=policy, async_scheduling=kind == "async", **kwargs)
    clock = FakeClock()
    if kind != "stock":
        scheduler.continuum_clock = clock
    return Driver(scheduler), clock
