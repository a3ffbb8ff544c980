"""Start vLLM's OpenAI-compatible server with (or without) the Continuum scheduler plugin.

``serve`` replaces the current process (``exec``) with::

    python -m vllm.entrypoints.openai.api_server --model MODEL --enable-prompt-tokens-details \\
        --host 127.0.0.1 --scheduler-cls serving_patch.vllm_adapter.ContinuumAsyncScheduler \\
        --scheduling-policy priority [vLLM args...]

(``ContinuumScheduler`` when ``--no-async-scheduling`` is among the vLLM args). The server
listens on loopback unless the vLLM args name a ``--host`` (vLLM alone binds every interface,
and the OpenAI API has no authentication unless ``--api-key`` is given). The plugin's
configuration travels to the engine-core process as ``QUOTAFLOW_CONTINUUM_*`` variables, and
``PROMETHEUS_MULTIPROC_DIR`` is set to a fresh directory so the plugin's metrics, recorded in
the engine core, appear on the API server's ``/metrics``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import NoReturn

from serving_patch.compat import check_vllm_version
from serving_patch.config import ContinuumConfig
from serving_patch.errors import BadInputError, ConfigError

ASYNC_SCHEDULER = "serving_patch.vllm_adapter.ContinuumAsyncScheduler"
SYNC_SCHEDULER = "serving_patch.vllm_adapter.ContinuumScheduler"
_RESERVED_FLAGS = ("--scheduler-cls", "--scheduling-policy")
_OFFLOAD_FLAGS = ("--kv-offloading-size", "--kv-offloading-backend")
"""vLLM 0.26's native CPU offloading (vllm/engine/arg_utils.py, CacheConfig): a second KV tier
of ``--kv-offloading-size`` GiB in host memory, through vLLM's OffloadingConnector."""
_USAGE_DETAILS = "--enable-prompt-tokens-details"
"""vLLM reports cached prompt tokens in ``usage`` only with this flag; the unified cost prices
cached input from that report, so ``quotaflow serve`` always turns it on."""
_DEFAULT_HOST = "127.0.0.1"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def _given(flags: Sequence[str], vllm_args: Sequence[str]) -> bool:
    """Whether any of ``flags`` is among ``vllm_args`` (``--flag value`` or ``--flag=value``)."""
    return any(arg.split("=", 1)[0] in flags for arg in vllm_args)


def offload_args(kv_offload_gib: float | None, vllm_args: Sequence[str]) -> list[str]:
    """vLLM's flags for a CPU offloading tier of ``kv_offload_gib`` GiB (none when None)."""
    if kv_offload_gib is None:
        return []
    if kv_offload_gib <= 0:
        raise BadInputError("--kv-offload-gib", "a positive size in GiB", f"got {kv_offload_gib}")
    if _given(_OFFLOAD_FLAGS, vllm_args):
        raise BadInputError(
            "--kv-offload-gib", "either --kv-offload-gib or vLLM's own --kv-offloading-* flags", "both were given"
        )
    return ["--kv-offloading-size", f"{kv_offload_gib:g}", "--kv-offloading-backend", "native"]


def build_command(
    model: str, *, no_patch: bool, vllm_args: Sequence[str], python: str = sys.executable,
    kv_offload_gib: float | None = None,
) -> list[str]:
    """The server's argv."""
    args = list(vllm_args) + offload_args(kv_offload_gib, vllm_args)
    command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model]
    flags = {a.split("=", 1)[0] for a in args}
    if not flags & {_USAGE_DETAILS, "--no-enable-prompt-tokens-details"}:
        command.append(_USAGE_DETAILS)
    if "--host" not in flags:
        command += ["--host", _DEFAULT_HOST]
    if no_patch:
        return command + args
    for arg in args:
        if arg.split("=", 1)[0] in _RESERVED_FLAGS:
            raise BadInputError(
                f"vLLM argument {arg}",
                "no --scheduler-cls/--scheduling-policy with the plugin (it sets them)",
                "use --no-patch to choose them yourself",
            )
    scheduler = SYNC_SCHEDULER if "--no-async-scheduling" in args else ASYNC_SCHEDULER
    return [*command, "--scheduler-cls", scheduler, "--scheduling-policy", "priority", *args]


def build_env(
    config: ContinuumConfig, *, no_patch: bool, base_env: Mapping[str, str]
) -> dict[str, str]:
    """The server's environment: the plugin config, the import path, a metrics directory."""
    env = dict(base_env)
    if no_patch:
        return env
    env.update(config.to_env())
    paths = [str(_REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="quotaflow-prometheus-")
    return env


def admission_config(
    config: ContinuumConfig,
    *,
    admission: bool | None,
    headroom: float | None,
    idle_s: float | None,
    yield_s: float | None = None,
) -> ContinuumConfig:
    """``config`` with the admission options given on the command line (None: unchanged)."""
    changes: dict[str, object] = {}
    if yield_s is not None:
        changes["admission_yield_s"] = yield_s
    if admission is not None:
        changes["admission"] = admission
    if headroom is not None:
        changes["admission_headroom_fraction"] = headroom
    if idle_s is not None:
        changes["admission_idle_s"] = idle_s
    if not changes:
        return config
    try:
        return config.replace(**changes)
    except ValueError as exc:
        raise BadInputError(
            "--admission-*", "a headroom share in [0, 1), a positive idle time and a yield time >= 0", str(exc)
        ) from exc


def check_installed_vllm() -> str:
    """The installed vLLM version, refused unless 0.26.x (no vLLM import: stays fast)."""
    try:
        version = metadata.version("vllm")
    except metadata.PackageNotFoundError as exc:
        raise ConfigError(
            "vLLM is not installed; install it with `pip install 'quotaflow[serve]'` (vllm==0.26.0)"
        ) from exc
    check_vllm_version(version)
    return version


def _exec(argv: list[str], env: dict[str, str]) -> NoReturn:
    os.execvpe(argv[0], argv, env)


def serve(
    model: str,
    no_patch: bool = False,
    policy: str | None = None,
    vllm_args: Sequence[str] = (),
    *,
    config: ContinuumConfig | None = None,
    admission: bool | None = None,
    admission_headroom: float | None = None,
    admission_idle_s: float | None = None,
    kv_offload_gib: float | None = None,
    admission_yield_s: float | None = None,
    pin_with_offload: bool | None = None,
) -> NoReturn:
    """Replace this process with the vLLM server for ``model`` (plugin on unless ``no_patch``).

    ``policy`` picks the TTL rule ("fixed" or "utility"; None keeps the configuration's, fixed
    unless QUOTAFLOW_CONTINUUM_TTL_POLICY says otherwise); ``admission`` and its two knobs turn
    program-level admission control on (None keeps the configuration's); ``config`` overrides
    the rest. ``kv_offload_gib`` adds vLLM's native CPU offloading tier (also with ``no_patch``);
    ``pin_with_offload`` keeps the plugin's pins beside it (``ContinuumConfig.pin_with_offloading``).
    """
    if not no_patch:
        check_installed_vllm()
    base = config or ContinuumConfig.from_env()
    try:
        plugin_config = base if policy is None else base.replace(ttl_policy=policy)
    except ValueError as exc:
        raise BadInputError("--ttl-policy", "'utility' or 'fixed'", str(exc)) from exc
    plugin_config = admission_config(
        plugin_config, admission=admission, headroom=admission_headroom, idle_s=admission_idle_s,
        yield_s=admission_yield_s,
    )
    if no_patch and plugin_config.admission and admission:
        raise BadInputError("--admission", "the plugin (admission control is part of it)", "--no-patch was given")
    if pin_with_offload:
        if no_patch or (kv_offload_gib is None and not _given(("--kv-offloading-size",), vllm_args)):
            raise BadInputError("--pin-with-offload", "the plugin and a CPU tier (--kv-offload-gib)",
                                "--no-patch was given" if no_patch else "no CPU offloading tier")
        plugin_config = plugin_config.replace(pin_with_offloading=True)
    argv = build_command(model, no_patch=no_patch, vllm_args=vllm_args, kv_offload_gib=kv_offload_gib)
    env = build_env(plugin_config, no_patch=no_patch, base_env=os.environ)
    _exec(argv, env)
