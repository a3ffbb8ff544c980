# Sourced by the stage scripts on the GPU machine.
source /root/gpu-env.sh
export PYTHONPATH="$PWD:/tmp/qf-site:${PYTHONPATH:-}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
# The benchmarks read ../shared/data like a developer checkout.
mkdir -p ../shared && ln -sfn "$PWD/.qfdata" ../shared/data
QWEN=/root/models/qwen05-hf
SMOL=/root/models/smollm2-hf
