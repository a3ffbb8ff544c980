"""Which endpoint a request goes to: program affinity by rendezvous hashing, round-robin otherwise.

Pure policy: no I/O, no clock. All turns of one program reach the same replica (the one that
holds its KV cache); the choice depends only on the endpoint URLs and the program id, so two
client instances, two processes or two machines agree. Rendezvous (highest random weight)
hashing moves only about 1/n of the programs when an endpoint is added or removed.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence


def affinity_score(endpoint: str, program_id: str) -> int:
    """A stable 64-bit score of ``(endpoint, program_id)``; the highest score wins."""
    digest = hashlib.blake2b(f"{endpoint}\x00{program_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank_endpoints(endpoints: Sequence[str], program_id: str) -> list[int]:
    """Endpoint indices for ``program_id``, best first (the fail-over order)."""
    return sorted(range(len(endpoints)), key=lambda i: affinity_score(endpoints[i], program_id), reverse=True)


class EndpointRouter:
    """Orders endpoints for one request: by program affinity, or round-robin without a program."""

    def __init__(self, endpoints: Sequence[str]) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        self.endpoints = tuple(endpoints)
        self._next = itertools.count()

    def order(self, program_id: str | None) -> list[int]:
        """Indices to try in turn: the first is where the request goes, the rest are fail-overs."""
        n = len(self.endpoints)
        if program_id is None:
            start = next(self._next) % n
            return [(start + k) % n for k in range(n)]
        return rank_endpoints(self.endpoints, program_id)
