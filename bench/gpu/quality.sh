#!/usr/bin/env bash
# The quality benchmarks against the two servers launch.sh started on GPU 3, concurrently.
# Each has its own time limit and writes its results before it would be killed.
# QUALITY (default "bp bats drqa") picks the benchmarks; DRQA_ARGS adds flags to the DRQA run.
set -uo pipefail
commit="$1"
QUALITY="${QUALITY:-bp bats drqa}"
want() { [[ " $QUALITY " == *" $1 "* ]]; }
ports="8000"; { want bp || want bats; } && ports="8000 8001"
cd /tmp/qf && source bench/gpu/env.sh
export QUOTAFLOW_COMMIT="$commit"
for port in $ports; do
  for _ in $(seq 1 120); do curl -sf "localhost:$port/v1/models" > /dev/null && break; sleep 2; done
  curl -sf "localhost:$port/v1/models" > /dev/null || { echo "server on $port is not up"; tail -30 /tmp/logs/server-*.log; }
done
echo "servers up at $(date -u +%T)"
Q=http://127.0.0.1:8000/v1; S=http://127.0.0.1:8001/v1
L=/tmp/logs
D=../shared/data/hotpotqa/validate.jsonl
want bp && timeout 420 python3 bench/batchprompt/run.py --base-url $Q --model qwen2.5-coder-0.5b --tokenizer "$QWEN" \
  --context-window 16384 --data-dir ../shared/data --time-limit-s 330 --concurrency 256 > $L/bp-qwen.log 2>&1 &
want bp && timeout 420 python3 bench/batchprompt/run.py --base-url $S --model smollm2-135m --tokenizer "$SMOL" \
  --context-window 8192 --data-dir ../shared/data --time-limit-s 330 --concurrency 256 > $L/bp-smol.log 2>&1 &
want bats && timeout 480 python3 bench/bats/run.py --dataset $D --base-url $Q --model qwen2.5-coder-0.5b --budgets 2,5,10,20 \
  --methods react,tracker,bats,forcing,parallel --workers 12 --concurrency 192 --time-limit 420 --primary > $L/bats-qwen.log 2>&1 &
want bats && timeout 480 python3 bench/bats/run.py --dataset $D --base-url $S --model smollm2-135m --budgets 2,5,10,20 \
  --methods react,tracker,bats,forcing,parallel --workers 12 --concurrency 192 --time-limit 420 > $L/bats-smol.log 2>&1 &
want drqa && timeout ${DRQA_TIMEOUT_S:-420} python3 bench/drqa/run.py --base-url $Q --model qwen2.5-coder-0.5b \
  --base-model-path "$QWEN" ${DRQA_ARGS:---via direct --limit 100 --fractions 0.5,0.6,0.75 --steps 20 --eval-limit 80 --time-limit-s 340} \
  > $L/drqa.log 2>&1 &
wait
echo "quality done at $(date -u +%T)"
echo 0 > /tmp/res/quality.rc
