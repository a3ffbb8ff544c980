#!/usr/bin/env bash
# The 2-GPU flow (nvidia-h200-x2), run detached by launch2.sh from /tmp/qf:
#   round 1: stock and fixed TTL side by side on GPUs 0 and 1 (same programs, same arrivals);
#   round 2: the utility TTL on GPU 0 (same plan), while GPU 1 serves Qwen for the DRQA bench.
# Rounds are merged on the CPU with `python -m bench.serving.replay --merge` (same plan flags).
# ROUNDS=1 skips round 2 and repeats round 1 once per seed in SEEDS (stock against fixed TTL only:
# several draws of arrivals and programs around stock's knee on a short budget).
# Writes /tmp/res/serving.rc and /tmp/res/quality.rc when done (collect.sh waits for both).
set -uo pipefail
commit="$1"
cd /tmp/qf && source bench/gpu/env.sh
export QUOTAFLOW_COMMIT="$commit"
# Round 1: stock_vs_fixed NAME [replay args]: results in /tmp/res/serving-NAME, log /tmp/logs/serving-NAME.log.
stock_vs_fixed() {
  local name="$1"; shift
  python3 -m bench.serving.replay --commit "$commit" --configs stock,fixed_ttl --gpus 0,1 ${SERVING_ARGS:-} "$@" \
    --out-dir "/tmp/res/serving-$name" > "/tmp/logs/serving-$name.log" 2>&1
}
stock_vs_fixed a
echo $? > /tmp/res/serving-a.rc
echo "round 1 done at $(date -u +%T)"
if [[ "${ROUNDS:-2}" == 1 ]]; then
  # More draws of the same plan instead of round 2: round 1 again with each seed of SEEDS.
  for seed in ${SEEDS:-}; do
    stock_vs_fixed "seed$seed" --seed "$seed"
    echo "seed $seed done at $(date -u +%T) rc $?"
  done
  cp /tmp/res/serving-a.rc /tmp/res/serving.rc; echo 0 > /tmp/res/quality.rc
  exit 0
fi
( python3 -m bench.serving.replay --commit "$commit" --configs utility_ttl --gpus 0 ${SERVING_ARGS:-} \
    --out-dir /tmp/res/serving-b > /tmp/logs/serving-b.log 2>&1; echo $? > /tmp/res/serving.rc ) &
if [[ -n "${QUALITY:-}" ]]; then
  CUDA_VISIBLE_DEVICES=1 serve_qwen
  CUDA_VISIBLE_DEVICES=1 bash bench/gpu/quality.sh "$commit" > /tmp/logs/quality.log 2>&1
else
  echo 0 > /tmp/res/quality.rc
fi
wait
echo "round 2 done at $(date -u +%T)"
