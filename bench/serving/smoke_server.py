"""GPU smoke test of the launcher: vLLM's OpenAI server with the plugin serves a real model,
a two-turn program reuses its pinned prefix, and the plugin's metrics appear on /metrics.

    python -m bench.serving.smoke_server /root/models/qwen05-hf --out-dir "$OUT/serving"

Starts the server exactly as ``quotaflow serve MODEL --enforce-eager`` would (same command and
environment, as a child process instead of exec), sends turn 1 of program ``smoke-1`` with
``vllm_xargs``, then turn 2 (the conversation plus a tool result, ``is_last_step=1``), scrapes
/metrics and writes smoke_server.json. Exit code 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from serving_patch.config import ContinuumConfig
from serving_patch.core.hints import ProgramHints
from serving_patch.launcher import build_command, build_env


def _request(url: str, body: dict[str, Any] | None = None, timeout: float = 60.0) -> str:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as response:
        return response.read().decode()


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (len(line) == len(name) or line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--out-dir", type=Path, default=Path("bench/results/serving"))
    parser.add_argument("--startup-timeout-s", type=float, default=300.0)
    args = parser.parse_args(argv)

    base = f"http://127.0.0.1:{args.port}"
    vllm_args = ["--port", str(args.port), "--enforce-eager", "--max-model-len", "4096"]
    argv_server = build_command(args.model, no_patch=False, vllm_args=vllm_args, python=sys.executable)
    env = build_env(ContinuumConfig(), no_patch=False, base_env=os.environ)
    server = subprocess.Popen(argv_server, env=env)
    result: dict[str, Any] = {"command": argv_server}
    try:
        started = time.time()
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"server exited with code {server.returncode}")
            try:
                _request(base + "/health", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.time() - started > args.startup_timeout_s:
                    raise
                time.sleep(2)
        result["startup_s"] = round(time.time() - started, 1)

        messages = [
            {"role": "system", "content": "You are a careful assistant. " * 40},
            {"role": "user", "content": "A shop sells pens at 3 dollars each. How much do 17 pens cost? "
             "Say which calculator expression you would run."},
        ]
        xargs = ProgramHints("smoke-1", turn=0, tool_name="calculator").to_xargs()
        first = json.loads(_request(base + "/v1/chat/completions", {
            "model": args.model, "messages": messages, "max_tokens": 48, "temperature": 0, "vllm_xargs": xargs,
        }))
        answer = first["choices"][0]["message"]["content"]
        messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": "Calculator: 3*17 = 51"}]
        xargs = ProgramHints("smoke-1", turn=1, is_last_step=True).to_xargs()
        second = json.loads(_request(base + "/v1/chat/completions", {
            "model": args.model, "messages": messages, "max_tokens": 32, "temperature": 0, "vllm_xargs": xargs,
        }))
        metrics = _request(base + "/metrics")
        result.update(
            turn1=answer,
            turn2=second["choices"][0]["message"]["content"],
            turn2_prompt_tokens=second["usage"]["prompt_tokens"],
            turn2_cached_tokens=(second["usage"].get("prompt_tokens_details") or {}).get("cached_tokens"),
            metrics={
                name: _metric(metrics, name)
                for name in (
                    "quotaflow_continuum_pins_created_total",
                    "quotaflow_continuum_pin_hits_total",
                    "quotaflow_continuum_reused_tokens_total",
                    "quotaflow_continuum_pins_active",
                    "vllm:prefix_cache_hits_total",
                    "vllm:prefix_cache_queries_total",
                )
            },
        )
        checks = {
            "pinned_turn_1": result["metrics"]["quotaflow_continuum_pins_created_total"] >= 1,
            "turn_2_hit_the_pin": result["metrics"]["quotaflow_continuum_pin_hits_total"] >= 1,
            "no_pin_left_after_last_step": result["metrics"]["quotaflow_continuum_pins_active"] == 0,
        }
        result["checks"] = checks
    except Exception as exc:  # the smoke report must say what failed
        result["error"] = repr(exc)
        checks = {"completed": False}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "smoke_server.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
