"""Every Prometheus metric QuotaFlow exports, defined once.

Names carry the ``quotaflow_`` prefix and a unit suffix; counters end in ``_total``. Labels are
bounded sets (workflow, status, tool, token kind, resource, backend): never a run or program id.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from orchestrator.settings import metrics_dir

if TYPE_CHECKING:
    from budget.ledger import Charge
    from orchestrator.types import Usage

# Multiprocess mode must be chosen before prometheus_client is first imported in the process.
_SHARED_DIR = metrics_dir()
if _SHARED_DIR is not None:
    os.makedirs(_SHARED_DIR, exist_ok=True)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", _SHARED_DIR)

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

RUNS = Counter("quotaflow_runs_total", "Runs that reached a status", ["workflow", "status"])
RUNS_ACTIVE = Gauge("quotaflow_runs_active", "Runs executing", ["workflow"], multiprocess_mode="livesum")
LLM_CALLS = Counter("quotaflow_llm_calls_total", "LLM calls by backend and outcome", ["backend", "outcome"])
LLM_TOKENS = Counter("quotaflow_llm_tokens_total", "LLM tokens by kind", ["backend", "kind"])
LLM_LATENCY = Histogram(
    "quotaflow_llm_latency_seconds", "Wall time of one LLM call", ["backend"], buckets=_LATENCY_BUCKETS
)
TOOL_CALLS = Counter("quotaflow_tool_calls_total", "Tool calls by tool and outcome", ["tool", "outcome"])
TOOL_DURATION = Histogram(
    "quotaflow_tool_duration_seconds", "Wall time of one tool call", ["tool"], buckets=_LATENCY_BUCKETS
)
BUDGET_SPENT = Counter("quotaflow_budget_spent_total", "Budget spent, in each resource's unit", ["resource"])
BUDGET_REMAINING = Gauge(
    "quotaflow_budget_remaining", "Remaining budget of the most recently updated scope per resource", ["resource"],
    multiprocess_mode="mostrecent",
)
BUDGET_REFUSALS = Counter("quotaflow_budget_refusals_total", "Calls refused by the ledger", ["resource"])
BUDGET_OVERRUNS = Counter(
    "quotaflow_budget_overrun_total", "Settled calls that used more than they reserved (a misbehaving backend)",
    ["resource"],
)
ERRORS = Counter("quotaflow_errors_total", "Errors by component", ["component", "kind"])
COST_USD = Counter("quotaflow_cost_usd_total", "Unified cost (tokens and tool calls) in dollars", ["workflow"])

ALL_METRIC_NAMES: tuple[str, ...] = (
    "quotaflow_runs_total",
    "quotaflow_runs_active",
    "quotaflow_llm_calls_total",
    "quotaflow_llm_tokens_total",
    "quotaflow_llm_latency_seconds",
    "quotaflow_tool_calls_total",
    "quotaflow_tool_duration_seconds",
    "quotaflow_budget_spent_total",
    "quotaflow_budget_remaining",
    "quotaflow_budget_refusals_total",
    "quotaflow_budget_overrun_total",
    "quotaflow_errors_total",
    "quotaflow_cost_usd_total",
)


def observe_llm_call(backend: str, workflow: str, latency_s: float, usage: Usage, cost_usd: float) -> None:
    """One completed LLM call."""
    LLM_CALLS.labels(backend, "ok").inc()
    LLM_LATENCY.labels(backend).observe(latency_s)
    for kind, n in (("input", usage.input_tokens), ("cached_input", usage.cached_input_tokens),
                    ("output", usage.output_tokens), ("reasoning", usage.reasoning_tokens)):
        if n:
            LLM_TOKENS.labels(backend, kind).inc(n)
    COST_USD.labels(workflow).inc(cost_usd)


def observe_tool_call(tool: str, workflow: str, is_error: bool, duration_s: float, cost_usd: float) -> None:
    """One dispatched tool call."""
    TOOL_CALLS.labels(tool, "error" if is_error else "ok").inc()
    TOOL_DURATION.labels(tool).observe(duration_s)
    COST_USD.labels(workflow).inc(cost_usd)


def observe_spend(charges: Iterable[Charge]) -> None:
    """What a settled call spent in its run's scope, per resource."""
    for c in charges:
        if c.amount and c.scope.startswith("run:"):
            BUDGET_SPENT.labels(c.resource).inc(c.amount)


def serve(port: int, addr: str = "127.0.0.1", registry: CollectorRegistry | None = None) -> tuple[object, object]:
    """Expose ``/metrics`` over HTTP in a background thread; returns (server, thread).

    With ``QUOTAFLOW_METRICS_DIR`` set, the endpoint aggregates every QuotaFlow process writing
    to that directory (runs, workers), not only this one.
    """
    if registry is None:
        if _SHARED_DIR is not None:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=_SHARED_DIR)
        else:
            registry = REGISTRY
    return start_http_server(port, addr=addr, registry=registry)
