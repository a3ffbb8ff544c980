#!/usr/bin/env bash
# GPU call 1 on a 4-GPU machine (nvidia-h200-x4): install, then start everything detached so it
# outlives this command: the serving replay (stock, fixed TTL, utility TTL side by side on GPUs
# 0-2) and the two model servers on GPU 3 with the quality benchmarks (bench/gpu/quality.sh).
# Work runs in a copy of the tree (/tmp/qf): the next call re-sends the working tree.
# After ~9 minutes it tars what has finished into $OUT; bench/gpu/collect.sh gets the rest.
set -uo pipefail
commit="$1"
t0=$SECONDS
source bench/gpu/setup_tree.sh || exit 3
export QUOTAFLOW_COMMIT="$commit"
setsid nohup bash -c "python3 -m bench.serving.replay --commit $commit --gpus 0,1,2 ${SERVING_ARGS:-} \
  --out-dir /tmp/res/serving > /tmp/logs/serving.log 2>&1; echo \$? > /tmp/res/serving.rc" < /dev/null > /dev/null 2>&1 &
python3 .qfdata/gguf_to_hf.py "$QWEN_CODER_05B_GGUF" "$QWEN" > /tmp/logs/conv-qwen.log 2>&1 &
conv_qwen=$!
python3 .qfdata/gguf_to_hf.py "$SMOLLM2_GGUF" "$SMOL" > /tmp/logs/conv-smol.log 2>&1 &
conv_smol=$!
# Only the conversions: a bare `wait` would also wait for the replay started above (it did once:
# the quality benchmarks then started only after the replay had finished).
wait $conv_qwen $conv_smol
CUDA_VISIBLE_DEVICES=3 serve_qwen
case " ${QUALITY:-bp bats drqa} " in *" bp "*|*" bats "*)
  CUDA_VISIBLE_DEVICES=3 setsid nohup python3 -m cli.main serve "$SMOL" --served-model-name smollm2-135m --port 8001 \
    --gpu-memory-utilization 0.15 --max-model-len 8192 > /tmp/logs/server-smol.log 2>&1 < /dev/null &;;
esac
CUDA_VISIBLE_DEVICES=3 setsid nohup bash bench/gpu/quality.sh "$commit" > /tmp/logs/quality.log 2>&1 < /dev/null &
echo "launched at $((SECONDS - t0)) s"
# Stay (the machine is held either way) and bring back whatever is done by then.
wait_for_parts $t0
bash bench/gpu/pack.sh
