"""Checks and conversions of command-line options shared by the ``quotaflow run`` commands: a bad
value fails with BadInputError (exit 2) before anything is stored or started."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from orchestrator.errors import BadInputError


def check_base_url(url: str) -> str:
    """``--base-url``: an http(s) URL with a host, e.g. http://localhost:8000/v1."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInputError(f"--base-url {url}", "an http(s) URL such as http://localhost:8000/v1")
    return url


def parse_set(pairs: list[str] | None) -> dict[str, str]:
    """``--set key=value`` items (split on the first ``=``; ``-`` in a key reads as ``_``) as
    ``key -> value text``; the workflow types the texts (``Workflow.parse_options``). A key given
    twice keeps its last value."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise BadInputError(f"--set {pair}", "key=value, e.g. --set max_turns=3 (quotaflow workflows show NAME "
                                "lists a workflow's options)")
        out[key] = value.strip()
    return out


def check_positive(option: str, value: int | None, *, zero: bool = False) -> None:
    """``value`` of ``option`` is at least 1 (at least 0 with ``zero``), or not given."""
    if value is not None and value < (0 if zero else 1):
        raise BadInputError(f"{option} {value}", "a number >= 0" if zero else "a number >= 1")


def backend_options(backend: str, base_url: list[str] | None, model: str | None,
                    script: Path | None, *, takes_script: bool = False) -> dict[str, Any]:
    """The client options the backend options of a run command give ``backend``; ``script`` is
    what a command with a ``--script`` option was given (its scripted backend needs one)."""
    opts: dict[str, Any] = {}
    if base_url:
        opts["base_urls"] = [check_base_url(u) for u in base_url]
    if model:
        opts["model"] = model
    if takes_script and backend == "scripted" and script is None:
        raise BadInputError("--backend scripted", "--script FILE, a JSON list of the responses to give")
    if script is not None:
        try:
            opts["responses"] = json.loads(script.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadInputError(f"--script {script}", "a JSON list of responses", str(exc)) from exc
    return opts


def executor_options(executor: str, ray_address: str | None, workers: int | None,
                     dataset: object | None) -> dict[str, Any]:
    """``--executor`` and its options as the options of ``orchestrator.executors.create_executor``
    (empty for the local executor)."""
    from orchestrator.executors import EXECUTORS

    if executor not in EXECUTORS:
        raise BadInputError(f"--executor {executor}", "one of " + ", ".join(EXECUTORS))
    check_positive("--workers", workers)
    if executor == "local":
        for option, value in (("--ray-address", ray_address), ("--workers", workers)):
            if value is not None:
                raise BadInputError(option, "--executor ray with it (it is an option of the Ray executor)")
        return {}
    if dataset is None:
        raise BadInputError(f"--executor {executor}", "--dataset FILE (one --task runs in this process)")
    return {"address": ray_address, "num_workers": workers}
