"""A stand-in for vLLM's /metrics in the Prometheus test: the Continuum plugin's own metrics
(serving_patch.metrics, the sink the vLLM adapter syncs every scheduler step), fed counters that
grow as a busy server's would. vLLM's own vllm:* series are checked by name, not served here.

    python tests/deploy/continuum_exporter.py PORT
"""

from __future__ import annotations

import sys
import threading
from dataclasses import replace

from prometheus_client import start_http_server

from serving_patch.core.controller import PluginCounters
from serving_patch.metrics import MetricsSink


def main(port: int) -> None:
    sink = MetricsSink()
    counters = PluginCounters()
    start_http_server(port, addr="127.0.0.1")
    tick = threading.Event()
    while not tick.wait(0.2):
        counters = replace(counters, pins_created=counters.pins_created + 2, pin_hits=counters.pin_hits + 1,
                           handoffs=counters.handoffs + 1, expiries=counters.expiries + 1,
                           forced_releases=counters.forced_releases + 1, pins_refused=counters.pins_refused + 1,
                           tokens_reused=counters.tokens_reused + 300)
        sink.sync(counters, num_pins=3, num_pinned_blocks=48)


if __name__ == "__main__":
    main(int(sys.argv[1]))
