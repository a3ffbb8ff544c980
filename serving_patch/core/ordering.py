"""The priority key handed to vLLM's priority queue (lower is served first).

vLLM orders waiting requests by ``(priority, arrival_time, request_id)`` and, under memory
pressure, preempts the running request with the largest ``(priority, arrival_time)``. Packing
Continuum's order into the integer gives, for free, program-level FCFS in both places:

    key = (user_priority, not pinned, program_rank)   lexicographic, packed into one int
"""

from __future__ import annotations

RANK_BITS = 40
"""Program ranks are below 2**40 (a trillion programs per engine lifetime)."""
MAX_USER_PRIORITY = 2**20
"""User priorities are clamped to [-2**20, 2**20]."""


def priority_key(*, user_priority: int, program_rank: int, pinned: bool) -> int:
    """Pack (user priority, pinned-first, program arrival rank) into vLLM's integer priority."""
    prio = max(-MAX_USER_PRIORITY, min(MAX_USER_PRIORITY, int(user_priority)))
    rank = program_rank % (1 << RANK_BITS)
    pinned_bit = 0 if pinned else 1
    return (prio << (RANK_BITS + 1)) + (pinned_bit << RANK_BITS) + rank
