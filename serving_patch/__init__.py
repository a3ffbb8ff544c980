"""Continuum (KV-cache TTL + program-level FCFS) as a vLLM 0.26 scheduler plugin.

- :mod:`serving_patch.core`         pure policies (no vLLM import), unit-tested in milliseconds
- :mod:`serving_patch.config`       typed plugin config; the only reader of QUOTAFLOW_CONTINUUM_*
- :mod:`serving_patch.vllm_adapter` ``ContinuumScheduler`` / ``ContinuumAsyncScheduler`` (imports vLLM)
- :mod:`serving_patch.compat`       the vLLM version and hook contract check
- :mod:`serving_patch.metrics`      Prometheus metrics (``quotaflow_continuum_*``)
- :mod:`serving_patch.launcher`     ``serve()``: exec vLLM's OpenAI server with the plugin

Importing this package imports neither vLLM nor torch.
"""
