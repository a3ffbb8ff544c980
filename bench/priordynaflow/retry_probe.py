"""What makes a code-check retry right? A CPU look with the embedded (local) backend.

Runs the code-check roster's coder (first turn: temperature 0.1, seed 0, with the routing
instructions, as the workflow) on MBPP or HumanEval validation tasks, checks the examples the task
shows in the sandbox as the runner does, and for every task whose code fails them (or that has no
code) asks again in each retry mode of :attr:`WorkflowOptions.retry`, with the messages the
workflow builds for that turn (:func:`~workflows.priordynaflow.episode.start_turn`):

- ``turn``: the coder's ordinary turn after the runner's failure (its routing instructions, 0.1);
- ``fix``: the failure shown, no routing instructions, ``--retry-temperature``;
- ``fresh``: the task alone, no routing instructions, ``--retry-temperature``;
- ``fresh-marker``: the first turn's own messages again at ``--retry-temperature`` (not a mode).

Retries are sampled with the seeds the workflow gives the 1st, 2nd, ... retry (3, 5, ...;
``turn`` once). Each sample is scored on the shown example and on the hidden tests; one JSON line
per task goes to ``--out`` (written as it runs, so a run can stop at any task).

    python bench/priordynaflow/retry_probe.py --gguf /tmp/qwen/qwen.gguf --dataset mbpp --samples 3 \\
        --out bench/results/priordynaflow/issue22/retry-probe.jsonl

About a minute per task that fails on 2 cores (Qwen2.5-Coder-0.5B GGUF, ../shared/gpu/models.txt).
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
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.priordynaflow.run import _context, _runner, sandbox_tools  # noqa: E402
from orchestrator.llm.local import LocalClient, LocalConfig  # noqa: E402
from orchestrator.types import LLMRequest, Message, SamplingOptions  # noqa: E402
from workflows.priordynaflow.agents import get_roster  # noqa: E402
from workflows.priordynaflow.config import RouterConfig, WorkflowOptions  # noqa: E402
from workflows.priordynaflow.episode import Turn, check_reply, initial_state, start_turn  # noqa: E402
from workflows.priordynaflow.qtable import QTable  # noqa: E402
from workflows.priordynaflow.tasks import get_dataset, load_jsonl  # noqa: E402

MODES = ("turn", "fix", "fresh", "fresh-marker")
ROSTER = get_roster("code-check")


def turn_after(row: dict[str, Any], dataset: str, agent: str, path: list[str], notes: list[dict[str, str]],
               retry: str = "turn") -> Turn:
    """``agent``'s turn after ``path``, as the workflow plans it (cold table, the roster's router);
    a coder after the runner follows a failed check."""
    state = {**initial_state(row), "roster": ROSTER.name, "path": path, "notes": notes,
             "retry_of": "runner" if path[-1:] == ["runner"] else ""}
    return start_turn(state, roster=ROSTER, agent=agent, dataset=get_dataset(dataset), family=ROSTER.name,
                      table=QTable.empty(ROSTER.names, RouterConfig()),
                      config=RouterConfig(**ROSTER.router_defaults), rng=random.Random(0), retry=retry)


async def probe(args: argparse.Namespace) -> None:
    client = LocalClient(LocalConfig(gguf_path=args.gguf, model=Path(args.gguf).stem))
    run = _runner(_context(client, sandbox_tools(2)))
    ds = get_dataset(args.dataset)
    rows = load_jsonl(ROOT.parent / "shared" / "data" / args.dataset / "validate.jsonl")[: args.limit or None]

    async def sample(row: dict[str, Any], messages: tuple[Message, ...], temperature: float, seed: int
                     ) -> tuple[str, dict[str, Any]]:
        reply = await client.complete(LLMRequest(messages, SamplingOptions(
            max_tokens=args.max_tokens, temperature=temperature, seed=seed)))
        code = ds.extract(reply.text, row)
        program = ds.shown_examples(row, code) if code else None
        shown = (await run(program)) if program else None
        return reply.text, {
            "shown": None if shown is None else shown.passed, "hidden": await ds.score(row, code, run), "code": code,
            "output_tokens": reply.usage.output_tokens, "shown_output": shown.output[-1500:] if shown else "",
        }

    with open(args.out, "a") as out:
        for index, row in enumerate(rows):
            first_messages = turn_after(row, args.dataset, "coder", [], []).messages
            text, first = await sample(row, first_messages, 0.1, 0)
            record: dict[str, Any] = {"dataset": args.dataset, "index": index, "first": first}
            if first["shown"] is False or not first["code"]:
                coder_note = {"agent": "coder", "text": text, "observation": ""}
                runner = turn_after(row, args.dataset, "runner", ["coder"], [coder_note])
                verdict = check_reply(runner, False if first["code"] else None, answered=bool(first["code"]))
                notes = [coder_note, {"agent": "runner", "text": verdict, "observation": first["shown_output"]}]
                seeds = [3 + 2 * k for k in range(args.samples)]
                for mode in MODES:
                    messages = (first_messages if mode == "fresh-marker"
                                else turn_after(row, args.dataset, "coder", ["coder", "runner"], notes, mode).messages)
                    temps = [(0.1, 0)] if mode == "turn" else [(args.retry_temperature, s) for s in seeds]
                    record[mode] = [(await sample(row, messages, t, s))[1] for t, s in temps]
            for result in [record["first"], *(r for m in MODES for r in record.get(m, []))]:
                result["same_code"] = result is not record["first"] and result["code"] == first["code"]
                result.pop("shown_output")
            out.write(json.dumps(record) + "\n")
            out.flush()
            print(index, {k: [(r["shown"], r["hidden"]) for r in v] if isinstance(v, list) else
                          (v["shown"], v["hidden"]) if isinstance(v, dict) else v
                          for k, v in record.items() if k not in ("dataset", "index")}, flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gguf", required=True)
    p.add_argument("--dataset", choices=("mbpp", "humaneval"), default="mbpp")
    p.add_argument("--limit", type=int, default=0, help="the first N validation tasks (0: all)")
    p.add_argument("--samples", type=int, default=3, help="samples per retry mode (turn: one)")
    p.add_argument("--retry-temperature", type=float, default=WorkflowOptions.retry_temperature)
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--out", required=True, help="JSON lines, appended")
    asyncio.run(probe(p.parse_args(argv)))


if __name__ == "__main__":
    main()
