"""The order of waiting requests under ``--scheduling-policy priority`` (lowest key first).

Stock vLLM orders by ``Request.__lt__`` = ``(priority, arrival_time, request_id)``. The plugin
keeps the user's ``priority`` as it is (other readers see it) and orders by a key it owns:

    (priority, not pinned, program_arrival_time, arrival_time, request_id)

- ``program_arrival_time`` is the arrival time of the program's first turn: program-level FCFS,
  so a program's later turn does not queue behind programs that started after it.
- ``pinned`` marks a turn whose program holds a pin: it goes first, so a pin is handed to its
  next turn instead of blocking the queue head (Continuum's rule).
- A request without hints is a program of one request that is never pinned:
  ``(priority, 1, arrival_time, arrival_time, request_id)`` orders such requests among
  themselves exactly as stock vLLM does.

Times are on vLLM's request clock (``Request.arrival_time``), so keys of requests with and
without hints compare.
"""

from __future__ import annotations

OrderKey = tuple[int, int, float, float, str]
"""``(priority, not pinned, program_arrival_time, arrival_time, request_id)``."""


def order_key(
    *,
    priority: int,
    arrival_time: float,
    request_id: str,
    program_arrival_time: float | None = None,
    pinned: bool = False,
) -> OrderKey:
    """The queue key of one request (``program_arrival_time`` None: a request without hints)."""
    program_time = arrival_time if program_arrival_time is None else program_arrival_time
    return (priority, 0 if pinned else 1, program_time, arrival_time, request_id)
