#!/usr/bin/env bash
# Bytes published by a stream with deltas against full bundles, on the
# stream demo's workload (the model of `onestone gen`, one topic of
# pre-joined events replayed at RATE events/s), loopback only: a broker,
# `onestone stream --journal` publishing to a local root every EVERY,
# and a producer, for SECS seconds. The journal gives every publish's
# kind and bytes; the summary gives the bytes an hour of this stream
# would publish with a snapshot every SNAPSHOT_EVERY and deltas between,
# against a full bundle at every publish. See docs/streaming.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/onestone}
DATA=${DATA:-data/delta-bytes}
ROWS=${ROWS:-400000}
RATE=${RATE:-5000}
SECS=${SECS:-60}
EVERY=${EVERY:-5s}
SNAPSHOT_EVERY=${SNAPSHOT_EVERY:-10m}
TOPIC=onestone-delta-bytes

[ -x "$BIN" ] || go build -o "$BIN" ./cmd/onestone
command -v jq >/dev/null || { echo "delta-bytes needs jq" >&2; exit 1; }
WORK=$(mktemp -d)
# shellcheck source=scripts/loopback.sh
. scripts/loopback.sh
cleanup() {
  stop_pids
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== generate $ROWS events and fit the spec"
rm -rf "$DATA"
$BIN gen --rows "$ROWS" --out "$DATA" >/dev/null
$BIN fit --spec "$DATA/spec.yaml" --data "$DATA/train-*.parquet" | tail -1
$BIN broker --addr 127.0.0.1:0 --topics "$TOPIC" 2>"$WORK/broker.log" &
PIDS+=($!)
BROKERS=$(wait_for "$WORK/broker.log" '127\.0\.0\.1:[0-9]+' | head -1)
echo "== stream: publish every $EVERY, a snapshot every $SNAPSHOT_EVERY; $RATE events/s for ${SECS}s"
$BIN stream --brokers "$BROKERS" --topic "$TOPIC" --group delta-bytes --model "$WORK/models" \
  --spec "$DATA/spec.yaml" --checkpoint-every "$EVERY" --snapshot-every "$SNAPSHOT_EVERY" \
  --journal "$WORK/journal.jsonl" --progress-every 10s 2>"$WORK/stream.log" &
STREAM_PID=$!
PIDS+=($STREAM_PID)
wait_for "$WORK/stream.log" 'stream: fresh model' >/dev/null
$BIN produce --brokers "$BROKERS" --topic "$TOPIC" --data "$DATA/train-*.parquet" --rate "$RATE" 2>"$WORK/produce.log" &
PIDS+=($!)
sleep "$SECS"
kill -TERM $STREAM_PID
wait $STREAM_PID || true
grep '^stream: [0-9]' "$WORK/stream.log" | tail -1 | cut -c1-100

echo "== publishes"
jq -r 'select(.event == "publish") | "\(.version)  \(if .parent then "delta of " + .parent else "snapshot   " end)  \(.bytes) bytes  \(.examples) examples"' "$WORK/journal.jsonl"
every_s=$(echo "$EVERY" | sed 's/s$//')
snap_min=$(echo "$SNAPSHOT_EVERY" | sed 's/m$//')
jq -s -r --argjson every "$every_s" --argjson snapmin "$snap_min" '
  [.[] | select(.event == "publish")] as $p
  | ($p | map(select(.parent == null)) | .[0].bytes) as $snap
  | ($p | map(select(.parent != null)) | .[1:]) as $d   # the first delta follows the cold start
  | ($d | map(.bytes) | add / length) as $delta
  | ($d | map(.examples) | [.[0], .[-1]]) as $ex
  | (3600 / $every) as $perhour
  | (60 / $snapmin) as $snaps
  | "snapshot: \($snap) bytes; deltas (\($d | length), after the first): mean \($delta | floor) bytes, \(($delta / $snap * 1000 | floor) / 10)% of a snapshot",
    "events per publish: \((($ex[1] - $ex[0]) / (($d | length) - 1)) | floor)",
    "an hour at one publish every \($every) s: full bundles \(($perhour * $snap / 1e6) | floor) MB; \($snaps) snapshots + deltas \((($snaps * $snap + ($perhour - $snaps) * $delta) / 1e6) | floor) MB"
' "$WORK/journal.jsonl"
