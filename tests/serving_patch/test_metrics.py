"""The plugin's metrics cross the process boundary through prometheus multiprocess mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from serving_patch.metrics import COUNTERS, PREFIX

# Plays vLLM's engine-core process: its own interpreter, the launcher's environment.
ENGINE_SIDE = """
from serving_patch.core.controller import PluginCounters
from serving_patch.metrics import MetricsSink
sink = MetricsSink()
sink.sync(PluginCounters(pins_created=2, pin_hits=1, tokens_reused=64), num_pins=2, num_pinned_blocks=9)
sink.sync(PluginCounters(pins_created=3, pin_hits=1, expiries=1, tokens_reused=64), num_pins=1, num_pinned_blocks=5)
"""


def _scrape(folder: Path) -> str:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    return generate_latest(registry).decode()


def test_engine_process_metrics_reach_the_api_server_collector(tmp_path: Path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", ENGINE_SIDE], check=True, env=env, cwd=root, timeout=60)
    text = _scrape(tmp_path)
    assert f"{PREFIX}pins_created_total 3.0" in text
    assert f"{PREFIX}pin_expiries_total 1.0" in text
    assert f"{PREFIX}reused_tokens_total 64.0" in text
    assert f"{PREFIX}pins_active 1.0" in text
    assert f"{PREFIX}pinned_blocks 5.0" in text


def test_metric_names_follow_the_convention() -> None:
    names = [PREFIX + name for name, _ in COUNTERS.values()]
    assert len(set(names)) == len(names)
    assert all(n.startswith("quotaflow_continuum_") and not n.endswith("_total") for n in names)
