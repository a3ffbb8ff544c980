"""deploy/ against a real Prometheus: promtool accepts the config and the alert rules (and its unit
tests of them pass); a Prometheus on loopback, configured like deploy/prometheus/prometheus.yml
(1 s scrapes), scrapes `quotaflow metrics serve` while real runs write to its QUOTAFLOW_METRICS_DIR,
and, as its vllm job, vLLM's real scheduler with the Continuum plugin and vLLM's own stat logger
(tests/deploy/continuum_exporter.py); then every dashboard query and every alert expression is
evaluated through its HTTP API."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from orchestrator.tools.corpus import CorpusSource, build_corpus
from tests import extras
from tests.deploy.promql import (
    ALERTS,
    PROMETHEUS_CONFIG,
    ROOT,
    Query,
    alert_queries,
    alert_rules,
    dashboard_queries,
)

T = TypeVar("T")
WINDOW = "5m"  # Grafana's $__rate_interval here: it spans the whole test, so rates see every run
PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
# Without vLLM the exporter serves the plugin's metrics only: vllm:* queries are then evaluated, and
# their names checked against vLLM's source by test_compose, but cannot return data.
VLLM_SERVED = importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="module", autouse=True)
def _binaries() -> None:
    if PROMETHEUS is None or PROMTOOL is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus/promtool missing in CI: .ci/run must install the prometheus package")
        pytest.skip(extras.PROMETHEUS)


def _promtool(*args: str) -> str:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_accepts_the_config_and_its_alert_rules() -> None:
    checked = _promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert "SUCCESS: 1 rule files found" in checked and f"SUCCESS: {len(alert_rules())} rules found" in checked
    assert f"SUCCESS: {len(alert_rules())} rules found" in _promtool("check", "rules", str(ALERTS))


# Per alert: input series (1 m apart) under which it must fire, the labels it then carries, and series
# of a healthy system under which it must stay quiet.
_FIRING: dict[str, tuple[dict[str, str], dict[str, str], dict[str, str]]] = {
    "QuotaFlowPrefixCacheCollapse": (  # 10% hits at 2000 queries/s; healthy: 70%
        {"vllm:prefix_cache_queries_total": "0+120000x15", "vllm:prefix_cache_hits_total": "0+12000x15"},
        {},
        {"vllm:prefix_cache_queries_total": "0+120000x15", "vllm:prefix_cache_hits_total": "0+84000x15"}),
    "QuotaFlowPinsBrokenByMemoryPressure": (  # 1 forced release/s; healthy: 0.1/s
        {"quotaflow_continuum_pin_forced_releases_total": "0+60x15"}, {},
        {"quotaflow_continuum_pin_forced_releases_total": "0+6x15"}),
    "QuotaFlowVLLMDown": ({'up{job="vllm"}': "0x15"}, {"job": "vllm"}, {'up{job="vllm"}': "1x15"}),
    "QuotaFlowMetricsDown": ({'up{job="quotaflow"}': "0x15"}, {"job": "quotaflow"}, {'up{job="quotaflow"}': "1x15"}),
    "QuotaFlowErrors": (  # 0.2 errors/s; healthy: one a minute
        {'quotaflow_errors_total{component="llm",kind="EngineUnavailable"}': "0+12x15"},
        {"component": "llm", "kind": "EngineUnavailable"},
        {'quotaflow_errors_total{component="llm",kind="EngineUnavailable"}': "0+1x15"}),
}


def _expanded(text: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)


def test_each_alert_fires_when_its_condition_holds_and_stays_quiet_when_healthy(tmp_path: Path) -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert set(_FIRING) == set(rules), "every alert needs a firing and a healthy case here"
    tests = []
    for name, (firing, labels, healthy) in _FIRING.items():
        expected = {**labels, "severity": rules[name]["labels"]["severity"]}
        annotations = {k: _expanded(v, expected) for k, v in rules[name]["annotations"].items()}
        for series, alerts in ((firing, [{"exp_labels": expected, "exp_annotations": annotations}]), (healthy, [])):
            tests.append({"interval": "1m",
                          "input_series": [{"series": s, "values": v} for s, v in series.items()],
                          "alert_rule_test": [{"eval_time": "12m", "alertname": name, "exp_alerts": alerts}]})
    unit = tmp_path / "alerts_test.yml"
    unit.write_text(yaml.safe_dump({"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": tests}))
    assert "SUCCESS" in _promtool("test", "rules", str(unit))


# -- a live stack on loopback ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _poll(check: Callable[[], T | None], what: str, timeout_s: float = 60) -> T:
    """``check()``'s first truthy answer, asked every 0.2 s until ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = check()
        except OSError as exc:  # not listening yet
            answer, last = None, exc
        else:
            last = answer
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout_s:.0f} s; last answer: {last!r}")
        time.sleep(0.2)


@dataclass
class Stack:
    """Prometheus's HTTP API, with what the runs and the exporters left in it."""

    url: str

    def get(self, path: str, **params: str) -> dict[str, Any]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            body: dict[str, Any] = json.load(response)
        return body

    def targets_up(self) -> set[str]:
        """The jobs whose target answered its last scrape."""
        return {t["labels"]["job"] for t in self.get("/api/v1/targets")["data"]["activeTargets"] if t["health"] == "up"}

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result; a query Prometheus refuses fails the test with its error."""
        try:
            body = self.get("/api/v1/query", query=promql)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{promql}: {exc.read().decode()}") from None
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


def _run_quotaflow(env: dict[str, str], *args: str, code: int) -> None:
    done = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == code, done.stdout + done.stderr


def _runs(env: dict[str, str], home: Path) -> None:
    """Two runs that exercise every QuotaFlow series: a dataset of agents that search and answer, and
    a run paused on its token budget (a refusal, an error, a paused status)."""
    script = ["--backend", "scripted", "--script", str(home / "script.json")]
    _run_quotaflow(env, "run", "react", "--dataset", str(home / "questions.jsonl"), *script,
                   "--budget", "search=2,tokens=5000", "--json", code=0)
    _run_quotaflow(env, "run", "react", "--task", "Which city is the capital of Germany?", *script,
                   "--budget", "tokens=1", "--json", code=3)


def _home(home: Path) -> dict[str, str]:
    docs = home / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(d) for d in [
        {"title": "Paris", "text": "Paris is the capital of France."},
        {"title": "Berlin", "text": "Berlin is the capital of Germany."},
    ]))
    build_corpus(home / "corpus.db", [CorpusSource(docs, "documents")])
    (home / "script.json").write_text(json.dumps({"Paris is the capital": "answer: Paris",
                                                  ".*": "search: capital of France"}))
    (home / "questions.jsonl").write_text("".join(json.dumps({"question": q}) + "\n" for q in
                                                  ["Which city is the capital of France?", "France's capital?"]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUOTAFLOW_", "PROMETHEUS_"))}
    return {**env, "QUOTAFLOW_HOME": str(home), "QUOTAFLOW_CORPUS": str(home / "corpus.db"),
            "QUOTAFLOW_METRICS_DIR": str(home / "metrics")}


def _prometheus_config(tmp: Path, ports: dict[str, int]) -> Path:
    """deploy's config with loopback targets, 1 s scrapes and rule evaluation, the rules by path."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ALERTS)]
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("prometheus")
    env = _home(tmp)
    ports = {"quotaflow": _free_port(), "vllm": _free_port()}
    web = f"127.0.0.1:{_free_port()}"
    log = (tmp / "processes.log").open("w")
    commands = [
        [sys.executable, "-m", "cli.main", "metrics", "serve", "--port", str(ports["quotaflow"])],
        [sys.executable, "-m", "tests.deploy.continuum_exporter", str(ports["vllm"])],
        [str(PROMETHEUS), f"--config.file={_prometheus_config(tmp, ports)}", f"--web.listen-address={web}",
         f"--storage.tsdb.path={tmp / 'tsdb'}"],
    ]
    processes = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT) for c in commands]
    try:
        api = Stack(f"http://{web}")
        try:
            _poll(lambda: api.targets_up() == set(ports), "scrape target up")
            _runs(env, tmp)
            # A second round once Prometheus holds the first: every counter then has an increase to rate.
            _poll(lambda: api.query("quotaflow_budget_refusals_total"), "scrape of the first runs")
            _runs(env, tmp)
            _poll(lambda: api.query(f"increase(quotaflow_llm_calls_total[{WINDOW}]) > 0"),
                  "scrape of the second runs")
        except AssertionError as exc:
            log.flush()
            raise AssertionError(f"{exc}\n--- the exporters' and Prometheus's output:\n"
                                 f"{(tmp / 'processes.log').read_text()[-4000:]}") from None
        yield api
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
        log.close()


def _finite(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in result if math.isfinite(float(r["value"][1]))]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("query", dashboard_queries(), ids=lambda q: q.where)
def test_every_dashboard_query_returns_data(stack: Stack, query: Query) -> None:
    promql = query.promql(WINDOW)
    if query.is_vllm and not VLLM_SERVED:
        stack.query(promql)
        pytest.skip(extras.SERVE)
    result = _poll(lambda: _finite(stack.query(promql)), f"finite data for {query.where}: {promql}", 30)
    assert all(float(r["value"][1]) >= 0 for r in result), result


@pytest.mark.timeout(300)
@pytest.mark.parametrize("query", alert_queries(), ids=lambda q: q.where)
def test_every_alert_evaluates_and_the_series_it_watches_exist(stack: Stack, query: Query) -> None:
    stack.query(query.promql(WINDOW))  # empty while healthy (`x > threshold`), but never an error
    for selector in query.selectors():
        if VLLM_SERVED or not selector.startswith("vllm:"):
            _poll(lambda s=selector: stack.query(s), f"series {selector} of {query.where}", 30)


@pytest.mark.timeout(300)
def test_prometheus_loads_every_rule_and_evaluates_it_healthy(stack: Stack) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        rules = [r for g in stack.get("/api/v1/rules")["data"]["groups"] for r in g["rules"]]
        return rules if all(r["lastEvaluation"] > "2000" for r in rules) else None

    rules = _poll(evaluated, "evaluation of every rule")
    assert sorted(r["name"] for r in rules) == sorted(r["alert"] for r in alert_rules())
    assert [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
