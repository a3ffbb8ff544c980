#!/usr/bin/env bash
# GPU call 1 on a 1-GPU machine (nvidia-h200), quality benchmarks only (QUALITY, default drqa):
# install, convert Qwen, serve it with the plugin (`quotaflow serve`), run quality.sh detached,
# stay up to LAUNCH_WAIT_S and pack what is done; collect.sh gets the rest.
set -uo pipefail
commit="$1"
t0=$SECONDS
source bench/gpu/setup_tree.sh || exit 3
echo 0 > /tmp/res/serving.rc  # no serving replay in this flow: the waits here and in collect.sh see quality.rc only
python3 .qfdata/gguf_to_hf.py "$QWEN_CODER_05B_GGUF" "$QWEN" > /tmp/logs/conv-qwen.log 2>&1 \
  || { tail -20 /tmp/logs/conv-qwen.log; exit 3; }
serve_qwen
QUALITY="${QUALITY:-drqa}" setsid nohup bash bench/gpu/quality.sh "$commit" > /tmp/logs/quality.log 2>&1 < /dev/null &
echo "launched at $((SECONDS - t0)) s"
wait_for_parts $t0
cat /tmp/logs/quality.log; tail -5 /tmp/logs/drqa.log 2>/dev/null
bash bench/gpu/pack.sh
