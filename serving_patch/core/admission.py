"""Program-level admission control: a new program waits rather than evict admitted ones.

Each admitted ("active") program reserves its working set: the KV blocks its context needs
(the largest context seen of its turns, prompt plus output), whether a turn of it runs, its
blocks are pinned during a tool call, or the pin was released and the context will have to be
prefilled again. A turn of a program that is not active (its first turn, or a program that lost
its reservation after idling) enters the gate; the gate admits programs in program order
(rank, lowest first, head of line only: a large program is not starved by smaller later ones)
while the reserved working sets plus the newcomer's stay within the budget (the KV cache less a
headroom for growth). When nothing is reserved the head is admitted whatever its size, so the
gate never deadlocks the engine.

Pure: block counts and ids in, decisions out; the caller owns the clock and the requests.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass


@dataclass
class _Waiting:
    rank: int
    program_id: str
    request_id: str
    demand_blocks: int


class AdmissionControl:
    """Reservations of the active programs and the program-ordered gate of the others."""

    def __init__(self, *, num_kv_blocks: int, block_size: int, headroom_fraction: float) -> None:
        if not 0.0 <= headroom_fraction < 1.0:
            raise ValueError(f"headroom_fraction={headroom_fraction}: expected a share in [0, 1)")
        self.block_size = block_size
        self.budget_blocks = max(1, int(num_kv_blocks * (1.0 - headroom_fraction)))
        self._reserved: dict[str, int] = {}
        self._gate: list[tuple[int, int, _Waiting]] = []
        self._gated_requests: dict[str, _Waiting] = {}
        self._counter = 0

    # ------------------------------------------------------------------ views
    def blocks_for(self, num_tokens: int) -> int:
        """Blocks a context of ``num_tokens`` tokens occupies."""
        return max(1, math.ceil(num_tokens / self.block_size))

    @property
    def reserved_blocks(self) -> int:
        """Blocks reserved by the active programs together."""
        return sum(self._reserved.values())

    @property
    def num_active(self) -> int:
        """Programs admitted and not finished."""
        return len(self._reserved)

    @property
    def num_waiting(self) -> int:
        """Requests held at the gate."""
        return len(self._gated_requests)

    def is_active(self, program_id: str) -> bool:
        """Whether the program holds a reservation."""
        return program_id in self._reserved

    def reservation(self, program_id: str) -> int:
        """The program's reserved blocks (0 when not active)."""
        return self._reserved.get(program_id, 0)

    def active_programs(self) -> list[str]:
        """Active programs, in admission order."""
        return list(self._reserved)

    def _head(self) -> _Waiting | None:
        """The gate's first request still waiting (entries dropped while waiting are discarded)."""
        while self._gate:
            waiting = self._gate[0][2]
            if self._gated_requests.get(waiting.request_id) is waiting:
                return waiting
            heapq.heappop(self._gate)  # dropped (aborted) while waiting
        return None

    def shortfall(self) -> int:
        """Blocks the gate's first program lacks to be admitted now (0: it fits, or none waits)."""
        head = self._head()
        if head is None or head.program_id in self._reserved or not self._reserved:
            return 0
        return max(0, self.reserved_blocks + head.demand_blocks - self.budget_blocks)

    def is_waiting(self, request_id: str) -> bool:
        """Whether the request is held at the gate."""
        return request_id in self._gated_requests

    # ------------------------------------------------------------------ events
    def offer(self, program_id: str, *, rank: int, request_id: str, num_prompt_tokens: int) -> list[str]:
        """A turn of ``program_id`` arrived; returns the requests that may go to the engine now.

        A turn of an active program always goes (its working set is reserved; its growth is
        recorded). Otherwise the turn enters the gate, and the gate admits what fits in program
        order (the new turn, and possibly earlier gated ones: see :meth:`release`).
        """
        demand = self.blocks_for(num_prompt_tokens)
        if program_id in self._reserved:
            self._reserved[program_id] = max(self._reserved[program_id], demand)
            return [request_id]
        waiting = _Waiting(rank, program_id, request_id, demand)
        self._counter += 1
        heapq.heappush(self._gate, (rank, self._counter, waiting))
        self._gated_requests[request_id] = waiting
        return self.release()

    def release(self) -> list[str]:
        """Admit gated requests in program order while they fit; returns their request ids."""
        released: list[str] = []
        while (waiting := self._head()) is not None:
            reserved = self.reserved_blocks
            current = self._reserved.get(waiting.program_id)
            if current is None and reserved > 0 and reserved + waiting.demand_blocks > self.budget_blocks:
                break
            heapq.heappop(self._gate)
            del self._gated_requests[waiting.request_id]
            self._reserved[waiting.program_id] = max(current or 0, waiting.demand_blocks)
            released.append(waiting.request_id)
        return released

    def observe(self, program_id: str, num_tokens: int) -> None:
        """The program's context reached ``num_tokens`` (a turn finished): grow its reservation."""
        if program_id in self._reserved:
            self._reserved[program_id] = max(self._reserved[program_id], self.blocks_for(num_tokens))

    def finish(self, program_id: str) -> bool:
        """The program ended or lost its reservation; True if it held one."""
        return self._reserved.pop(program_id, None) is not None

    def drop(self, request_id: str) -> bool:
        """A gated request left (aborted) before it was admitted; True if it was gated."""
        return self._gated_requests.pop(request_id, None) is not None

    def drop_reservations(self) -> int:
        """Forget every reservation (gated requests stay, in order); returns how many there were."""
        count = len(self._reserved)
        self._reserved.clear()
        return count
