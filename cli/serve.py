"""``quotaflow serve MODEL [--no-patch] [--ttl-policy fixed|utility] [--admission] [--kv-offload-gib N] [...]``.

The trailing arguments go to vLLM.

Registered by cli/main.py as::

    from cli import serve
    app.command("serve", context_settings=serve.CONTEXT_SETTINGS)(serve.serve_command)
"""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.errors import QuotaFlowError
from serving_patch.errors import ServingPatchError

CONTEXT_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True}
"""Unknown options and extra arguments pass through to vLLM."""


def serve_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name or local folder to serve.")],
    no_patch: Annotated[
        bool, typer.Option("--no-patch", help="Stock vLLM: no Continuum scheduler plugin.")
    ] = False,
    ttl_policy: Annotated[
        str | None,
        typer.Option("--ttl-policy", help="KV-cache TTL rule of the plugin: fixed (default) or utility."),
    ] = None,
    admission: Annotated[
        bool | None,
        typer.Option(
            "--admission/--no-admission",
            help="Program-level admission control: a new program waits while the admitted programs' "
            "working sets fill the KV cache, instead of evicting them.",
        ),
    ] = None,
    admission_headroom: Annotated[
        float | None,
        typer.Option("--admission-headroom", help="Share of the KV cache kept out of the admission budget (0.1)."),
    ] = None,
    admission_idle_s: Annotated[
        float | None,
        typer.Option("--admission-idle-s", help="An admitted program idle this long loses its reservation (120)."),
    ] = None,
    admission_yield_s: Annotated[
        float | None,
        typer.Option(
            "--admission-yield-s",
            help="While a program waits at the gate, an admitted program idle in a tool call this long "
            "gives up its reservation, latest-arrived first (2).",
        ),
    ] = None,
    kv_offload_gib: Annotated[
        float | None,
        typer.Option(
            "--kv-offload-gib",
            help="Offload KV blocks to a CPU tier of this many GiB (vLLM's native offloading; "
            "--kv-offloading-size N --kv-offloading-backend native). Also with --no-patch. vLLM 0.26.0's "
            "offloading can stop the engine under preemption (vllm-project/vllm#52170).",
        ),
    ] = None,
    pin_with_offload: Annotated[
        bool,
        typer.Option(
            "--pin-with-offload",
            help="Keep the plugin's KV-cache pins beside the --kv-offload-gib tier (without it a KV "
            "connector turns pinning off). Not yet measured on a GPU.",
        ),
    ] = False,
) -> None:
    """Serve MODEL with vLLM 0.26's OpenAI API and the Continuum KV-cache TTL plugin.

    Any further arguments go to vLLM unchanged, e.g. `--port 8000 --enforce-eager`. The server
    listens on 127.0.0.1 unless `--host` is given (e.g. `--host 0.0.0.0`).
    """
    from serving_patch.launcher import serve

    try:
        serve(
            model, no_patch=no_patch, policy=ttl_policy, vllm_args=list(ctx.args), admission=admission,
            admission_headroom=admission_headroom, admission_idle_s=admission_idle_s, kv_offload_gib=kv_offload_gib,
            admission_yield_s=admission_yield_s, pin_with_offload=pin_with_offload or None,
        )
    except (QuotaFlowError, ServingPatchError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from exc


app = typer.Typer(help="Serve a model with vLLM and the Continuum plugin.", pretty_exceptions_enable=False)
app.command("serve", context_settings=CONTEXT_SETTINGS)(serve_command)
