"""A chaos trial's victim: runs one case of :mod:`bench.chaos.cases` until it is SIGKILLed.

    python -m bench.chaos.worker CASE DB_URL HOME BACKEND KILL_AT [BASE_URL]

``KILL_AT`` ``n``: on the scripted backend the rule kills this process while it handles the n-th
request; on the loopback backend (``BASE_URL``) the server in the campaign's process does.
``checkpoint:n``: this process kills itself when LangGraph goes to save its n-th checkpoint,
after printing how many requests the scripted provider answered.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

from bench.chaos.campaign import SENT, Provider, die_at_checkpoint, run_kwargs, runtime
from bench.chaos.cases import load_cases


def main(name: str, db_url: str, home: str, backend: str, kill_at: str, base_url: str = "") -> None:
    case = load_cases()[name]
    provider = Provider(case.rule)
    at, _, n = kill_at.rpartition(":")
    if backend == "scripted" and not at:
        provider.on_request = lambda count: os.kill(os.getpid(), signal.SIGKILL) if count == int(n) else None
    server = SimpleNamespace(base_url=base_url, model="loopback-model")

    async def go() -> None:
        async with runtime(db_url, Path(home), provider) as rt:
            if at == "checkpoint":
                die_at_checkpoint(rt.checkpointer, int(n), lambda: print(f"{SENT}{provider.count}", flush=True))
            await rt.run(case.workflow, case.task, **run_kwargs(case, backend, server))

    asyncio.run(go())


if __name__ == "__main__":
    main(*sys.argv[1:7])
