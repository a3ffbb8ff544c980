"""Every Prometheus metric QuotaFlow exports, defined once.

Names carry the ``quotaflow_`` prefix and a unit suffix; counters end in ``_total``. Labels are
bounded sets (workflow, status, tool, token kind, resource, backend): never a run or program id.
"""

from __future__ import annotations

import os

from orchestrator.settings import metrics_dir

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
    "quotaflow_errors_total",
    "quotaflow_cost_usd_total",
)


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
