# Sourced by the stage scripts on the GPU machine.
source /root/gpu-env.sh
export PYTHONPATH="$PWD:/tmp/qf-site:${PYTHONPATH:-}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
# The benchmarks read ../shared/data like a developer checkout.
mkdir -p ../shared && ln -sfn "$PWD/.qfdata" ../shared/data
QWEN=/root/models/qwen05-hf
SMOL=/root/models/smollm2-hf

# The Qwen server the quality benchmarks call (port 8000), detached so it outlives the calling
# command; `CUDA_VISIBLE_DEVICES=N serve_qwen` puts it on GPU N.
serve_qwen() {
  setsid nohup python3 -m cli.main serve "$QWEN" --served-model-name qwen2.5-coder-0.5b --port 8000 \
    --gpu-memory-utilization 0.40 --max-model-len 16384 > /tmp/logs/server-qwen.log 2>&1 < /dev/null &
}

# Stay until both parts have written their exit codes (/tmp/res/serving.rc, quality.rc), at most
# LAUNCH_WAIT_S (default 540) seconds after SECONDS reached $1 (the launch script's start).
wait_for_parts() {
  while [ $((SECONDS - $1)) -lt ${LAUNCH_WAIT_S:-540} ]; do
    [ -f /tmp/res/serving.rc ] && [ -f /tmp/res/quality.rc ] && return 0
    sleep 5
  done
}
