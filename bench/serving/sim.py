"""The serving replay in virtual time on CPU: the real vLLM 0.26 scheduler, a modelled GPU.

    python -m bench.serving.sim --loads 60,240,600 --kv-blocks 2000

Same programs and arrivals as ``bench.serving.replay`` (same flags), but no engine: each
configuration builds vLLM's real ``Scheduler`` (stock, FCFS) or the plugin's
``ContinuumScheduler`` (priority policy) over a fake KV cache on CPU, and a step takes the time a
linear model of the H200 gives it (a fixed cost per step, per prefill token, per decoded
sequence and per context token read). The clock is virtual, so a 10-minute trace runs in
seconds. This does not replace the GPU run (the step-time model is a model); it shows where
the plugin should and should not help before a GPU run is spent, and which knobs matter.

The ``*_offload`` configurations add vLLM's native CPU offloading as a modelled second tier
(:class:`CpuTier`, ``--offload-gib``): every full block a step computes is stored in a host-memory
LRU of that size, and a new turn's prefix beyond its GPU hit that the tier holds is loaded instead
of computed, at ``StepCost.per_reload_token_s`` (host-to-device copy) rather than the prefill cost.
The model loads synchronously within the step; vLLM loads asynchronously, overlapping other work,
so the tier's benefit is if anything understated. As on the engine, the plugin pins nothing when a
KV connector is attached (it orders and admits only), unless ``--pin-with-offload`` (the plugin's
``pin_with_offloading``, ``quotaflow serve --pin-with-offload``) keeps its pins beside the tier.

Per config and load it prints mean / p50 / p95 program completion time, prefix hit rate (GPU and
CPU tier), preemptions and the plugin's counters, and writes ``sim.json`` under ``--out-dir``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import statistics
import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from bench.common import provenance, write_json
from bench.serving.replay import (
    CONFIGS,
    MODEL_NAME,
    Level,
    completed_per_min,
    engine_max_len,
    goodput,
    is_plugin,
    jct_by_arrival_tenth,
    jct_trend,
    make_plan,
    num_overdue,
    parse_args,
    percentile,
    plugin_env,
    prompt_tokens,
)
from bench.serving.workload import KV_BLOCK_TOKENS, ProgramSpec, ServiceModel, kv_capacity_bound
from serving_patch.core.hints import ProgramHints

STOP = 2
"""Stop token id of the modelled turns (they end FINISHED_STOPPED, as real turns do)."""

TINY_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "num_hidden_layers": 1,
    "vocab_size": 32000,
    "max_position_embeddings": 65536,
    "torch_dtype": "float16",
}


@dataclass(frozen=True)
class StepCost:
    """Modelled duration of one engine step (seconds). Defaults: Llama-3.1-8B shape, bf16,
    eager, on one H200, from the replay's calibration (a = 11 ms, tpot = 13.4 ms at batch 1,
    17.6 us per prefill token) and the KV read of 128 KiB per context token at ~4 TB/s."""

    per_step_s: float = 0.0125
    """Fixed cost of a step (weights read, launch overhead)."""
    per_prefill_token_s: float = 17.6e-6
    """Cost per prompt token computed in the step."""
    per_decode_seq_s: float = 0.05e-3
    """Cost per sequence decoded in the step."""
    per_context_token_s: float = 0.03e-6
    """Attention read cost per context token of the decoded sequences."""
    per_reload_token_s: float = 6.5e-6
    """Cost per token loaded from the CPU tier (``*_offload``): 128 KiB of KV per token over a
    host-to-device copy at about 20 GB/s."""

    def service_model(self) -> ServiceModel:
        """The replay's isolated-service model under this step cost (one sequence, no context
        reads): what a program's JCT lower bound is computed from."""
        return ServiceModel(self.per_step_s, self.per_prefill_token_s, self.per_step_s + self.per_decode_seq_s)

    def step_s(self, num_prefill_tokens: int, num_decode_seqs: int, num_context_tokens: int,
               num_reload_tokens: int = 0) -> float:
        """Duration of one step."""
        return (
            self.per_step_s
            + self.per_prefill_token_s * num_prefill_tokens
            + self.per_decode_seq_s * num_decode_seqs
            + self.per_context_token_s * num_context_tokens
            + self.per_reload_token_s * num_reload_tokens
        )


KV_BYTES_PER_TOKEN = 128 * 1024
"""KV cache bytes per token of the modelled model (Llama-3.1-8B: 32 layers, 8 KV heads of 128, bf16)."""


@dataclass
class CpuTier:
    """vLLM's native CPU offloading as the simulator models it, in the scheduler's KV-connector
    seat: an LRU of block hashes in host memory, filled as blocks are computed (store on
    compute), read by a new turn beyond its GPU prefix hit (loaded synchronously: the load is
    charged to the step that schedules the turn)."""

    capacity_blocks: int
    block_size: int = KV_BLOCK_TOKENS
    blocks: OrderedDict[Any, None] = field(default_factory=OrderedDict)
    stored_upto: dict[str, int] = field(default_factory=dict)
    pending_load_tokens: int = 0
    loaded_by_request: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of_size(cls, gib: float) -> CpuTier:
        return cls(max(0, int(gib * 2**30 // (KV_BLOCK_TOKENS * KV_BYTES_PER_TOKEN))))

    def store(self, request_id: str, block_hashes: Sequence[Any], num_computed_tokens: int) -> None:
        """The request's full computed blocks not stored yet enter the tier (most recent last)."""
        full = min(num_computed_tokens // self.block_size, len(block_hashes))
        for h in block_hashes[self.stored_upto.get(request_id, 0) : full]:
            self.blocks[h] = None
            self.blocks.move_to_end(h)
        self.stored_upto[request_id] = max(full, self.stored_upto.get(request_id, 0))
        while len(self.blocks) > self.capacity_blocks:
            self.blocks.popitem(last=False)

    def take_loaded_tokens(self) -> int:
        """Tokens loaded since the last call (the step's reload)."""
        loaded, self.pending_load_tokens = self.pending_load_tokens, 0
        return loaded

    # -- the KVConnectorBase_V1 calls vLLM's Scheduler makes ----------------------------------
    def get_num_new_matched_tokens(self, request: Any, num_computed_tokens: int) -> tuple[int, bool]:
        start = num_computed_tokens // self.block_size
        # At least the prompt's last token is computed (vLLM needs a position to sample from).
        limit = (request.num_tokens - 1) // self.block_size
        hit = 0
        for h in request.block_hashes[start:limit]:
            if h not in self.blocks:
                break
            self.blocks.move_to_end(h)
            hit += 1
        return hit * self.block_size, False

    def update_state_after_alloc(self, request: Any, blocks: Any, num_external_tokens: int) -> None:
        if num_external_tokens:
            self.pending_load_tokens += num_external_tokens
            rid = request.request_id
            self.loaded_by_request[rid] = self.loaded_by_request.get(rid, 0) + num_external_tokens

    def build_connector_meta(self, scheduler_output: Any) -> Any:
        from vllm.distributed.kv_transfer.kv_connector.v1.base import KVConnectorMetadata

        return KVConnectorMetadata()

    def request_finished(self, request: Any, block_ids: Any) -> tuple[bool, None]:
        self.stored_upto.pop(request.request_id, None)
        return False, None

    def update_connector_output(self, output: Any) -> None: ...

    def on_new_request(self, request: Any) -> None: ...

    def bind_gpu_block_pool(self, pool: Any) -> None: ...

    def get_kv_connector_stats(self) -> None:
        return None

    def take_events(self) -> list[Any]:
        return []

    def has_pending_push_work(self) -> bool:
        return False

    def shutdown(self) -> None: ...


def write_tiny_model(folder: Path) -> Path:
    """A weightless model folder that vLLM's ModelConfig accepts offline."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(TINY_LLAMA))
    return folder


def make_scheduler(
    model_dir: Path,
    scheduler_cls: type[Any],
    *,
    num_blocks: int = 64,
    block_size: int = 16,
    policy: str = "priority",
    async_scheduling: bool = False,
    max_num_seqs: int = 16,
    max_num_batched_tokens: int = 2048,
    max_model_len: int = 2048,
) -> Any:
    """A real vLLM scheduler of class ``scheduler_cls`` on CPU over a fake KV cache of ``num_blocks``."""
    import torch
    from vllm.config import CacheConfig, DeviceConfig, ModelConfig, SchedulerConfig, VllmConfig
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    from vllm.v1.structured_output import StructuredOutputManager

    model_config = ModelConfig(
        model=str(model_dir), dtype="float16", seed=42, skip_tokenizer_init=True, max_model_len=max_model_len
    )
    scheduler_config = SchedulerConfig(
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        max_model_len=max_model_len,
        enable_chunked_prefill=True,
        is_encoder_decoder=False,
        policy=policy,
        async_scheduling=async_scheduling,
    )
    cache_config = CacheConfig(
        block_size=block_size, gpu_memory_utilization=0.9, cache_dtype="auto", enable_prefix_caching=True
    )
    vllm_config = VllmConfig(
        model_config=model_config,
        scheduler_config=scheduler_config,
        cache_config=cache_config,
        device_config=DeviceConfig(device="cpu"),
    )
    spec = FullAttentionSpec(block_size=block_size, num_kv_heads=1, head_size=1, dtype=torch.float32)
    kv_cache_config = KVCacheConfig(
        num_blocks=num_blocks, kv_cache_tensors=[], kv_cache_groups=[KVCacheGroupSpec(["layer"], spec)]
    )
    cache_config.num_gpu_blocks = num_blocks
    return scheduler_cls(
        vllm_config=vllm_config,
        kv_cache_config=kv_cache_config,
        structured_output_manager=StructuredOutputManager(vllm_config),
        block_size=block_size,
        log_stats=True,
    )


def _pinning_beside_tier(scheduler_cls: type[Any]) -> type[Any]:
    """The plugin's scheduler taking the CPU tier for vLLM's OffloadingConnector in its pin rule
    (``pin_with_offloading``, ``--pin-with-offload``): the adapter's own rule decides the rest."""

    class PinningScheduler(scheduler_cls):  # type: ignore[misc, valid-type]
        def _pins_beside(self, connector: Any) -> bool:
            return isinstance(connector, CpuTier)

    return PinningScheduler


@dataclass
class _Active:
    """A turn in the engine."""

    program: int
    turn: int
    request: Any
    num_output: int
    num_sampled: int = 0


def simulate_level(
    args: argparse.Namespace,
    config: str,
    level: Level,
    level_index: int,
    cost: StepCost,
    model_dir: Path,
) -> dict[str, Any]:
    """Replay one load level through one configuration in virtual time."""
    from vllm.sampling_params import SamplingParams
    from vllm.utils.hashing import sha256
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.outputs import ModelRunnerOutput
    from vllm.v1.request import Request

    plugin = is_plugin(config)
    scheduler_cls: type[Any] = Scheduler
    env: dict[str, str] = {}
    if plugin:
        from serving_patch.vllm_adapter import ContinuumScheduler

        scheduler_cls = ContinuumScheduler
        # The plugin reads its configuration from the environment when the scheduler is built.
        env = {
            **plugin_env(config, None, pin_with_offload=args.pin_with_offload),
            "QUOTAFLOW_CONTINUUM_METRICS": "0",
            "QUOTAFLOW_CONTINUUM_PREFILL_A_S": str(cost.per_step_s),
            "QUOTAFLOW_CONTINUUM_PREFILL_B_S_PER_TOKEN": str(cost.per_prefill_token_s),
        }
    tier = CpuTier.of_size(args.offload_gib) if config.endswith("_offload") else None
    if plugin and tier is not None:
        scheduler_cls = _pinning_beside_tier(scheduler_cls)
    with mock.patch.dict(os.environ, env):
        scheduler = make_scheduler(
            model_dir, scheduler_cls, num_blocks=args.kv_blocks, policy="priority" if plugin else "fcfs",
            max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
            max_model_len=engine_max_len(args),
        )
    if tier is not None:
        scheduler.connector = tier
    init_none_hash(sha256)
    hasher = get_request_block_hasher(16, sha256)
    now = 0.0
    if plugin:
        scheduler.continuum_clock = lambda: now

    programs: list[ProgramSpec] = level.programs
    events: list[tuple[float, int, int]] = [(off, i, 0) for i, off in enumerate(level.arrivals_s)]
    heapq.heapify(events)
    contexts: list[list[int]] = [[] for _ in programs]
    records = [
        {"arrival_s": off, "turns": 0, "prompt_tokens": 0, "cached_tokens": 0, "cpu_cached_tokens": 0,
         "done": False}
        for off in level.arrivals_s
    ]
    active: dict[str, _Active] = {}
    num_preemptions = 0
    deadline = max(level.arrivals_s) + args.drain_s
    counter = 0

    def submit(i: int, k: int) -> None:
        nonlocal counter
        program = programs[i]
        turn = program.turns[k]
        prompt = contexts[i] + prompt_tokens(program, level_index, k, turn.num_new_tokens, instance=i)
        last = len(program.turns) - 1
        hints = ProgramHints(f"p{i}", turn=k, is_last_step=k == last, tool_name=turn.tool_name)
        params = SamplingParams(max_tokens=turn.num_output_tokens + 1, ignore_eos=True,
                                stop_token_ids=[STOP], extra_args=hints.to_xargs())
        counter += 1
        rid = f"r{counter}"
        request = Request(request_id=rid, prompt_token_ids=prompt, sampling_params=params,
                          pooling_params=None, block_hasher=hasher, arrival_time=now)
        active[rid] = _Active(i, k, request, turn.num_output_tokens)
        records[i]["prompt_tokens"] += len(prompt)
        scheduler.add_request(request)

    while now <= deadline:
        while events and events[0][0] <= now:
            _, i, k = heapq.heappop(events)
            submit(i, k)
        if not active:
            if not events:
                break
            now = events[0][0]
            continue
        out = scheduler.schedule()
        num_preemptions += len(out.preempted_req_ids)
        for new in out.scheduled_new_reqs:
            act = active[new.req_id]
            from_cpu = tier.loaded_by_request.pop(new.req_id, 0) if tier is not None else 0
            # Prompt tokens not computed by this step: GPU prefix hits and CPU-tier loads.
            records[act.program]["cached_tokens"] += (
                act.request.num_computed_tokens - out.num_scheduled_tokens[new.req_id]
            )
            records[act.program]["cpu_cached_tokens"] += from_cpu
        req_ids = list(out.num_scheduled_tokens)
        if not req_ids:
            # Nothing fits right now (pins or running turns hold the blocks): wait for an event.
            now = events[0][0] if events else now + cost.per_step_s
            continue
        sampled: list[list[int]] = []
        prefill = decode = ctx = 0
        for rid in req_ids:
            act = active[rid]
            request = act.request
            n = out.num_scheduled_tokens[rid]
            # schedule() has already advanced num_computed_tokens by n.
            if request.num_computed_tokens < request.num_tokens:
                prefill += n  # a prefill chunk: nothing sampled yet
                sampled.append([])
                continue
            if n > 1:
                prefill += n - 1
            decode += 1
            ctx += request.num_computed_tokens
            act.num_sampled += 1
            done = act.num_sampled > act.num_output
            sampled.append([STOP if done else 100 + act.num_sampled])
        now += cost.step_s(prefill, decode, ctx, tier.take_loaded_tokens() if tier is not None else 0)
        scheduler.update_from_output(
            out,
            ModelRunnerOutput(req_ids=req_ids, req_id_to_index={r: j for j, r in enumerate(req_ids)},
                              sampled_token_ids=sampled),
        )
        for rid in req_ids:
            act = active.get(rid)
            if act is None:
                continue
            if tier is not None:
                tier.store(rid, act.request.block_hashes, act.request.num_computed_tokens)
            if not act.request.is_finished():
                continue
            del active[rid]
            i, k = act.program, act.turn
            contexts[i] = list(act.request.prompt_token_ids) + list(act.request.output_token_ids)
            records[i]["turns"] += 1
            turn = programs[i].turns[k]
            if k == len(programs[i].turns) - 1:
                records[i]["done"] = True
                records[i]["finish_s"] = now
            else:
                heapq.heappush(events, (now + turn.tool_s, i, k + 1))
    for rec in records:
        rec["jct_s"] = (rec["finish_s"] if rec["done"] else now) - rec["arrival_s"]
    result: dict[str, Any] = {"programs": records, "preemptions": num_preemptions, "end_s": now}
    if plugin:
        result["plugin"] = asdict(scheduler.continuum.counters)
    return result


def summarize(
    result: dict[str, Any], drain_s: float | None = None, lower_bounds: list[float] | None = None
) -> dict[str, Any]:
    """Mean / p50 / p95 JCT, incomplete and overdue programs (``lower_bounds``: each program's,
    in level order), prefix hit rate (prompt tokens not computed: GPU hits and CPU-tier loads;
    ``cpu_tier_hit_rate``: the loads alone, offload configurations only)."""
    programs = result["programs"]
    jcts = [p["jct_s"] for p in programs]
    prompt = sum(p["prompt_tokens"] for p in programs)
    cached = sum(p["cached_tokens"] for p in programs)
    from_cpu = sum(p.get("cpu_cached_tokens", 0) for p in programs)
    return {
        "mean_jct_s": round(statistics.fmean(jcts), 3),
        "p50_jct_s": round(percentile(jcts, 50), 3),
        "p95_jct_s": round(percentile(jcts, 95), 3),
        "num_incomplete": sum(not p["done"] for p in programs),
        **({"num_overdue": num_overdue(programs, lower_bounds)} if lower_bounds is not None else {}),
        "prefix_hit_rate": round(cached / prompt, 3) if prompt else 0.0,
        **({"cpu_tier_hit_rate": round(from_cpu / prompt, 3) if prompt else 0.0} if from_cpu else {}),
        "preemptions": result["preemptions"],
        "jct_trend": round(jct_trend(programs), 2),
        "jct_by_arrival_tenth": [round(x, 2) for x in jct_by_arrival_tenth(programs)],
        "completed_per_min": round(completed_per_min(programs, drain_s), 3),
        **({"plugin": result["plugin"]} if "plugin" in result else {}),
    }


def parse_step_cost(text: str) -> StepCost:
    """``"per_step_s=0.018,per_decode_seq_s=2e-4"`` -> a :class:`StepCost` with those fields changed."""
    fields = {f for f in StepCost.__dataclass_fields__}
    changes: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--step-cost: expected key=value with key in {sorted(fields)}, got {part!r}")
        try:
            changes[key] = float(value)
        except ValueError:
            raise SystemExit(f"--step-cost: {key} needs a number, got {value!r}") from None
    return StepCost(**changes)


def main(argv: list[str] | None = None) -> None:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--step-cost", default="", help="StepCost fields to change, e.g. per_step_s=0.018")
    known, rest = own.parse_known_args(argv)
    args = parse_args(rest)
    cost = parse_step_cost(known.step_cost)
    _, levels = make_plan(args)
    service = cost.service_model()
    model_dir = write_tiny_model(Path(tempfile.mkdtemp(prefix="qf-sim-")))
    configs = [c for c in CONFIGS if c in args.configs.split(",")]
    rows: list[dict[str, Any]] = []
    for li, level in enumerate(levels):
        row: dict[str, Any] = {"programs_per_min": level.programs_per_min, "num_programs": len(level.programs)}
        bounds = [service.lower_bound_s(p) for p in level.programs]
        row["lower_bound_mean_jct_s"] = statistics.fmean(bounds)
        row["kv_capacity_bound_programs_per_min"] = kv_capacity_bound(
            level.programs, service, args.kv_blocks * KV_BLOCK_TOKENS
        )
        for config in configs:
            row[config] = summarize(simulate_level(args, config, level, li, cost, model_dir), args.drain_s, bounds)
        rows.append(row)
        parts = [f"{level.programs_per_min:>6.0f}/min n={len(level.programs)}"]
        for config in configs:
            s = row[config]
            parts.append(f"{config} {s['mean_jct_s']:6.1f}/{s['p95_jct_s']:6.1f}s inc {s['num_incomplete']} "
                         f"overdue {s['num_overdue']} "
                         f"done/min {s['completed_per_min']:.1f} "
                         f"hit {s['prefix_hit_rate']:.2f}"
                         + (f" (cpu {s['cpu_tier_hit_rate']:.2f})" if "cpu_tier_hit_rate" in s else "")
                         + f" pre {s['preemptions']} trend {s['jct_trend']:.2f}")
        print(" | ".join(parts), flush=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        args.out_dir / "sim.json",
        {**provenance(commit=args.commit),
         "model": f"{MODEL_NAME}, simulated (vLLM's scheduler on the CPU, modelled step time)",
         "step_cost": asdict(cost),
         "args": {k: str(v) for k, v in vars(args).items()}, "loads": rows,
         "goodput": goodput(rows, configs)},
    )


if __name__ == "__main__":
    main()
