"""A real local Ray cluster for the Ray executor's tests: started by the test module that uses
the fixture (``from tests.ray_cluster import ray_cluster``), with explicit CPUs and no dashboard,
and shut down again (its worker processes with it) after the module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import extras

ROOT = Path(__file__).resolve().parents[1]
NUM_CPUS = 3
"""Logical CPUs of the test cluster: room for the 2 worker actors the tests start and a restart."""


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason=extras.RAY)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Workers import the test helpers (tests.orchestrator.ray_programs) as the driver does.
    ray.init(address="local", num_cpus=NUM_CPUS, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        yield ray
    finally:
        ray.shutdown()
