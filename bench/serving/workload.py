"""Agent-program workloads for the serving benchmark: trace parsers, a calibrated generator,
Poisson arrivals. Pure (no vLLM, no torch); numbers in tokens and seconds.

A program is a sequence of turns. Turn k's prompt is the whole previous context (every earlier
prompt and output) plus ``num_new_tokens`` fresh tokens (the user message or tool result); the
model then writes ``num_output_tokens`` tokens, and the program runs a tool for ``tool_s``
seconds before its next turn (0 after the last turn).
"""

from __future__ import annotations

import ast
import csv
import json
import math
import random
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "traces"
VENDORED = Path(__file__).resolve().parent / "traces"
"""Copies that travel with the repository (the GPU machine has no ../shared): the TraceLab
replay CSV as is, and the SWE trajectories reduced to per-turn numbers (no message text)."""
TRACELAB_CSV = DATA / "tracelab" / "replay_multi_session_large.csv"
SWE_JSON = DATA / "continuum_swe" / "swe_smith_5traj_with_tool_timings.json"
TRACELAB_ROUNDS = DATA / "tracelab" / "derived_round_trace.jsonl"
VENDORED_TOOL_WAITS_CSV = VENDORED / "tracelab_tool_waits.csv"
VENDORED_TRACELAB_CSV = VENDORED / "tracelab_replay_multi_session_large.csv"
VENDORED_SWE_TURNS_CSV = VENDORED / "continuum_swe_turns.csv"
SWE_TURNS_FIELDS = ("program", "turn", "num_new_tokens", "num_output_tokens", "tool_s", "tool_name")
CHARS_PER_TOKEN = 4.0
"""Token estimate for the SWE messages when no tokenizer is given (about 4 characters a token)."""


@dataclass(frozen=True)
class TurnSpec:
    """One LLM turn of a program and the tool pause that follows it."""

    num_new_tokens: int
    """Fresh prompt tokens appended to the context before this turn."""
    num_output_tokens: int
    """Tokens the model generates."""
    tool_s: float
    """Tool time after this turn, seconds (0 after the last turn)."""
    tool_name: str | None = None
    """The tool run after this turn."""


@dataclass(frozen=True)
class ProgramSpec:
    """An agent program: an id, where it came from, its turns."""

    program_id: str
    source: str
    turns: tuple[TurnSpec, ...]

    @property
    def num_context_tokens(self) -> int:
        """Context at the end of the program."""
        return sum(t.num_new_tokens + t.num_output_tokens for t in self.turns)

    @property
    def tool_s(self) -> float:
        """Total tool time."""
        return sum(t.tool_s for t in self.turns)


def _finish(program_id: str, source: str, turns: list[TurnSpec], max_context: int) -> ProgramSpec | None:
    """Cut the program where its context would exceed ``max_context``; zero the last tool."""
    kept: list[TurnSpec] = []
    context = 0
    for turn in turns:
        context += turn.num_new_tokens + turn.num_output_tokens
        if context > max_context:
            break
        kept.append(turn)
    if not kept:
        return None
    last = kept[-1]
    kept[-1] = TurnSpec(last.num_new_tokens, last.num_output_tokens, 0.0, None)
    return ProgramSpec(program_id, source, tuple(kept))


def load_tracelab(path: Path | None = None, *, max_context: int = 16384) -> list[ProgramSpec]:
    """Programs of the TraceLab replay CSV (one per session_id, rounds in order)."""
    if path is None:
        path = TRACELAB_CSV if TRACELAB_CSV.exists() else VENDORED_TRACELAB_CSV
    sessions: dict[str, list[dict[str, str]]] = defaultdict(list)
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            sessions[row["session_id"]].append(row)
    programs: list[ProgramSpec] = []
    for session_id, rows in sorted(sessions.items(), key=lambda kv: int(kv[0])):
        rows.sort(key=lambda r: int(r["round_idx"]))
        turns = [
            TurnSpec(
                num_new_tokens=int(r["input_len"]),
                num_output_tokens=max(1, int(r["output_len"])),
                tool_s=int(r["tool_wait_after_ms"]) / 1000.0,
                tool_name="tracelab_tool",
            )
            for r in rows
        ]
        program = _finish(f"tracelab-{session_id}", "tracelab", turns, max_context)
        if program is not None:
            programs.append(program)
    return programs


def _approx_tokens(text: str) -> int:
    return max(1, math.ceil(len(text.encode("utf-8")) / CHARS_PER_TOKEN))


def _maybe_literal(value: object) -> object:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def load_swe(path: Path | None = None, *, max_context: int = 16384, count_tokens=None) -> list[ProgramSpec]:  # type: ignore[no-untyped-def]
    """Programs of the Continuum SWE trajectories: tokenized messages, measured tool times.

    ``count_tokens(text) -> int`` tokenizes; without it, about 4 UTF-8 bytes make a token.
    Without the trajectories file (GPU machine), the vendored per-turn table is read instead.
    """
    if path is None:
        if not SWE_JSON.exists() and count_tokens is None:
            return load_swe_turns(VENDORED_SWE_TURNS_CSV, max_context=max_context)
        path = SWE_JSON
    count = count_tokens or _approx_tokens
    programs: list[ProgramSpec] = []
    for index, trajectory in enumerate(json.loads(path.read_text())):
        messages = json.loads(trajectory["messages"])
        turns: list[TurnSpec] = []
        pending_new = 0
        for message in messages:
            role = message.get("role")
            text = str(message.get("content") or "")
            if role != "assistant":
                pending_new += count(text)
                continue
            calls: list[dict[str, Any]] = _maybe_literal(message.get("tool_calls")) or []  # type: ignore[assignment]
            call_text = "".join(str(c.get("function", {}).get("arguments", "")) for c in calls)
            tool_s = sum(float(c.get("execution_time_seconds") or 0.0) for c in calls)
            name = calls[0].get("function", {}).get("name") if calls else None
            turns.append(TurnSpec(max(1, pending_new), count(text + call_text), tool_s, name))
            pending_new = 0
        program = _finish(f"swe-{index}", "continuum_swe", turns, max_context)
        if program is not None:
            programs.append(program)
    return programs


@dataclass(frozen=True)
class ToolWait:
    """One measured tool wait of a real agent session: what the engine sees between two calls."""

    tool_name: str
    wait_s: float


def load_tool_waits(path: Path | None = None) -> tuple[list[ToolWait], int]:
    """Tool waits of real coding-agent sessions (TraceLab round traces) and how many lines were skipped.

    A round that ends in tool calls is followed by the session's next round, which opens with the
    tool results; the wait is the time from the round's last event (its last tool call) to the last
    tool result of the next round: what the serving engine sees between the two requests, parallel
    calls counted once. Rounds without tool calls (the user's turn comes next) are left out. Without
    timestamps the round's longest ``tool_wall_latency_ms`` stands in. Lines that do not parse are
    skipped and counted; no wait at all is an error. Without the trace (GPU machine), the vendored
    table written by :func:`write_tool_waits` is read.
    """
    if path is None:
        if not TRACELAB_ROUNDS.exists():
            return _read_tool_waits(VENDORED_TOOL_WAITS_CSV), 0
        path = TRACELAB_ROUNDS
    rounds: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    skipped = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rounds[str(row["session_id"])][int(row["round_index"])] = row
        except (ValueError, KeyError, TypeError):
            skipped += 1
    waits: list[ToolWait] = []
    for session in rounds.values():
        for index, row in sorted(session.items()):
            tools = row.get("tools") or []
            following = session.get(index + 1)
            if not isinstance(tools, list) or not tools or following is None:
                continue
            calls = [(t, _as_seconds_ms(t.get("tool_wall_latency_ms"))) for t in tools if isinstance(t, dict)]
            wait = _observed_wait(row, following)
            if wait is None:
                wait = max((latency for _, latency in calls if latency is not None), default=None)
            if wait is None:
                skipped += 1
                continue
            # Named after the call that took longest (parallel calls end with the slowest).
            slowest = max(calls, key=lambda call: call[1] or 0.0, default=({}, None))[0]
            waits.append(ToolWait(str(slowest.get("tool_name") or "tool"), wait))
    if not waits:
        raise ValueError(f"{path}: no tool wait found ({skipped} lines or rounds skipped)")
    return waits, skipped


def _observed_wait(row: dict[str, Any], following: dict[str, Any]) -> float | None:
    """Seconds from ``row``'s last event to the last tool result that opens ``following``."""
    ends = [_timestamp(e) for e in row.get("timing_events") or [] if isinstance(e, dict)]
    results = [_timestamp(e) for e in following.get("timing_events") or []
               if isinstance(e, dict) and e.get("event_type") == "tool_result"]
    ends_ok = [t for t in ends if t is not None]
    results_ok = [t for t in results if t is not None]
    if not ends_ok or not results_ok:
        return None
    return max(0.0, max(results_ok) - max(ends_ok))


def _timestamp(event: dict[str, Any]) -> float | None:
    try:
        return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return None


def _as_seconds_ms(value: Any) -> float | None:
    try:
        seconds = float(value) / 1000.0
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def write_tool_waits(waits: Sequence[ToolWait], path: Path) -> None:
    """Save measured tool waits (the vendored table)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("tool_name", "wait_s"))
        writer.writerows((w.tool_name, f"{w.wait_s:.3f}") for w in waits)


def _read_tool_waits(path: Path) -> list[ToolWait]:
    with path.open(newline="") as handle:
        return [ToolWait(row["tool_name"], float(row["wait_s"])) for row in csv.DictReader(handle)]


def write_swe_turns(programs: Sequence[ProgramSpec], path: Path) -> None:
    """Save SWE programs as per-turn numbers (the vendored table)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SWE_TURNS_FIELDS)
        for program in programs:
            for k, t in enumerate(program.turns):
                writer.writerow(
                    [program.program_id, k, t.num_new_tokens, t.num_output_tokens, repr(t.tool_s), t.tool_name or ""]
                )


def load_swe_turns(path: Path, *, max_context: int = 16384) -> list[ProgramSpec]:
    """Programs from the per-turn table written by :func:`write_swe_turns`."""
    turns: dict[str, list[TurnSpec]] = defaultdict(list)
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            turns[row["program"]].append(
                TurnSpec(
                    int(row["num_new_tokens"]),
                    int(row["num_output_tokens"]),
                    float(row["tool_s"]),
                    row["tool_name"] or None,
                )
            )
    programs = [_finish(pid, "continuum_swe", list(ts), max_context) for pid, ts in turns.items()]
    return [p for p in programs if p is not None]


@dataclass(frozen=True)
class LogNormal:
    """A log-normal fit (mu, sigma of the log)."""

    mu: float
    sigma: float

    @classmethod
    def fit(cls, values: Sequence[float]) -> LogNormal:
        logs = [math.log(v) for v in values if v > 0]
        if not logs:
            return cls(0.0, 0.0)
        mu = sum(logs) / len(logs)
        var = sum((x - mu) ** 2 for x in logs) / max(1, len(logs) - 1)
        return cls(mu, math.sqrt(var))

    def sample(self, rng: random.Random) -> float:
        return math.exp(rng.gauss(self.mu, self.sigma))


@dataclass(frozen=True)
class WorkloadFit:
    """Distributions fitted on real programs; drives :func:`synthesize`."""

    num_turns: tuple[int, ...]
    """Empirical turn counts (sampled with replacement)."""
    first_prompt: LogNormal
    new_tokens: LogNormal
    output_tokens: LogNormal
    tool_s: LogNormal
    """Body of the positive tool durations."""
    zero_tool_share: float
    """Share of tool pauses that are zero."""
    pareto_share: float = 0.1
    """Share of tool pauses drawn from the heavy Pareto tail instead."""
    pareto_alpha: float = 1.5
    """Tail index of that Pareto tail (heavy: infinite variance below 2)."""


def fit_workload(programs: Sequence[ProgramSpec]) -> WorkloadFit:
    """Fit turn counts, token lengths and tool durations of ``programs``."""
    tools = [t.tool_s for p in programs for t in p.turns[:-1]]
    return WorkloadFit(
        num_turns=tuple(len(p.turns) for p in programs),
        first_prompt=LogNormal.fit([p.turns[0].num_new_tokens for p in programs]),
        new_tokens=LogNormal.fit([t.num_new_tokens for p in programs for t in p.turns[1:]]),
        output_tokens=LogNormal.fit([t.num_output_tokens for p in programs for t in p.turns]),
        tool_s=LogNormal.fit([d for d in tools if d > 0]),
        zero_tool_share=sum(1 for d in tools if d <= 0) / max(1, len(tools)),
    )


def synthesize(
    fit: WorkloadFit,
    num_programs: int,
    *,
    seed: int,
    max_context: int = 16384,
    max_tool_s: float = 30.0,
) -> list[ProgramSpec]:
    """Programs drawn from ``fit``: empirical turn counts, log-normal lengths, heavy-tailed tools
    (capped at ``max_tool_s`` so one draw cannot stall a benchmark run)."""
    rng = random.Random(seed)
    body_median = math.exp(fit.tool_s.mu)
    programs: list[ProgramSpec] = []
    for index in range(num_programs):
        turns: list[TurnSpec] = []
        for k in range(rng.choice(fit.num_turns)):
            new = fit.first_prompt.sample(rng) if k == 0 else fit.new_tokens.sample(rng)
            out = fit.output_tokens.sample(rng)
            u = rng.random()
            if u < fit.zero_tool_share:
                tool = 0.0
            elif u < fit.zero_tool_share + fit.pareto_share:
                tool = body_median * rng.paretovariate(fit.pareto_alpha)
            else:
                tool = fit.tool_s.sample(rng)
            tool = min(tool, max_tool_s)
            turns.append(TurnSpec(max(1, round(new)), max(1, round(out)), tool, "synthetic_tool"))
        program = _finish(f"synthetic-{index}", "synthetic", turns, max_context)
        if program is not None:
            programs.append(program)
    return programs


TRACES = ("mixed", "swe")
"""'mixed': TraceLab + SWE + synthetic fitted on both; 'swe': the SWE trajectories + synthetic
programs fitted on them alone (many turns, long contexts: the programs Continuum targets)."""


def build_pool(*, seed: int, max_context: int, num_synthetic: int, count_tokens=None,  # type: ignore[no-untyped-def]
               trace: str = "mixed") -> list[ProgramSpec]:
    """The programs of ``trace`` (see :data:`TRACES`) and synthetic ones fitted on them, interleaved."""
    if trace not in TRACES:
        raise ValueError(f"unknown trace {trace!r}; expected one of {TRACES}")
    tracelab = load_tracelab(max_context=max_context) if trace == "mixed" else []
    swe = load_swe(max_context=max_context, count_tokens=count_tokens)
    synthetic = synthesize(fit_workload(tracelab + swe), num_synthetic, seed=seed, max_context=max_context)
    pool = tracelab + swe + synthetic
    random.Random(seed).shuffle(pool)
    return pool


def scale_programs(
    programs: Sequence[ProgramSpec],
    *,
    output_scale: float,
    tool_scale: float,
    max_tool_s: float,
    max_turns: int,
) -> list[ProgramSpec]:
    """Time compression for a short GPU run: shorter outputs and tool pauses, at most
    ``max_turns`` turns per program (the last kept turn then has no tool after it)."""
    out: list[ProgramSpec] = []
    for p in programs:
        turns = [
            TurnSpec(
                t.num_new_tokens,
                max(1, round(t.num_output_tokens * output_scale)),
                min(t.tool_s * tool_scale, max_tool_s),
                t.tool_name,
            )
            for t in p.turns[:max_turns]
        ]
        program = _finish(p.program_id, p.source, turns, max_context=1 << 30)
        if program is not None:
            out.append(program)
    return out


def poisson_arrivals(num_programs: int, programs_per_min: float, *, seed: int) -> list[float]:
    """Arrival offsets (seconds from the start) of a Poisson process at the given rate."""
    rng = random.Random(seed)
    rate_per_s = programs_per_min / 60.0
    t = 0.0
    out: list[float] = []
    for _ in range(num_programs):
        t += rng.expovariate(rate_per_s)
        out.append(t)
    return out


def window_arrivals(num_programs: int, window_s: float, *, seed: int) -> list[float]:
    """Arrival offsets of a Poisson process conditioned on ``num_programs`` arrivals in
    ``[0, window_s)``: sorted uniform points. Bursts stay, but every level's realized rate is its
    nominal rate (unconditioned draws of 90-112 arrivals ended anywhere from 42 to 54 s into a
    45 s window: realized rates 110-161/min for nominal 120-150/min, out of order)."""
    rng = random.Random(seed)
    return sorted(rng.uniform(0.0, window_s) for _ in range(num_programs))


@dataclass(frozen=True)
class ServiceModel:
    """Isolated service time of one turn: a + b * new prompt tokens + tpot * output tokens."""

    prefill_a_s: float
    prefill_b_s_per_token: float
    tpot_s: float

    def program_s(self, program: ProgramSpec) -> float:
        """Service time of the program alone on the engine with a perfect prefix cache."""
        return sum(
            self.prefill_a_s + self.prefill_b_s_per_token * t.num_new_tokens + self.tpot_s * t.num_output_tokens
            for t in program.turns
        )

    def lower_bound_s(self, program: ProgramSpec) -> float:
        """JCT lower bound: tool time plus isolated service time."""
        return program.tool_s + self.program_s(program)


KV_BLOCK_TOKENS = 16
"""Tokens per KV block (vLLM's default block size, the replay's and the simulator's)."""


def kv_token_seconds(program: ProgramSpec, service: ServiceModel) -> float:
    """The least KV residency a program needs, in token-seconds, whatever the scheduler.

    Each turn's context must be on the GPU while the turn is computed: the cached prefix (plus
    half the new tokens, on average) through its prefill, the prefix plus half the output
    through its decode, at the isolated speeds of ``service`` (a batched step is never faster).
    Tool waits count nothing: a context may leave the GPU during a tool call.
    """
    total, context = 0.0, 0
    for turn in program.turns:
        prefill_s = service.prefill_a_s + service.prefill_b_s_per_token * turn.num_new_tokens
        total += (context + turn.num_new_tokens / 2) * prefill_s
        context += turn.num_new_tokens
        total += (context + turn.num_output_tokens / 2) * service.tpot_s * turn.num_output_tokens
        context += turn.num_output_tokens
    return total


def kv_capacity_bound(programs: Sequence[ProgramSpec], service: ServiceModel, kv_tokens: int) -> float:
    """Programs per minute above which no scheduler keeps up with these programs in steady state
    on a KV cache of ``kv_tokens``: the arrivals' residency (rate x mean token-seconds, Little's
    law) cannot exceed the cache. An upper bound: batched steps run slower than isolated turns
    and contexts wait in tool calls, so the real limit is lower; a short burst above it can
    still drain within a level's horizon."""
    if not programs or kv_tokens <= 0:
        raise ValueError("kv_capacity_bound needs programs and a positive KV size")
    mean = statistics.fmean(kv_token_seconds(p, service) for p in programs)
    return 60.0 * kv_tokens / mean


def describe(programs: Sequence[ProgramSpec]) -> dict[str, float]:
    """Summary numbers of a pool (for the dry run and the results file)."""
    turns = [t for p in programs for t in p.turns]
    tools = sorted(t.tool_s for p in programs for t in p.turns[:-1])
    return {
        "num_programs": len(programs),
        "mean_turns": len(turns) / max(1, len(programs)),
        "mean_new_tokens": sum(t.num_new_tokens for t in turns) / max(1, len(turns)),
        "mean_output_tokens": sum(t.num_output_tokens for t in turns) / max(1, len(turns)),
        "mean_final_context": sum(p.num_context_tokens for p in programs) / max(1, len(programs)),
        "tool_p50_s": tools[len(tools) // 2] if tools else 0.0,
        "tool_p95_s": tools[int(len(tools) * 0.95)] if tools else 0.0,
        "tool_max_s": tools[-1] if tools else 0.0,
    }


SCENARIOS = ("bursty", "paper")
"""'bursty': the short, time-compressed programs of the earlier runs (outputs x0.15, at most 10
turns, tool pauses capped at 5 s, contexts under 12k). 'paper': programs at the Continuum paper's
scale (:func:`paper_programs`): 20-50 turns, 15k-60k-token final contexts, outputs and tool
waits as measured in the SWE trajectories, no cap on a tool wait."""


def paper_programs(
    base: Sequence[ProgramSpec],
    num_programs: int,
    *,
    seed: int,
    min_turns: int = 20,
    max_turns: int = 50,
    min_context: int = 15_000,
    max_context: int = 60_000,
    tool_waits: Sequence[ToolWait] | None = None,
) -> list[ProgramSpec]:
    """Programs at the paper's scale built from real trajectories ``base`` (the SWE ones).

    Each program takes one trajectory, a turn count drawn uniformly from
    ``[min_turns, max_turns]`` and a final context drawn log-uniformly from
    ``[min_context, max_context]``. Its turns repeat the trajectory's turns in order (as the
    paper repeats its traces 1x-5x to reach longer programs), with the trajectory's output
    lengths and tool waits as they are (no cap, no scaling); the new prompt tokens of every turn
    are scaled by one factor so that the final context is the drawn one (the first turn keeps
    its share: the task statement and repository context).

    ``tool_waits``: each turn's tool wait (and tool name) is drawn from these measured waits
    instead of the trajectory's own (a draw of its own, so turn counts and contexts stay the
    same as without).
    """
    if not base:
        raise ValueError("paper_programs needs at least one trajectory")
    rng = random.Random(seed)
    programs: list[ProgramSpec] = []
    for index in range(num_programs):
        source = base[index % len(base)]
        num_turns = rng.randint(min_turns, max_turns)
        target = math.exp(rng.uniform(math.log(min_context), math.log(max_context)))
        turns = [source.turns[k % len(source.turns)] for k in range(num_turns)]
        outputs = sum(t.num_output_tokens for t in turns)
        new = sum(t.num_new_tokens for t in turns)
        scale = max(0.05, (target - outputs) / max(1, new))
        scaled = [
            TurnSpec(max(1, round(t.num_new_tokens * scale)), t.num_output_tokens, t.tool_s, t.tool_name)
            for t in turns
        ]
        if tool_waits:
            draw = random.Random(f"{seed}/{index}/tool-waits")
            scaled = [TurnSpec(t.num_new_tokens, t.num_output_tokens, w.wait_s, w.tool_name)
                      for t, w in zip(scaled, (draw.choice(tool_waits) for _ in scaled), strict=True)]
        last = scaled[-1]
        scaled[-1] = TurnSpec(last.num_new_tokens, last.num_output_tokens, 0.0, None)
        programs.append(ProgramSpec(f"paper-{index}-{source.program_id}", f"paper:{source.source}", tuple(scaled)))
    return programs
