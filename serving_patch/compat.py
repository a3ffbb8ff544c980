"""The one place that knows which vLLM the plugin was written against.

The adapter overrides private ``Scheduler`` methods; their names and signatures changed between
vLLM releases (0.10 to 0.26), so any vLLM but 0.26.x is refused up front with a clear message
instead of failing in the middle of serving.
"""

from __future__ import annotations

import inspect
from typing import Any

from serving_patch.errors import UnsupportedVLLMError

SUPPORTED_SERIES = "0.26"
"""vLLM release series the scheduler hooks were written and tested against."""

#: Scheduler methods the mixin overrides or calls, with the parameters it relies on.
SCHEDULER_CONTRACT: dict[str, tuple[str, ...]] = {
    "add_request": ("request",),
    "schedule": (),
    "_free_request": ("request", "delay_free_blocks"),
    "_free_blocks": ("request",),
    "_free_request_blocks": ("request",),
    "_select_waiting_queue_for_scheduling": (),
    "reset_prefix_cache": (),
    "shutdown": (),
}


def check_vllm_version(version: str) -> None:
    """Raise :class:`UnsupportedVLLMError` unless ``version`` is in the 0.26.x series."""
    parts = version.split(".")
    if ".".join(parts[:2]) != SUPPORTED_SERIES or len(parts) < 3:
        raise UnsupportedVLLMError(
            f"the Continuum scheduler plugin supports vLLM {SUPPORTED_SERIES}.x only, found vLLM "
            f"{version}; install it with `pip install vllm==0.26.0` (extra `quotaflow[serve]`), "
            "or serve without the plugin (`quotaflow serve MODEL --no-patch`)"
        )


def check_scheduler_contract(scheduler_cls: type[Any]) -> None:
    """Raise :class:`UnsupportedVLLMError` if a hooked Scheduler method is missing or changed."""
    for name, params in SCHEDULER_CONTRACT.items():
        method = getattr(scheduler_cls, name, None)
        if method is None:
            raise UnsupportedVLLMError(
                f"vLLM's Scheduler has no method {name!r}; the plugin cannot hook it"
            )
        found = inspect.signature(method).parameters
        missing = [p for p in params if p not in found]
        if missing:
            raise UnsupportedVLLMError(
                f"vLLM's Scheduler.{name} lacks parameters {missing}; the plugin cannot hook it"
            )


def require_supported_vllm() -> str:
    """Import vLLM, check its version and the hooked contract; returns the version string."""
    import vllm
    from vllm.v1.core.kv_cache_manager import KVCacheManager
    from vllm.v1.core.sched.scheduler import Scheduler

    check_vllm_version(vllm.__version__)
    check_scheduler_contract(Scheduler)
    if "request" not in inspect.signature(KVCacheManager.allocate_slots).parameters:
        raise UnsupportedVLLMError("vLLM's KVCacheManager.allocate_slots changed its signature")
    return str(vllm.__version__)
