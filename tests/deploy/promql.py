"""What the deploy tests read from deploy/: the dashboard's and the alert rules' PromQL, the metric
names each one selects, and vLLM 0.26's metric names (read from its source, without importing vLLM)."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "quotaflow.json"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
COMPOSE = DEPLOY / "docker-compose.yml"

# Grafana's built-in range variables, as Grafana would expand them for a panel. One concrete
# window for all: wide enough to hold every sample of a short test, so rates are over real increases.
_GRAFANA_RANGES = re.compile(r"\$\{?__(rate_interval|interval|range)\}?")
# The series a query selects: our metrics, vLLM's, and Prometheus's own `up`.
_SELECTOR = re.compile(r"(?<![\w:])(quotaflow_\w+|vllm:[\w:]+|up)(?![\w:(])(\{[^}]*\})?")


@dataclass(frozen=True)
class Query:
    """One PromQL expression of the dashboard or of an alert rule."""

    where: str
    """The panel and refId, or the alert's name."""
    expr: str

    def promql(self, window: str) -> str:
        """The expression with Grafana's range variables replaced by ``window`` (e.g. ``5m``)."""
        return _GRAFANA_RANGES.sub(window, self.expr)

    def selectors(self) -> list[str]:
        """Each series selector in the expression, e.g. ``up{job="vllm"}``."""
        return [name + (labels or "") for name, labels in _SELECTOR.findall(self.expr)]

    def metric_names(self) -> set[str]:
        return {name for name, _ in _SELECTOR.findall(self.expr)}

    @property
    def is_vllm(self) -> bool:
        """Selects vLLM's own series, which only a running vLLM exports."""
        return any(name.startswith("vllm:") for name in self.metric_names())


def dashboard_queries() -> list[Query]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [Query(f"panel {panel['title']!r} {target['refId']}", target["expr"])
            for panel in dashboard["panels"] for target in panel.get("targets", ())]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alert_queries() -> list[Query]:
    return [Query(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]


def vllm_metric_names() -> set[str] | None:
    """The sample names vLLM 0.26's Prometheus logger exports (counters with ``_total``, histograms
    with ``_bucket``/``_sum``/``_count``), read from vllm/v1/metrics/loggers.py without importing
    vLLM; ``None`` when vLLM is not installed."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or spec.origin is None:
        return None
    source = Path(spec.origin).parent / "v1" / "metrics" / "loggers.py"
    suffixes = {"_counter_cls": ("_total",), "_gauge_cls": ("",), "_histogram_cls": ("_bucket", "_sum", "_count")}
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in suffixes):
            continue
        for keyword in node.keywords:
            if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                names.update(str(keyword.value.value) + s for s in suffixes[node.func.attr])
    return names
