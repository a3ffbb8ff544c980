"""Metrics: a real /metrics endpoint shows what runs did; the dashboard queries only real metrics."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path

import httpx
import pytest

from orchestrator import metrics
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from tests import extras
from tests.orchestrator.fakes import fake_search_registry, searching_client

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "quotaflow.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_endpoint_reflects_a_run(tmp_path: Path) -> None:
    port = _free_port()
    server, _thread = metrics.serve(port)
    url = f"http://127.0.0.1:{port}/metrics"
    before = httpx.get(url).text

    async def go() -> None:
        rt = Runtime(Settings(db_url=f"sqlite:///{tmp_path / 'm.db'}"), tools=fake_search_registry(),
                     clients={"fake": searching_client(3)})
        await rt.run("react", {"question": "q"}, backend="fake", tools=["search"], budget="search=2")
        await rt.aclose()

    asyncio.run(go())
    after = httpx.get(url).text
    server.shutdown()  # type: ignore[attr-defined]

    def delta(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    assert delta("quotaflow_runs_total", workflow="react", status="succeeded") == 1
    assert delta("quotaflow_tool_calls_total", tool="search", outcome="ok") == 2
    assert delta("quotaflow_tool_calls_total", tool="search", outcome="refused") == 1
    assert delta("quotaflow_budget_refusals_total", resource="tool:search") == 1
    assert delta("quotaflow_llm_calls_total", backend="fake", outcome="ok") == 5  # 4 turns, 1 reading
    assert delta("quotaflow_llm_tokens_total", backend="fake", kind="input") > 0
    assert delta("quotaflow_llm_latency_seconds_count", backend="fake") == 5
    assert delta("quotaflow_budget_spent_total", resource="tool:search") == 2
    assert _sample(after, "quotaflow_budget_remaining", resource="tool:search") == 0  # 2 of 2 used
    # Bounded labels: no run or program id ever becomes a label.
    assert "run_id" not in after and "program_id" not in after


def _dashboard_metrics() -> set[str]:
    dash = json.loads(DASHBOARD.read_text())
    return {n for panel in dash["panels"] for target in panel["targets"] for n in _metric_names_in(target["expr"])}


def _metric_names_in(expr: str) -> set[str]:
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in re.findall(r"\b((?:quotaflow_|vllm:)[a-z_:]+)", expr)}


def _assert_exported(names: set[str], where: str) -> None:
    from serving_patch.metrics import COUNTERS, PREFIX

    continuum = {PREFIX + name + "_total" for name, _ in COUNTERS.values()}
    continuum |= {PREFIX + "pins_active", PREFIX + "pinned_blocks"}
    ours = set(metrics.ALL_METRIC_NAMES) | continuum
    vllm_names = _vllm_metric_names()
    for name in names:
        if name.startswith("vllm:"):
            base = name.removesuffix("_total")
            assert base in vllm_names, f"{where} queries {name}, which vLLM 0.26 does not export"
        else:
            assert name in ours, f"{where} queries {name}, which no QuotaFlow module defines"


def test_dashboard_queries_only_existing_metrics() -> None:
    names = _dashboard_metrics()
    assert len(names) > 15
    _assert_exported(names, "the dashboard")


def test_alert_rules_are_loaded_well_formed_and_query_existing_metrics() -> None:
    yaml = pytest.importorskip("yaml", reason=extras.DEV)

    prom = ROOT / "deploy" / "prometheus"
    assert "alerts.yml" in yaml.safe_load((prom / "prometheus.yml").read_text())["rule_files"]
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in compose["services"]["prometheus"]["volumes"]
    rules = [r for g in yaml.safe_load((prom / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {"QuotaFlowPrefixCacheCollapse", "QuotaFlowPinsBrokenByMemoryPressure",
                                          "QuotaFlowVLLMDown", "QuotaFlowErrors"}
    names: set[str] = set()
    for rule in rules:
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule
        assert rule["labels"]["severity"] in ("warning", "critical"), rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
        names |= _metric_names_in(rule["expr"])
    assert "vllm:prefix_cache_hits" in {n.removesuffix("_total") for n in names}
    _assert_exported(names, "an alert rule")


def _vllm_metric_names() -> set[str]:
    vllm = pytest.importorskip("vllm", reason=extras.SERVE)
    source = (Path(vllm.__file__).parent / "v1" / "metrics" / "loggers.py").read_text()
    return set(re.findall(r'"(vllm:[a-z_]+)"', source))


def test_prometheus_config_scrapes_quotaflow_and_vllm() -> None:
    text = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    assert "job_name: quotaflow" in text and "job_name: vllm" in text


def test_metrics_serve_aggregates_other_processes(tmp_path: Path) -> None:
    """With QUOTAFLOW_METRICS_DIR, `quotaflow metrics serve` shows what other processes' runs did."""
    import os
    import subprocess
    import sys

    shared = tmp_path / "metrics"
    env = {**os.environ, "QUOTAFLOW_METRICS_DIR": str(shared), "QUOTAFLOW_HOME": str(tmp_path),
           "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    script = tmp_path / "script.json"
    script.write_text('{".*": "answer: Paris"}')
    from orchestrator.tools.corpus import CorpusSource, build_corpus

    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"title": "Paris", "text": "Paris is the capital of France."}')
    build_corpus(tmp_path / "corpus.db", [CorpusSource(docs, "documents")])
    run = subprocess.run([sys.executable, "-m", "cli.main", "run", "react", "--task", "q", "--backend", "scripted",
                          "--script", str(script)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "metrics", "serve", "--port", str(port)], cwd=ROOT,
                              env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        assert "serving metrics on" in server.stderr.readline()  # printed once the socket is bound
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        server.kill()
        server.wait()
    assert _sample(scraped, "quotaflow_runs_total", workflow="react", status="succeeded") == 1
    assert _sample(scraped, "quotaflow_llm_calls_total", backend="scripted", outcome="ok") == 1
