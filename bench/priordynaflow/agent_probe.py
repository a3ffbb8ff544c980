"""One PriorDynaFlow agent alone on sampled GSM8K items, on the embedded (local) backend: a CPU
probe of what a role's prompt makes the model write, before a GPU run measures the roster.

    python bench/priordynaflow/agent_probe.py --agent programmer --items 24 --seed 1 \
        --gguf /path/to/qwen2.5-coder-0.5b.gguf --out bench/results/priordynaflow/issue22/probe

Each item's reply is taken as the workflow takes it (``episode.turn_solution``: the programmer's
answer from its program's output when the program ran cleanly, else from its prose), scored
by the dataset's scorer; writes ``<agent>.jsonl`` (one line per item) and ``<agent>-summary.json``
(commit, machine, model, date, right answers, output tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.common import provenance, write_json  # noqa: E402
from orchestrator.llm.local import LocalClient, LocalConfig  # noqa: E402
from orchestrator.tools.sandbox import python_tool  # noqa: E402
from orchestrator.types import LLMRequest, SamplingOptions  # noqa: E402
from workflows.priordynaflow.agents import get_roster  # noqa: E402
from workflows.priordynaflow.episode import MAX_OBSERVATION_CHARS, turn_solution  # noqa: E402
from workflows.priordynaflow.prompt import agent_messages  # noqa: E402
from workflows.priordynaflow.tasks import extract_code, get_dataset, load_jsonl  # noqa: E402


async def probe(args: argparse.Namespace) -> dict[str, Any]:
    rows = load_jsonl(args.dataset)
    rows = random.Random(args.seed).sample(rows, min(args.items, len(rows)))
    client = LocalClient(LocalConfig(gguf_path=args.gguf, model=args.model))
    python, dataset, roster = python_tool(), get_dataset("gsm8k"), get_roster("math")
    role = roster.get(args.agent)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    right, tokens = 0, 0
    with (out / f"{args.agent}.jsonl").open("w") as lines:
        for row in rows:
            messages = agent_messages(roster, args.agent, dataset, row, path=(args.agent,), candidates=(), notes=[],
                                      marker=False)
            greedy = SamplingOptions(max_tokens=args.max_tokens, temperature=0.0)
            reply = await client.complete(LLMRequest(messages=messages, sampling=greedy))
            code = extract_code(reply.text) if role.tools else None
            ran = await python.fn({"code": code}) if code else None
            output, ran_ok = (ran.content[-MAX_OBSERVATION_CHARS:], not ran.is_error) if ran else ("", None)
            solution, _ = turn_solution(role, dataset, row, reply.text, output, ran_ok)
            ok = await dataset.score(row, solution, None)  # type: ignore[arg-type]  # math scorers run nothing
            right += ok
            tokens += reply.usage.output_tokens
            lines.write(json.dumps({"gold": row["answer"], "solution": solution, "right": ok,
                                    "finish": reply.finish_reason, "output_tokens": reply.usage.output_tokens,
                                    "program_output": ran.content[:200] if ran else "",
                                    "reply_end": reply.text[-300:]}) + "\n")
    summary = {**provenance(), "model": args.model, "agent": args.agent, "dataset": args.dataset,
               "seed": args.seed, "items": len(rows), "right": right,
               "mean_output_tokens": tokens / max(len(rows), 1)}
    write_json(out / f"{args.agent}-summary.json", summary)
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agent", default="programmer", help="a math roster agent (solver, programmer, ...)")
    p.add_argument("--items", type=int, default=24)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dataset", default=str(ROOT.parent / "shared" / "data" / "gsm8k" / "validate.jsonl"))
    p.add_argument("--gguf", required=True, help="GGUF weights for the local backend")
    p.add_argument("--model", default="qwen2.5-coder-0.5b")
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--out", required=True)
    summary = asyncio.run(probe(p.parse_args(argv)))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
