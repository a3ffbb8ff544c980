"""Pin table: KV blocks of a finished turn held for its program until expiry or hand-off."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Pin:
    """One pinned turn: its blocks stay allocated under ``request_id``."""

    program_id: str
    """Program the pinned turn belongs to (at most one pin per program)."""
    request_id: str
    """The finished request whose blocks are held."""
    program_rank: int
    """Program arrival rank: victims under pressure are chosen latest-arrival first."""
    num_blocks: int
    """KV blocks the pin holds."""
    num_tokens: int
    """Tokens of the pinned turn (prompt plus output)."""
    pinned_at_s: float
    """Clock time the pin was taken."""
    expires_at_s: float
    """Clock time after which the pin is released unless claimed."""
    claimed_by: str | None = None
    """Request id of the program's next turn once it arrived: a claimed pin does not expire."""


class PinTable:
    """At most one pin per program; expiry, claims and victim order."""

    def __init__(self) -> None:
        self._by_program: dict[str, Pin] = {}

    def __len__(self) -> int:
        return len(self._by_program)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._by_program.values()))

    @property
    def num_blocks(self) -> int:
        """Blocks held by all pins."""
        return sum(pin.num_blocks for pin in self._by_program.values())

    def get(self, program_id: str) -> Pin | None:
        """The program's pin, if any."""
        return self._by_program.get(program_id)

    def add(self, pin: Pin) -> Pin | None:
        """Store ``pin``; returns the program's previous pin, which the caller must release."""
        previous = self._by_program.pop(pin.program_id, None)
        self._by_program[pin.program_id] = pin
        return previous

    def pop(self, program_id: str) -> Pin | None:
        """Remove and return the program's pin."""
        return self._by_program.pop(program_id, None)

    def claim(self, program_id: str, request_id: str) -> Pin | None:
        """The program's next turn arrived: keep the pin until that turn is admitted."""
        pin = self._by_program.get(program_id)
        if pin is not None:
            pin.claimed_by = request_id
        return pin

    def unclaim(self, request_id: str) -> None:
        """The claiming turn left without being admitted (aborted): expiry applies again."""
        for pin in self._by_program.values():
            if pin.claimed_by == request_id:
                pin.claimed_by = None

    def expired(self, now: float) -> list[Pin]:
        """Unclaimed pins whose expiry has passed (not removed)."""
        return [
            pin
            for pin in self._by_program.values()
            if pin.claimed_by is None and pin.expires_at_s <= now
        ]

    def victims(self, *, exclude_program: str | None = None, min_rank: int | None = None) -> list[Pin]:
        """Pins in release order under memory pressure: latest program arrival first.

        ``exclude_program`` protects the requester's own pin (its blocks are the hit being used);
        ``min_rank`` keeps only programs that arrived after the requester's program.
        """
        pins = [
            pin
            for pin in self._by_program.values()
            if pin.program_id != exclude_program and (min_rank is None or pin.program_rank > min_rank)
        ]
        # Unclaimed pins go first within the order: nobody is waiting to use them.
        pins.sort(key=lambda pin: (pin.claimed_by is None, pin.program_rank), reverse=True)
        return pins
