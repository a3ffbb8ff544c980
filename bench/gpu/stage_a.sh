#!/usr/bin/env bash
# GPU stage A: install, serving replay, then start the model servers for stage B.
set -uo pipefail
commit="$1"
bash .gpu/bin/install.sh || exit 3
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/qf-site .whl/*.whl || exit 3
source bench/gpu/env.sh
export QUOTAFLOW_COMMIT="$commit"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
# Dequantise both models on the CPU while the replay uses the GPU.
( python3 .qfdata/gguf_to_hf.py "$QWEN_CODER_05B_GGUF" "$QWEN" > /tmp/conv-qwen.log 2>&1
  python3 .qfdata/gguf_to_hf.py "$SMOLLM2_GGUF" "$SMOL" > /tmp/conv-smol.log 2>&1 ) &
conv=$!
timeout 420 python3 -m bench.serving.replay --commit "$commit" --loads 30,180 --budget-s 380 \
  --out-dir "$OUT/serving" 2>&1 | tail -40
wait $conv; tail -2 /tmp/conv-qwen.log /tmp/conv-smol.log
# Servers in their own sessions: they outlive this command and serve stage B.
setsid nohup python3 -m cli.main serve "$QWEN" --served-model-name qwen2.5-coder-0.5b --port 8000 \
  --gpu-memory-utilization 0.35 --max-model-len 16384 > /tmp/server-qwen.log 2>&1 < /dev/null &
setsid nohup python3 -m cli.main serve "$SMOL" --served-model-name smollm2-135m --port 8001 \
  --gpu-memory-utilization 0.15 --max-model-len 8192 > /tmp/server-smol.log 2>&1 < /dev/null &
echo "servers starting"
