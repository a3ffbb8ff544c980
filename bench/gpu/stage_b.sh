#!/usr/bin/env bash
# GPU stage B: the quality benchmarks, concurrently, against the servers stage A started.
set -uo pipefail
commit="$1"
source bench/gpu/env.sh
export QUOTAFLOW_COMMIT="$commit"
for port in 8000 8001; do
  for _ in $(seq 1 90); do curl -sf "localhost:$port/v1/models" > /dev/null && break; sleep 2; done
  curl -sf "localhost:$port/v1/models" > /dev/null || { echo "server on $port is not up"; tail -30 /tmp/server-*.log; }
done
mkdir -p /tmp/logs
Q=http://127.0.0.1:8000/v1; S=http://127.0.0.1:8001/v1
T=500
timeout $T python3 bench/batchprompt/run.py --base-url $Q --model qwen2.5-coder-0.5b --tokenizer "$QWEN" \
  --context-window 16384 --data-dir ../shared/data > /tmp/logs/bp-qwen.log 2>&1 &
timeout $T python3 bench/batchprompt/run.py --base-url $S --model smollm2-135m --tokenizer "$SMOL" \
  --context-window 8192 --data-dir ../shared/data > /tmp/logs/bp-smol.log 2>&1 &
timeout $T python3 bench/priordynaflow/run.py --base-url $Q --model qwen2.5-coder-0.5b --time-limit-s 150 \
  > /tmp/logs/pdf.log 2>&1 &
timeout $T python3 bench/drqa/run.py --base-url $Q --model qwen2.5-coder-0.5b --base-model-path "$QWEN" --via direct \
  --limit 100 --fractions 0.5,0.75 --steps 20 --eval-limit 80 > /tmp/logs/drqa.log 2>&1 &
timeout $T python3 bench/bats/run.py ${BATS_ARGS:-} > /tmp/logs/bats.log 2>&1 &
wait
curl -s localhost:8000/metrics > /tmp/logs/metrics-qwen.txt; curl -s localhost:8001/metrics > /tmp/logs/metrics-smol.txt
cp /tmp/server-*.log /tmp/logs/ 2>/dev/null
tail -5 /tmp/logs/*.log
grep -E "^quotaflow_continuum" /tmp/logs/metrics-qwen.txt | grep -v "^#" | head -20
tar czf "$OUT/results.tgz" bench/results
tar czf "$OUT/logs.tgz" -C /tmp logs
