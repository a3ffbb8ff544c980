"""A chaos trial's victim: runs one case of :mod:`bench.chaos.cases` until it is SIGKILLed.

    python -m bench.chaos.worker CASE DB_URL HOME BACKEND KILL_AT [BASE_URL]

On the scripted backend the rule kills this process while it handles the ``KILL_AT``-th request;
on the loopback backend (``BASE_URL``) the server in the campaign's process does.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

from bench.chaos.campaign import Provider, run_kwargs, runtime
from bench.chaos.cases import load_cases


def main(name: str, db_url: str, home: str, backend: str, kill_at: str, base_url: str = "") -> None:
    case = load_cases()[name]
    provider = Provider(case.rule)
    if backend == "scripted":
        provider.on_request = lambda n: os.kill(os.getpid(), signal.SIGKILL) if n == int(kill_at) else None
    server = SimpleNamespace(base_url=base_url, model="loopback-model")

    async def go() -> None:
        async with runtime(db_url, Path(home), provider) as rt:
            await rt.run(case.workflow, case.task, **run_kwargs(case, backend, server))

    asyncio.run(go())


if __name__ == "__main__":
    main(*sys.argv[1:7])
