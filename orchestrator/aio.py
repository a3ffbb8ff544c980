"""Small asyncio helpers shared by workflows."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

__all__ = ["gather_limited"]


async def gather_limited(limit: int, thunks: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Await every thunk's result, at most ``limit`` (at least 1) at a time; results in order."""
    sem = asyncio.Semaphore(max(limit, 1))

    async def one(thunk: Callable[[], Awaitable[T]]) -> T:
        async with sem:
            return await thunk()

    return list(await asyncio.gather(*(one(t) for t in thunks)))
