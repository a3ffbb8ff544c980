"""deploy/ without Docker: the compose stack, the Prometheus config and Grafana's provisioning agree
with each other (service names, ports, mounted files), and every query names metrics that exist."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from orchestrator.metrics import ALL_METRIC_NAMES
from serving_patch.metrics import COUNTERS, PREFIX
from tests import extras
from tests.deploy.promql import (
    COMPOSE,
    DEPLOY,
    PROMETHEUS_CONFIG,
    ROOT,
    Query,
    alert_queries,
    dashboard_queries,
    vllm_metric_names,
)


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _services() -> dict[str, Any]:
    return _compose()["services"]


def _container_ports(service: dict[str, Any]) -> set[int]:
    """The ports a service's container offers the compose network (`expose`, and the container side of `ports`)."""
    ports = {int(str(p)) for p in service.get("expose", ())}
    ports |= {int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in service.get("ports", ())}
    return ports


def _listen_port(service: dict[str, Any]) -> int | None:
    """The port a service's command tells it to listen on (`--port N`), if it says."""
    command = [str(c) for c in service.get("command", ())]
    return int(command[command.index("--port") + 1]) if "--port" in command else None


def _mounted(service: dict[str, Any], container_path: str) -> list[PurePosixPath]:
    """The files of deploy/ a bind mount of ``service`` puts at ``container_path`` (a file or folder)."""
    wanted = PurePosixPath(container_path)
    found = []
    for volume in service.get("volumes", ()):
        source, target = re.sub(r":(ro|rw)$", "", str(volume)).rsplit(":", 1)  # a source may hold ${VAR:-x}
        if not source.startswith("."):
            continue  # a named volume: nothing of the repository
        target_path = PurePosixPath(target)
        if wanted == target_path or target_path in wanted.parents:
            found.append(PurePosixPath(source) / wanted.relative_to(target_path))
        elif wanted in target_path.parents:  # a file mounted inside the wanted folder
            found.append(PurePosixPath(source))
    return found


def test_every_scrape_target_is_a_compose_service_listening_on_that_port() -> None:
    services = _services()
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert {t.split(":")[0] for t in targets} == {"quotaflow", "vllm"}
    for target in targets:
        host, port = target.rsplit(":", 1)
        assert host in services, f"{target}: no compose service {host!r}"
        assert int(port) in _container_ports(services[host]), f"{target}: {host} does not expose {port}"
        assert _listen_port(services[host]) == int(port), f"{target}: {host}'s command listens elsewhere"


def test_the_exporter_and_the_runs_share_one_metrics_dir() -> None:
    exporter = _services()["quotaflow"]
    assert exporter["command"][:2] == ["metrics", "serve"]
    assert "--addr" in exporter["command"] and "0.0.0.0" in exporter["command"]
    assert exporter["environment"]["QUOTAFLOW_METRICS_DIR"] in exporter["tmpfs"]


def test_vllm_runs_quotaflow_serve_on_a_reserved_gpu() -> None:
    vllm = _services()["vllm"]
    assert vllm["build"]["target"] == "serve"
    assert "ENTRYPOINT [\"quotaflow\", \"serve\"]" in (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert vllm["command"][1:3] == ["--host", "0.0.0.0"]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_images_build_from_the_dockerfile_with_what_it_copies() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    stages = set(re.findall(r"^FROM \S+ AS (\w+)$", dockerfile, re.M))
    for name, service in _services().items():
        if "build" in service:
            build = service["build"]
            assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile", name
            assert build["target"] in stages, name
    for copied in re.findall(r"^COPY (?!--)(\S+(?: \S+)*?) \S+$", dockerfile, re.M):
        for path in copied.split():
            assert (ROOT / path).exists(), f"the Dockerfile copies {path}, which the repository lacks"
            assert f"!{path}" in (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8"), path


def test_prometheus_gets_its_config_and_the_alert_rules_it_names() -> None:
    prometheus = _services()["prometheus"]
    config_arg = next(c for c in prometheus["command"] if c.startswith("--config.file="))
    config_path = PurePosixPath(config_arg.split("=", 1)[1])
    assert _mounted(prometheus, str(config_path)) == [PurePosixPath("./prometheus/prometheus.yml")]
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    for rule_file in config["rule_files"]:
        sources = _mounted(prometheus, str(config_path.parent / rule_file))
        assert sources and all((DEPLOY / s).is_file() for s in sources), rule_file


def test_grafana_provisioning_points_at_prometheus_and_the_dashboard() -> None:
    grafana = _services()["grafana"]
    provisioning = _mounted(grafana, "/etc/grafana/provisioning")
    assert provisioning == [PurePosixPath("./grafana/provisioning")]
    datasources = [d for f in sorted((DEPLOY / "grafana/provisioning/datasources").glob("*.yml"))
                   for d in yaml.safe_load(f.read_text(encoding="utf-8"))["datasources"]]
    assert [d["url"] for d in datasources] == ["http://prometheus:9090"]
    assert 9090 in _container_ports(_services()["prometheus"])
    scrape = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))["global"]["scrape_interval"]
    assert datasources[0]["jsonData"]["timeInterval"] == scrape  # what $__rate_interval is made of
    providers = [p for f in sorted((DEPLOY / "grafana/provisioning/dashboards").glob("*.yml"))
                 for p in yaml.safe_load(f.read_text(encoding="utf-8"))["providers"]]
    assert len(providers) == 1
    dashboards = _mounted(grafana, providers[0]["options"]["path"])
    assert dashboards == [PurePosixPath("./grafana/quotaflow.json")]
    assert (DEPLOY / dashboards[0]).is_file()


def _known_quotaflow_names() -> set[str]:
    histograms = {"quotaflow_llm_latency_seconds", "quotaflow_tool_duration_seconds"}
    names = {n + s for n in histograms for s in ("_bucket", "_sum", "_count")}
    names |= set(ALL_METRIC_NAMES) - histograms
    names |= {PREFIX + name + "_total" for name, _ in COUNTERS.values()}
    return names | {PREFIX + "pins_active", PREFIX + "pinned_blocks"}


@pytest.mark.parametrize("query", [*dashboard_queries(), *alert_queries()], ids=lambda q: q.where)
def test_every_quotaflow_name_in_a_query_is_exported(query: Query) -> None:
    names = {n for n in query.metric_names() if n.startswith("quotaflow_")}
    assert names <= _known_quotaflow_names(), f"{query.where}: {names - _known_quotaflow_names()}"


def test_every_vllm_name_in_a_query_is_one_vllm_0_26_exports() -> None:
    exported = vllm_metric_names()
    if exported is None:
        pytest.skip(extras.SERVE)
    assert "vllm:prefix_cache_hits_total" in exported and "vllm:kv_cache_usage_perc" in exported
    used = {(q.where, n) for q in [*dashboard_queries(), *alert_queries()] for n in q.metric_names()
            if n.startswith("vllm:")}
    assert len(used) >= 6
    assert [f"{where}: {name}" for where, name in sorted(used) if name not in exported] == []


def test_the_serving_panels_and_alerts_cover_the_plugin_and_vllm() -> None:
    queries = [*dashboard_queries(), *alert_queries()]
    assert sum(q.is_vllm for q in queries) >= 5
    assert any("quotaflow_continuum_" in q.expr for q in queries)
