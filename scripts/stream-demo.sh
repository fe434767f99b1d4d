#!/usr/bin/env bash
# The streaming loop on one machine, loopback only: a Kafka-protocol broker
# (`onestone broker`, or the cluster in ONESTONE_KAFKA_BROKERS), a server
# (`onestone serve`), a trainer (`onestone stream`) and a producer replaying
# generated events (`onestone produce`). It shows the served model version
# changing as the stream publishes, then stops everything it started.
# Bounded: about a minute. See docs/streaming.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/onestone}
DATA=${DATA:-data/stream-demo}
MODELS=${MODELS:-models/stream-demo}
ROWS=${ROWS:-400000}
RATE=${RATE:-10000}
TOPIC=${TOPIC:-onestone-demo-events}
SECONDS_TO_WATCH=${SECONDS_TO_WATCH:-30}

[ -x "$BIN" ] || go build -o "$BIN" ./cmd/onestone
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# wait_for FILE REGEX: print the first match of REGEX in FILE (up to 30 s).
wait_for() {
  for _ in $(seq 1 300); do
    if m=$(grep -o -m1 -E "$2" "$1" 2>/dev/null); then echo "$m"; return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for /$2/ in $1:" >&2; cat "$1" >&2; return 1
}

echo "== 1. generate $ROWS impressions and fit the spec"
rm -rf "$DATA" "$MODELS"
$BIN gen --rows "$ROWS" --out "$DATA" >/dev/null
$BIN fit --spec "$DATA/spec.yaml" --data "$DATA/train-*.parquet" | tail -1

echo "== 2. broker"
if [ -n "${ONESTONE_KAFKA_BROKERS:-}" ]; then
  BROKERS=$ONESTONE_KAFKA_BROKERS
  TOPIC=$TOPIC-$$
  echo "using the cluster at $BROKERS, topic $TOPIC"
else
  $BIN broker --addr 127.0.0.1:0 --topics "$TOPIC" 2>"$WORK/broker.log" &
  PIDS+=($!)
  BROKERS=$(wait_for "$WORK/broker.log" '127\.0\.0\.1:[0-9]+' | head -1)
  echo "onestone broker on $BROKERS"
fi

echo "== 3. stream trainer (checkpoint and publish every 5 s)"
$BIN stream --brokers "$BROKERS" --topic "$TOPIC" --group demo-trainer --model "$MODELS" \
  --spec "$DATA/spec.yaml" --checkpoint-every 5s --dead-letters "file:$WORK/dlq.jsonl" 2>"$WORK/stream.log" &
STREAM_PID=$!
PIDS+=($STREAM_PID)
wait_for "$WORK/stream.log" 'stream: fresh model|stream: resumed' >/dev/null

echo "== 4. producer: $RATE events/s"
$BIN produce --brokers "$BROKERS" --topic "$TOPIC" --data "$DATA/train-*.parquet" --rate "$RATE" 2>"$WORK/produce.log" &
PIDS+=($!)

wait_for "$WORK/stream.log" 'published v[0-9]+' >/dev/null
echo "== 5. server on the bundle root (polls for new versions every 2 s)"
$BIN serve --models "$MODELS" --addr 127.0.0.1:0 2>"$WORK/serve.log" &
PIDS+=($!)
ADDR=$(wait_for "$WORK/serve.log" 'addr=[0-9.:]+' | cut -d= -f2)
URL="http://$ADDR"

echo "== 6. the served version, every 3 s for ${SECONDS_TO_WATCH}s"
versions=()
end=$((SECONDS + SECONDS_TO_WATCH))
while [ $SECONDS -lt $end ]; do
  doc=$(curl -fsS "$URL/v1/model" || true)
  v=$(echo "$doc" | grep -o '"version": *"[^"]*"' | head -1 | sed 's/.*"\(v[0-9]*\)"/\1/')
  ex=$(echo "$doc" | grep -o '"examples": *[0-9]*' | head -1 | grep -o '[0-9]*$')
  printf '%s  served %s  trained on %s events   | %s\n' "$(date +%T)" "${v:-none}" "${ex:-?}" \
    "$(grep '^stream: [0-9]' "$WORK/stream.log" | tail -1 | cut -c1-150)"
  [ -n "$v" ] && versions+=("$v")
  sleep 3
done
distinct=$(printf '%s\n' "${versions[@]}" | sort -u | wc -l)

echo "== 7. stop the trainer (final checkpoint, publish, commit)"
kill -TERM $STREAM_PID
wait $STREAM_PID || true
grep -E '^stream: (published|stopped)' "$WORK/stream.log" | tail -3
if [ "$distinct" -lt 2 ]; then
  echo "the served version did not change" >&2
  exit 1
fi
echo "== the served version changed $((distinct - 1)) times; demo done"
