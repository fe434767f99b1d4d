#!/usr/bin/env bash
# Serving replicas following one object store, loopback only: an S3 server
# (scripts/s3-server.sh, versitygw), a Kafka-protocol broker, a stream
# trainer publishing to a bucket prefix, REPLICAS `onestone serve` replicas
# polling it, and a producer. It shows
#   - every replica on the same version within about one poll interval
#     after each publish (the spread is measured at each version change);
#   - the same answer to the same request from every replica on a version;
#   - the store frozen (SIGSTOP: every request hangs) for OUTAGE seconds:
#     the replicas keep answering, and catch up once it is back.
# It fails if any of these does not hold, and stops everything it started.
# See docs/scale-out.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/onestone}
DATA=${DATA:-data/replicas-demo}
ROWS=${ROWS:-300000}
RATE=${RATE:-5000}
REPLICAS=${REPLICAS:-2}
POLL=${POLL:-1s}
OUTAGE=${OUTAGE:-30}
WATCH=${WATCH:-20}      # seconds watched before and after the outage
TOPIC=onestone-replicas-demo

[ -x "$BIN" ] || go build -o "$BIN" ./cmd/onestone
WORK=$(mktemp -d)
export S3_SERVER_STATE=$WORK/s3
# shellcheck source=scripts/loopback.sh
. scripts/loopback.sh
VGW=""
cleanup() {
  [ -n "$VGW" ] && kill -CONT "$VGW" 2>/dev/null || true
  stop_pids
  scripts/s3-server.sh stop || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== 1. generate $ROWS impressions and fit the spec"
rm -rf "$DATA"
$BIN gen --rows "$ROWS" --out "$DATA" >/dev/null
$BIN fit --spec "$DATA/spec.yaml" --data "$DATA/train-*.parquet" | tail -1

echo "== 2. object store"
scripts/s3-server.sh install >/dev/null
eval "$(scripts/s3-server.sh start)"
VGW=$(pgrep -P "$(cat "$S3_SERVER_STATE/pid")" -x versitygw)
# The bucket prefix the trainer publishes to and the replicas follow.
STORE="s3://$ONESTONE_S3_BUCKET/replicas-demo?endpoint=$ONESTONE_S3_ENDPOINT&region=$AWS_REGION&use_path_style=true"
echo "versitygw on $ONESTONE_S3_ENDPOINT (pid $VGW); models at s3://$ONESTONE_S3_BUCKET/replicas-demo/"

echo "== 3. broker"
$BIN broker --addr 127.0.0.1:0 --topics "$TOPIC" 2>"$WORK/broker.log" &
PIDS+=($!)
BROKERS=$(wait_for "$WORK/broker.log" '127\.0\.0\.1:[0-9]+' | head -1)

echo "== 4. stream trainer publishing to the bucket every 5 s"
$BIN stream --brokers "$BROKERS" --topic "$TOPIC" --group demo-trainer --model "$STORE" \
  --checkpoints "$WORK/checkpoints" --spec "$DATA/spec.yaml" --checkpoint-every 5s \
  --publish-timeout 10s --progress-every 5s 2>"$WORK/stream.log" &
STREAM_PID=$!
PIDS+=($STREAM_PID)
wait_for "$WORK/stream.log" 'stream: fresh model|stream: resumed' >/dev/null
$BIN produce --brokers "$BROKERS" --topic "$TOPIC" --data "$DATA/train-*.parquet" --rate "$RATE" 2>"$WORK/produce.log" &
PIDS+=($!)
wait_for "$WORK/stream.log" 'published v[0-9]+' >/dev/null

echo "== 5. $REPLICAS replicas following the bucket (poll $POLL)"
URLS=()
for i in $(seq 1 "$REPLICAS"); do
  $BIN serve --models "$STORE" --addr 127.0.0.1:0 --poll "$POLL" --fetch-timeout 10s \
    --cache "$WORK/cache-$i" --workers 1 2>"$WORK/serve-$i.log" &
  PIDS+=($!)
  URLS+=("http://$(wait_for "$WORK/serve-$i.log" 'addr=[0-9.:]+' | cut -d= -f2)")
done
for u in "${URLS[@]}"; do
  for _ in $(seq 1 300); do curl -fsS "$u/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
done

REQ='{"context": {"user_id": 42, "age": 31, "user_tags": ["tag_08", "tag_11"], "user_activity": 5.0, "device": "ios", "hour": 20, "position": 1},
      "candidates": [{"item_id": 7, "category": "cat_03", "brand": "brand_0012", "price": 19.9, "item_popularity": 1.2},
                     {"item_id": 1234, "category": "cat_07", "brand": "brand_0040", "price": 120.0, "item_popularity": -0.5}]}'

# watch SECS LABEL: every 0.5 s, the same request to every replica. Prints
# a line when the versions change; counts failed requests, ticks where
# replicas on one version answered differently, and the time from a
# version's first appearance on a replica to its appearance on all.
FAILED=0; DIFFER=0; SAME=0; SPREAD_MAX=0; CHANGES=0
declare -A FIRST_SEEN=()
LAST=""
watch() {
  local end=$((SECONDS + $1)) label=$2
  while [ $SECONDS -lt $end ]; do
    local now vs=() bodies=() line="" b v
    now=$(date +%s.%N)
    for u in "${URLS[@]}"; do
      if b=$(curl -fsS --max-time 2 -X POST -H 'Content-Type: application/json' -d "$REQ" "$u/v1/score"); then
        v=$(echo "$b" | grep -o '"model_version":"[^"]*"' | cut -d'"' -f4)
      else
        b="failed"; v="failed"; FAILED=$((FAILED + 1))
      fi
      vs+=("$v"); bodies+=("$b"); line+=" $v"
      [ -n "${FIRST_SEEN[$v]:-}" ] || FIRST_SEEN[$v]=$now
    done
    if [ "$(printf '%s\n' "${vs[@]}" | sort -u | wc -l)" = 1 ] && [ "${vs[0]}" != failed ]; then
      if [ "$(printf '%s\n' "${bodies[@]}" | sort -u | wc -l)" = 1 ]; then SAME=$((SAME + 1)); else DIFFER=$((DIFFER + 1)); fi
      if [ "${vs[0]}" != "$LAST" ]; then
        local spread
        spread=$(awk -v a="$now" -v b="${FIRST_SEEN[${vs[0]}]}" 'BEGIN { printf "%.1f", a - b }')
        if [ -n "$LAST" ]; then
          CHANGES=$((CHANGES + 1))
          SPREAD_MAX=$(awk -v a="$spread" -v b="$SPREAD_MAX" 'BEGIN { print (a > b ? a : b) }')
        fi
        LAST=${vs[0]}
        printf '%s  %-8s all replicas on %s (%.1fs after the first)   | %s\n' "$(date +%T)" "$label" "$LAST" "$spread" \
          "$(grep -o 'published v[0-9]*' "$WORK/stream.log" | tail -1)"
      fi
    fi
    sleep 0.5
  done
}

echo "== 6. watching for ${WATCH}s"
watch "$WATCH" normal
echo "== 7. the store frozen for ${OUTAGE}s (SIGSTOP)"
kill -STOP "$VGW"
FAILED_BEFORE=$FAILED
watch "$OUTAGE" outage
OUTAGE_FAILED=$((FAILED - FAILED_BEFORE))
kill -CONT "$VGW"
echo "== 8. the store is back; watching for ${WATCH}s"
watch "$WATCH" after

echo "== 9. stop the trainer (a final publish); the replicas follow"
kill -TERM $STREAM_PID
wait $STREAM_PID || true
PUBLISHED=$(grep -o 'published v[0-9]*' "$WORK/stream.log" | tail -1 | cut -d' ' -f2)
end=$((SECONDS + 15))
while [ "$LAST" != "$PUBLISHED" ] && [ $SECONDS -lt $end ]; do watch 1 final; done
echo "publishes the store failed during the outage (each retried at the next checkpoint): $(grep -c 'publish to the object store failed' "$WORK/stream.log" || true)"

echo "== summary"
echo "version changes seen on all replicas: $CHANGES; worst spread between replicas: ${SPREAD_MAX}s (poll $POLL, sampled every 0.5s)"
echo "ticks with every replica on one version: $SAME identical answers, $DIFFER differing"
echo "score requests failed: $FAILED ($OUTAGE_FAILED during the outage)"
echo "last published: $PUBLISHED; replicas at the end: $LAST"
rc=0
[ "$CHANGES" -ge 2 ] || { echo "FAIL: the replicas' version changed fewer than 2 times" >&2; rc=1; }
[ "$DIFFER" = 0 ] || { echo "FAIL: replicas on one version answered differently" >&2; rc=1; }
[ "$FAILED" = 0 ] || { echo "FAIL: score requests failed" >&2; rc=1; }
[ "$LAST" = "$PUBLISHED" ] || { echo "FAIL: the replicas did not catch up with $PUBLISHED" >&2; rc=1; }
[ $rc = 0 ] && echo "== replicas converged, agreed, and served through the outage; demo done"
exit $rc
