#!/usr/bin/env bash
# GPU call 2: wait for what launch.sh started (at most COLLECT_WAIT_S), then pack everything.
t0=$SECONDS
while [ $((SECONDS - t0)) -lt ${COLLECT_WAIT_S:-500} ]; do
  [ -f /tmp/res/serving.rc ] && [ -f /tmp/res/quality.rc ] && break
  sleep 5
done
curl -s localhost:8000/metrics > /tmp/logs/metrics-qwen.txt; curl -s localhost:8001/metrics > /tmp/logs/metrics-smol.txt
grep -E "^quotaflow_continuum" /tmp/logs/metrics-qwen.txt | head -20
bash /tmp/qf/bench/gpu/pack.sh
