"""Stands in for `quotaflow serve`'s /metrics in the Prometheus test.

With vLLM 0.26 installed: vLLM's real scheduler with the Continuum plugin (``ContinuumScheduler``,
on CPU over a fake KV cache, as tests/serving_patch drive it), serving multi-turn agent programs
whose every turn extends the last; each step's scheduler and iteration stats go to vLLM's own
``PrometheusStatLogger``. So /metrics carries the real vllm:* series beside the plugin's
quotaflow_continuum_* ones, computed by the code a server runs. Without vLLM: the plugin's
``MetricsSink`` alone, fed growing counters.

    python -m tests.deploy.continuum_exporter PORT
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server

NUM_PROGRAMS = 4
MAX_PROMPT_TOKENS = 900  # a program starts over past this (the fake KV cache holds 1024 tokens)


def serve_vllm(port: int, stop: threading.Event) -> None:
    from vllm.v1.metrics.loggers import PrometheusStatLogger
    from vllm.v1.metrics.stats import IterationStats

    from bench.serving.sim import make_scheduler, write_tiny_model
    from serving_patch.vllm_adapter import ContinuumScheduler
    from tests.serving_patch.vllm_harness import Driver, tokens

    model_dir = write_tiny_model(Path(tempfile.mkdtemp()) / "model")
    scheduler = make_scheduler(model_dir, ContinuumScheduler)
    logger = PrometheusStatLogger(scheduler.vllm_config, engine_indexes=[0])
    start_http_server(port, addr="127.0.0.1")
    update = scheduler.update_from_output

    def update_and_record(*args: Any, **kwargs: Any) -> Any:
        # What vLLM's engine core does with each step's outputs: its stats go to the stat loggers.
        outputs = update(*args, **kwargs)
        iteration = IterationStats()
        iteration.num_preempted_reqs = len(args[0].preempted_req_ids)
        for output in outputs.values():
            logger.record(scheduler_stats=output.scheduler_stats, iteration_stats=iteration, engine_idx=0)
        return outputs

    scheduler.update_from_output = update_and_record
    driver = Driver(scheduler)
    turns = dict.fromkeys(range(NUM_PROGRAMS), 0)

    def start(program: int) -> None:
        turn = turns[program]
        request_id = f"p{program}t{turn}"
        previous = f"p{program}t{turn - 1}"
        if turn and len(driver.turns[previous].request.all_token_ids) < MAX_PROMPT_TOKENS:
            prompt = driver.next_prompt(previous, 24, seed=program * 1000 + turn)
        else:
            prompt = tokens(program * 100 + turn, 48)
        driver.add(request_id, prompt, 8, {"program_id": f"P{program}", "turn": turn, "tool_name": "search"})

    for program in turns:
        start(program)
    while not stop.wait(0.02):
        driver.step()
        for program, turn in turns.items():
            if driver.finished(f"p{program}t{turn}"):
                turns[program] = turn + 1
                start(program)


def serve_plugin_sink(port: int, stop: threading.Event) -> None:
    from serving_patch.core.controller import PluginCounters
    from serving_patch.metrics import MetricsSink

    sink = MetricsSink()
    counters = PluginCounters()
    start_http_server(port, addr="127.0.0.1")
    while not stop.wait(0.2):
        counters = replace(counters, pins_created=counters.pins_created + 2, pin_hits=counters.pin_hits + 1,
                           handoffs=counters.handoffs + 1, expiries=counters.expiries + 1,
                           forced_releases=counters.forced_releases + 1, pins_refused=counters.pins_refused + 1,
                           tokens_reused=counters.tokens_reused + 300)
        sink.sync(counters, num_pins=3, num_pinned_blocks=48)


if __name__ == "__main__":
    serve = serve_vllm if importlib.util.find_spec("vllm") is not None else serve_plugin_sink
    serve(int(sys.argv[1]), threading.Event())
