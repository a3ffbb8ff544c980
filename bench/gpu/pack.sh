#!/usr/bin/env bash
# Tar results and logs from /tmp/qf and /tmp/res into $OUT (no databases; files up to 64 MB,
# which compress well: a 2-GPU run once lost its 10 MB DRQA details.json to a 6 MB cut).
cd /tmp/qf || exit 3
find bench/results /tmp/res -type f ! -name '*.db' ! -name '*.db-*' -size -64M > /tmp/pack-list 2>/dev/null
tar czf "$OUT/results.tgz" -T /tmp/pack-list 2>/dev/null
tar czf "$OUT/logs.tgz" -C /tmp logs 2>/dev/null
tail -n 25 /tmp/logs/serving.log /tmp/logs/quality.log 2>/dev/null
ls -la "$OUT"
