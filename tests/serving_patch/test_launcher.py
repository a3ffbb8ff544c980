"""The launcher's command and environment, and the `serve` CLI (exec replaced by a recorder)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from typer.testing import CliRunner

from serving_patch import launcher
from serving_patch.config import ContinuumConfig
from serving_patch.errors import BadInputError
from tests import extras


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    calls: dict[str, Any] = {}

    def fake_exec(argv: list[str], env: dict[str, str]) -> None:
        calls["argv"], calls["env"] = argv, env

    monkeypatch.setattr(launcher, "_exec", fake_exec)
    monkeypatch.setattr(launcher, "check_installed_vllm", lambda: "0.26.0")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    return calls


def test_serve_execs_vllm_with_the_async_plugin_and_config(recorded: dict[str, Any]) -> None:
    launcher.serve("Qwen/Qwen2.5-Coder-0.5B-Instruct", False, "fixed", ["--port", "8001"])
    argv, env = recorded["argv"], recorded["env"]
    assert argv[1:] == [
        "-m", "vllm.entrypoints.openai.api_server", "--model", "Qwen/Qwen2.5-Coder-0.5B-Instruct",
        "--enable-prompt-tokens-details",  # cached-input tokens in usage: the unified cost needs them
        "--host", "127.0.0.1",  # loopback unless --host is given (vLLM alone binds every interface)
        "--scheduler-cls", launcher.ASYNC_SCHEDULER, "--scheduling-policy", "priority",
        "--port", "8001",
    ]
    assert ContinuumConfig.from_env(env).ttl_policy == "fixed"
    assert os.path.isdir(env["PROMETHEUS_MULTIPROC_DIR"])
    assert str(launcher._REPO_ROOT) in env["PYTHONPATH"].split(os.pathsep)


def test_sync_class_with_no_async_scheduling_and_stock_with_no_patch(recorded: dict[str, Any]) -> None:
    launcher.serve("m", False, "utility", ["--no-async-scheduling"])
    assert launcher.SYNC_SCHEDULER in recorded["argv"]
    launcher.serve("m", True, "utility", ["--scheduling-policy", "fcfs"])
    assert "--scheduler-cls" not in recorded["argv"]
    assert "--enable-prompt-tokens-details" in recorded["argv"]  # stock too: cost needs cached tokens
    launcher.serve("m", True, "utility", ["--no-enable-prompt-tokens-details"])
    assert "--enable-prompt-tokens-details" not in recorded["argv"]  # the user's choice wins
    assert not any(k.startswith("QUOTAFLOW_CONTINUUM_") for k in recorded["env"] if k not in os.environ)


def test_server_binds_loopback_unless_a_host_is_given() -> None:
    for no_patch in (False, True):
        argv = launcher.build_command("m", no_patch=no_patch, vllm_args=["--port", "8001"])
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
        for given in (["--host", "0.0.0.0"], ["--host=0.0.0.0"]):
            argv = launcher.build_command("m", no_patch=no_patch, vllm_args=given)
            assert "127.0.0.1" not in argv and argv[-len(given):] == given


def test_plugin_refuses_conflicting_scheduler_flags(recorded: dict[str, Any]) -> None:
    with pytest.raises(BadInputError, match="--scheduler-cls"):
        launcher.serve("m", False, "utility", ["--scheduler-cls=x.Y"])
    with pytest.raises(BadInputError, match="--ttl-policy"):
        launcher.serve("m", False, "lru", [])


def test_launcher_refuses_other_vllm_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    from serving_patch.compat import UnsupportedVLLMError

    monkeypatch.setattr(launcher.metadata, "version", lambda name: "0.25.1")
    with pytest.raises(UnsupportedVLLMError, match=r"0\.26\.x only"):
        launcher.check_installed_vllm()


def test_cli_passes_extra_args_through(recorded: dict[str, Any]) -> None:
    from cli.serve import app

    result = CliRunner().invoke(app, ["my-model", "--ttl-policy", "fixed", "--port", "9000", "--enforce-eager"])
    assert result.exit_code == 0, result.output
    assert recorded["argv"][-3:] == ["--port", "9000", "--enforce-eager"]
    assert ContinuumConfig.from_env(recorded["env"]).ttl_policy == "fixed"
    bad = CliRunner().invoke(app, ["my-model", "--ttl-policy", "lru"])
    assert bad.exit_code == 2 and "--ttl-policy" in bad.output
    conflict = CliRunner().invoke(app, ["my-model", "--scheduler-cls", "x.Y"])
    assert conflict.exit_code == 2 and "--no-patch" in conflict.output


def test_cli_exits_2_on_an_unsupported_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.serve import app

    monkeypatch.setattr(launcher.metadata, "version", lambda name: "0.25.1")
    monkeypatch.setattr(launcher, "_exec", lambda argv, env: pytest.fail("must not start vLLM"))
    result = CliRunner().invoke(app, ["my-model"])
    assert result.exit_code == 2 and "0.26.x only" in result.output


def test_cli_default_policy_is_fixed_unless_the_environment_names_one(
    recorded: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.serve import app

    monkeypatch.delenv("QUOTAFLOW_CONTINUUM_TTL_POLICY", raising=False)
    assert CliRunner().invoke(app, ["my-model"]).exit_code == 0
    assert ContinuumConfig.from_env(recorded["env"]).ttl_policy == "fixed"
    # No flag: an operator's QUOTAFLOW_CONTINUUM_TTL_POLICY is kept, not overwritten by a default.
    monkeypatch.setenv("QUOTAFLOW_CONTINUUM_TTL_POLICY", "utility")
    assert CliRunner().invoke(app, ["my-model"]).exit_code == 0
    assert ContinuumConfig.from_env(recorded["env"]).ttl_policy == "utility"
    # The flag wins over the environment.
    assert CliRunner().invoke(app, ["my-model", "--ttl-policy", "fixed"]).exit_code == 0
    assert ContinuumConfig.from_env(recorded["env"]).ttl_policy == "fixed"


@pytest.mark.vllm
def test_vllm_026_parser_accepts_the_usage_details_flag() -> None:
    # The real vLLM 0.26 frontend parser (CPU import): the flag the launcher adds must exist there.
    pytest.importorskip("vllm", reason=extras.SERVE)
    from vllm.entrypoints.openai.cli_args import FrontendArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FrontendArgs.add_cli_args(FlexibleArgumentParser())
    argv = launcher.build_command("m", no_patch=False, vllm_args=["--port", "8001"])
    known, _ = parser.parse_known_args(argv[3:])
    assert known.enable_prompt_tokens_details is True and known.port == 8001


def test_cli_admission_options_reach_the_engine_config(recorded: dict[str, Any]) -> None:
    from cli.serve import app

    result = CliRunner().invoke(
        app, ["my-model", "--admission", "--admission-headroom", "0.2", "--admission-idle-s", "90"]
    )
    assert result.exit_code == 0, result.output
    config = ContinuumConfig.from_env(recorded["env"])
    assert (config.admission, config.admission_headroom_fraction, config.admission_idle_s) == (True, 0.2, 90.0)
    assert CliRunner().invoke(app, ["my-model"]).exit_code == 0
    assert ContinuumConfig.from_env(recorded["env"]).admission is False
    bad = CliRunner().invoke(app, ["my-model", "--admission", "--admission-headroom", "1.5"])
    assert bad.exit_code == 2 and "--admission" in bad.output
    stock = CliRunner().invoke(app, ["my-model", "--no-patch", "--admission"])
    assert stock.exit_code == 2 and "--no-patch" in stock.output
    assert CliRunner().invoke(app, ["my-model", "--admission", "--admission-yield-s", "5"]).exit_code == 0
    assert ContinuumConfig.from_env(recorded["env"]).admission_yield_s == 5.0
    negative = CliRunner().invoke(app, ["my-model", "--admission", "--admission-yield-s", "-1"])
    assert negative.exit_code == 2 and "yield" in negative.output


def test_cli_kv_offload_adds_vllms_native_offloading_flags(recorded: dict[str, Any]) -> None:
    from cli.serve import app

    for extra in ([], ["--no-patch"]):
        result = CliRunner().invoke(app, ["my-model", *extra, "--kv-offload-gib", "64", "--port", "9000"])
        assert result.exit_code == 0, result.output
        argv = recorded["argv"]
        assert argv[-6:] == ["--port", "9000", "--kv-offloading-size", "64", "--kv-offloading-backend", "native"]
    both = CliRunner().invoke(app, ["my-model", "--kv-offload-gib", "8", "--kv-offloading-size", "8"])
    assert both.exit_code == 2 and "--kv-offload-gib" in both.output
    assert CliRunner().invoke(app, ["my-model", "--kv-offload-gib", "0"]).exit_code == 2


def test_cli_pin_with_offload_needs_the_plugin_and_the_tier(recorded: dict[str, Any]) -> None:
    from cli.serve import app

    result = CliRunner().invoke(app, ["my-model", "--kv-offload-gib", "64", "--pin-with-offload"])
    assert result.exit_code == 0, result.output
    assert recorded["env"]["QUOTAFLOW_CONTINUUM_PIN_WITH_OFFLOADING"] == "1"
    CliRunner().invoke(app, ["my-model", "--kv-offload-gib", "64"])
    assert recorded["env"]["QUOTAFLOW_CONTINUUM_PIN_WITH_OFFLOADING"] == "0"
    # vLLM's own offloading flags make a tier too.
    own = CliRunner().invoke(app, ["my-model", "--pin-with-offload", "--kv-offloading-size", "8",
                                   "--kv-offloading-backend", "native"])
    assert own.exit_code == 0 and recorded["env"]["QUOTAFLOW_CONTINUUM_PIN_WITH_OFFLOADING"] == "1"
    for bad in (["--pin-with-offload"], ["--no-patch", "--kv-offload-gib", "64", "--pin-with-offload"]):
        result = CliRunner().invoke(app, ["my-model", *bad])
        assert result.exit_code == 2 and "--pin-with-offload" in result.output


@pytest.mark.vllm
def test_vllm_026_parser_accepts_the_offloading_flags() -> None:
    # vLLM 0.26's engine arguments (CPU import; building the whole parser needs a device): the
    # offload flags the launcher adds, and the backend it names.
    pytest.importorskip("vllm", reason=extras.SERVE)
    import inspect
    import typing

    from vllm.config.cache import KVOffloadingBackend
    from vllm.engine import arg_utils

    argv = launcher.build_command("m", no_patch=False, vllm_args=[], kv_offload_gib=32.0)
    source = inspect.getsource(arg_utils)
    for flag in ("--kv-offloading-size", "--kv-offloading-backend"):
        assert f'"{flag}"' in source and flag in argv
        assert flag.removeprefix("--").replace("-", "_") in arg_utils.EngineArgs.__dataclass_fields__
    assert argv[argv.index("--kv-offloading-backend") + 1] in typing.get_args(KVOffloadingBackend)
