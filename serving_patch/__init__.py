"""Continuum (KV-cache TTL + program-level FCFS) as a vLLM 0.26 scheduler plugin.

- :mod:`serving_patch.core`         pure policies (no vLLM import), unit-tested in milliseconds
- :mod:`serving_patch.config`       typed plugin config; the only reader of QUOTAFLOW_CONTINUUM_*
- :mod:`serving_patch.vllm_adapter` ``ContinuumScheduler`` / ``ContinuumAsyncScheduler`` (imports vLLM)
- :mod:`serving_patch.compat`       the vLLM version and hook contract check
- :mod:`serving_patch.metrics`      Prometheus metrics (``quotaflow_continuum_*``)
- :mod:`serving_patch.launcher`     ``serve()``: exec vLLM's OpenAI server with the plugin
- :mod:`serving_patch.errors`       the plugin's exceptions (with the CLI's exit codes)

Importing this package imports neither vLLM nor torch, nor any other QuotaFlow package: the
runtime depends on it for the hint contract (:mod:`serving_patch.core.hints`), never the reverse.
"""
