#!/usr/bin/env bash
# GPU call 1 on a 2-GPU machine (nvidia-h200-x2): install, convert Qwen for the DRQA server, start
# bench/gpu/x2.sh detached, stay up to LAUNCH_WAIT_S and pack what is done; collect.sh gets the rest.
set -uo pipefail
commit="$1"
t0=$SECONDS
source bench/gpu/setup_tree.sh || exit 3
setsid nohup bash bench/gpu/x2.sh "$commit" > /tmp/logs/x2.log 2>&1 < /dev/null &
# The conversion runs on the CPU while round 1 holds the GPUs.
python3 .qfdata/gguf_to_hf.py "$QWEN_CODER_05B_GGUF" "$QWEN" > /tmp/logs/conv-qwen.log 2>&1 &
echo "launched at $((SECONDS - t0)) s"
wait_for_parts $t0
cat /tmp/logs/x2.log
bash bench/gpu/pack.sh
