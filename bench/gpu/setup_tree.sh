# Sourced by the launch scripts, from the root of the carried tree: install vLLM (the stash) and
# the runtime's wheels, copy the tree to /tmp/qf (the next call re-sends the working tree), enter
# it, set the environment, list the GPUs. Returns non-zero when a step fails.
bash .gpu/bin/install.sh || return 3
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/qf-site .whl/*.whl || return 3
rm -rf /tmp/qf && cp -r "$PWD" /tmp/qf && cd /tmp/qf || return 3
source bench/gpu/env.sh
rm -rf /tmp/logs /tmp/res  # a reused machine once still had an earlier session's results and rc files there
mkdir -p /tmp/logs /tmp/res
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee /tmp/res/gpu.txt
