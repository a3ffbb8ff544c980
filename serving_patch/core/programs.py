"""Program table: one entry per live agent program, keyed by the client's program id."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class ProgramState:
    """What the scheduler remembers about one program between its turns."""

    program_id: str
    """The client's program id."""
    rank: int
    """Arrival order of the program's first turn (0, 1, 2, ...): the program-FCFS key."""
    first_arrival_s: float
    """Clock time of the first turn's arrival."""
    program_arrival_time: float
    """The first turn's ``Request.arrival_time`` (vLLM's request clock): the queue-order key."""
    num_turns: int = 0
    """Turns seen so far (arrivals)."""
    num_in_flight: int = 0
    """Turns that arrived and have not finished yet."""
    last_departure_s: float | None = None
    """Clock time the last turn finished; None while the first turn is in flight."""
    pending_tool: str | None = None
    """Tool the program waits on since its last departure (from that turn's hints)."""
    last_seen_s: float = 0.0
    """Last arrival or departure: the idle clock for garbage collection."""


@dataclass(frozen=True)
class Arrival:
    """Result of recording a turn's arrival."""

    program: ProgramState
    """The program (created on its first turn)."""
    tool_name: str | None
    """The tool whose duration just ended, if the program was waiting on one."""
    tool_duration_s: float | None
    """Arrival minus the previous departure: one tool-duration sample; None on the first turn."""


class ProgramTable:
    """Programs by id with their rank and timing; bounded by idle GC and a hard size limit."""

    def __init__(self, *, idle_timeout_s: float, max_programs: int) -> None:
        self._idle_timeout_s = idle_timeout_s
        self._max_programs = max_programs
        self._programs: OrderedDict[str, ProgramState] = OrderedDict()
        self._next_rank = 0

    def __len__(self) -> int:
        return len(self._programs)

    def __contains__(self, program_id: object) -> bool:
        return program_id in self._programs

    def get(self, program_id: str) -> ProgramState | None:
        """The program's state, or None if unknown (never seen, finished or collected)."""
        return self._programs.get(program_id)

    def next_rank(self) -> int:
        """Take a fresh rank (also used for requests that belong to no program)."""
        rank = self._next_rank
        self._next_rank += 1
        return rank

    def on_arrival(self, program_id: str, now: float, *, arrival_time: float | None = None) -> Arrival:
        """Record a turn's arrival; returns the tool-duration sample it closes, if any.

        ``arrival_time`` is the request's own arrival time (vLLM's clock; default ``now``).
        """
        program = self._programs.get(program_id)
        tool_name: str | None = None
        duration: float | None = None
        if program is None:
            first = now if arrival_time is None else arrival_time
            program = ProgramState(program_id, self.next_rank(), now, first, last_seen_s=now)
            self._programs[program_id] = program
        elif program.last_departure_s is not None and program.num_in_flight == 0:
            tool_name = program.pending_tool
            duration = max(0.0, now - program.last_departure_s)
        program.num_turns += 1
        program.num_in_flight += 1
        program.pending_tool = None
        program.last_seen_s = now
        self._programs.move_to_end(program_id)
        return Arrival(program, tool_name, duration)

    def on_departure(self, program_id: str, now: float, *, tool_name: str | None) -> None:
        """Record that a turn left the engine and the program now runs ``tool_name``."""
        program = self._programs.get(program_id)
        if program is None:
            return
        program.num_in_flight = max(0, program.num_in_flight - 1)
        program.last_departure_s = now
        program.pending_tool = tool_name
        program.last_seen_s = now
        self._programs.move_to_end(program_id)

    def forget(self, program_id: str) -> ProgramState | None:
        """Drop a program (its last step finished)."""
        return self._programs.pop(program_id, None)

    def collect_idle(self, now: float, *, keep: set[str]) -> list[str]:
        """Drop programs idle longer than the timeout (and the oldest beyond the size limit).

        Programs with a turn in flight or listed in ``keep`` (they hold a pin) are never dropped.
        """
        removed: list[str] = []
        overflow = len(self._programs) - self._max_programs
        for program_id, program in list(self._programs.items()):
            idle = now - program.last_seen_s >= self._idle_timeout_s
            if not idle and overflow <= 0:
                # Ordered by last activity: everything after this is younger.
                break
            if program.num_in_flight > 0 or program_id in keep:
                continue
            del self._programs[program_id]
            removed.append(program_id)
            overflow -= 1
        return removed
