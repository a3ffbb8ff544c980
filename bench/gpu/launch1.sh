#!/usr/bin/env bash
# GPU call 1 on a 1-GPU machine (nvidia-h200), quality benchmarks only (QUALITY, default drqa):
# install, convert Qwen, serve it with the plugin (`quotaflow serve`), run quality.sh detached,
# stay up to LAUNCH_WAIT_S and pack what is done; collect.sh gets the rest.
set -uo pipefail
commit="$1"
t0=$SECONDS
source bench/gpu/setup_tree.sh || exit 3
echo 0 > /tmp/res/serving.rc  # no serving replay in this flow: collect.sh waits for quality.rc only
python3 .qfdata/gguf_to_hf.py "$QWEN_CODER_05B_GGUF" "$QWEN" > /tmp/logs/conv-qwen.log 2>&1 \
  || { tail -20 /tmp/logs/conv-qwen.log; exit 3; }
setsid nohup python3 -m cli.main serve "$QWEN" --served-model-name qwen2.5-coder-0.5b --port 8000 \
  --gpu-memory-utilization 0.40 --max-model-len 16384 > /tmp/logs/server-qwen.log 2>&1 < /dev/null &
QUALITY="${QUALITY:-drqa}" setsid nohup bash bench/gpu/quality.sh "$commit" > /tmp/logs/quality.log 2>&1 < /dev/null &
echo "launched at $((SECONDS - t0)) s"
while [ $((SECONDS - t0)) -lt ${LAUNCH_WAIT_S:-540} ]; do
  [ -f /tmp/res/quality.rc ] && break
  sleep 5
done
cat /tmp/logs/quality.log; tail -5 /tmp/logs/drqa.log 2>/dev/null
bash bench/gpu/pack.sh
