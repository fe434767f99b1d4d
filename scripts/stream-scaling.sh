#!/usr/bin/env bash
# Data-parallel stream consumption on one machine (docs/scale-out.md):
# one `onestone stream` with 2 cores against 2 streams with 1 core each,
# on the same topic of std events (`onestone stddata`, 4 partitions,
# filled before the trainers start so that they never wait for data).
#
#   one: a trainer in group G1, GOMAXPROCS=2, pinned to cpus 0,1: it
#        reads all 4 partitions;
#   two: two trainers in group G2, each GOMAXPROCS=1 and pinned to one cpu
#        (taskset), each with its own model root: the group gives each 2
#        partitions. Each trains its own model on half the data: this
#        measures the throughput of data-parallel consumption, not one
#        model trained on two machines (nothing synchronises the two).
#
# Each configuration runs SECS seconds after the first publish; the
# figures are the examples trained over that window (the journals), per
# second of wall time and per second of CPU time of the trainers
# (/proc/PID/stat), which load on a shared host moves less. Checkpoints
# and publishes (every CHECKPOINT_EVERY, to local roots) are part of the
# cost, as in production. About 4 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/onestone}
SECS=${SECS:-60}
ROWS=${ROWS:-600000}
CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-10s}
TOPIC=onestone-stream-scaling

command -v taskset >/dev/null || { echo "stream-scaling needs taskset (util-linux)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "stream-scaling needs 2 cpus" >&2; exit 1; }
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/onestone
WORK=$(mktemp -d)
# shellcheck source=scripts/loopback.sh
. scripts/loopback.sh
WAIT_SECS=180
cleanup() {
  stop_pids
  rm -rf "$WORK"
}
trap cleanup EXIT

# cpu_secs PID: user + system CPU seconds of a live process.
cpu_secs() {
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

echo "== $ROWS std events into 4 partitions"
$BIN stddata --rows "$ROWS" --out "$WORK/data" >/dev/null
$BIN fit --spec "$WORK/data/spec.yaml" --data "$WORK/data/train-*.parquet" | tail -1
$BIN broker --addr 127.0.0.1:0 --topics "$TOPIC" --partitions 4 2>"$WORK/broker.log" &
PIDS+=($!)
BROKERS=$(wait_for "$WORK/broker.log" '127\.0\.0\.1:[0-9]+' | head -1)
$BIN produce --brokers "$BROKERS" --topic "$TOPIC" --data "$WORK/data/train-*.parquet" --key c0 2>"$WORK/produce.log"
tail -1 "$WORK/produce.log"

# run NAME GROUP "CPUS..." PROCS: start one trainer per entry of CPUS
# (a taskset cpu list), each with GOMAXPROCS=PROCS, wait for every first
# publish, measure SECS seconds, stop them; prints examples and CPU
# seconds over the window.
run() {
  local name=$1 group=$2 cpus=$3 procs=$4 i=0 pids=() c
  for c in $cpus; do
    i=$((i + 1))
    GOMAXPROCS=$procs taskset -c "$c" $BIN stream --brokers "$BROKERS" --topic "$TOPIC" --group "$group" \
      --model "$WORK/$name-$i" --spec "$WORK/data/spec.yaml" --checkpoint-every "$CHECKPOINT_EVERY" \
      --journal "$WORK/$name-$i.jsonl" --progress-every 10s 2>"$WORK/$name-$i.log" &
    pids+=($!)
    PIDS+=($!)
  done
  for i in $(seq 1 ${#pids[@]}); do wait_for "$WORK/$name-$i.log" 'published v[0-9]+' >/dev/null; done
  # Let the group settle (the second member joins after the first).
  sleep 5
  local t0 cpu0=() cpu1=()
  t0=$(date +%s.%N)
  for p in "${pids[@]}"; do cpu0+=("$(cpu_secs "$p")"); done
  sleep "$SECS"
  for p in "${pids[@]}"; do cpu1+=("$(cpu_secs "$p")"); done
  local t1
  t1=$(date +%s.%N)
  for p in "${pids[@]}"; do kill -TERM "$p"; done
  for p in "${pids[@]}"; do wait "$p" || true; done
  python3 - "$WORK" "$name" "${#pids[@]}" "$t0" "$t1" "${cpu0[*]}" "${cpu1[*]}" <<'PY'
import datetime, json, sys
work, name, n, t0, t1 = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
cpu = sum(float(b) - float(a) for a, b in zip(sys.argv[6].split(), sys.argv[7].split()))
def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
total, parts = 0, []
for i in range(1, n + 1):
    ex = [(ts(l["time"]), l["examples"]) for l in map(json.loads, open(f"{work}/{name}-{i}.jsonl")) if l["event"] == "batch"]
    before = max([e for t, e in ex if t <= t0], default=0)
    upto = max([e for t, e in ex if t <= t1], default=0)
    parts.append(upto - before)
    total += upto - before
secs = t1 - t0
print(f"{name}: {n} trainer(s), {total} examples in {secs:.0f} s: {total / secs:.0f} examples/s, "
      f"{cpu:.1f} CPU s, {total / cpu:.0f} examples per CPU second (per trainer: {', '.join(map(str, parts))})", flush=True)
PY
}

echo "== one trainer, 2 cores"
run one scaling-one "0,1" 2
echo "== two trainers, 1 core each, one group"
run two scaling-two "0 1" 1
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
