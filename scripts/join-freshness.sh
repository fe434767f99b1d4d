#!/usr/bin/env bash
# Freshness with the join, measured on the real binaries at the real pace:
# how long after a click is produced a served model has trained on it.
#
# `onestone gen --streams` writes the three streams at time scale 1 (click
# delays of seconds to minutes, as logged), `onestone produce --streams
# --speedup 1` replays them in real time into three topics of an
# `onestone broker`, `onestone stream --topics` joins and trains with its
# default settings (or STREAM_FLAGS), and `onestone serve` follows the
# bundles with its default poll. At PROBES random moments the script
# takes the clicks topic's end offsets (every click produced so far is
# below them) and polls the served /v1/model until its position (the
# join's offsets of the three topics) covers them: that time is the
# freshness of the newest click, event -> served. The stream's journal
# gives the same for event -> published. Prints p50 and max of both and
# fails when a click took more than LIMIT seconds to be served.
# About 4 minutes. See docs/streaming.md ("Freshness with the join").
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/onestone}
RATE=${RATE:-1000}             # impressions per second of event time
PROBES=${PROBES:-15}
WARMUP=${WARMUP:-20}           # seconds of traffic before the first probe
LIMIT=${LIMIT:-60}
STREAM_FLAGS=${STREAM_FLAGS:-} # e.g. "--checkpoint-every 5s"
SERVE_FLAGS=${SERVE_FLAGS:-}
# Enough event time for the warm-up and the probes (at most 13 s each).
ROWS=${ROWS:-$(( RATE * (WARMUP + 20 * PROBES + 60) ))}

command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/onestone
WORK=$(mktemp -d)
# shellcheck source=scripts/loopback.sh
. scripts/loopback.sh
cleanup() {
  stop_pids
  rm -rf "$WORK"
}
trap cleanup EXIT

DATA=$WORK/data
echo "== $ROWS impressions at $RATE/s of event time, time scale 1; fit the spec on the same world"
$BIN gen --streams --rows "$ROWS" --event-rate "$RATE" --time-scale 1 --out "$DATA" | tail -2
$BIN gen --rows 100000 --out "$DATA/parquet" >/dev/null
$BIN fit --spec "$DATA/spec.yaml" --data "$DATA/parquet/train-*.parquet" | tail -1

TOPICS=imp,clk,conv
$BIN broker --addr 127.0.0.1:0 --topics "$TOPICS" 2>"$WORK/broker.log" &
PIDS+=($!)
BROKERS=$(wait_for "$WORK/broker.log" '127\.0\.0\.1:[0-9]+' | head -1)

# shellcheck disable=SC2086
$BIN stream --brokers "$BROKERS" --topics "$TOPICS" --group fresh --model "$WORK/models" \
  --spec "$DATA/spec.yaml" --journal "$WORK/journal.jsonl" $STREAM_FLAGS 2>"$WORK/stream.log" &
PIDS+=($!)
wait_for "$WORK/stream.log" 'stream: fresh model|stream: resumed' >/dev/null
$BIN produce --brokers "$BROKERS" --streams "$DATA" --topics "$TOPICS" --speedup 1 2>"$WORK/produce.log" &
PIDS+=($!)
wait_for "$WORK/stream.log" 'published v[0-9]+' >/dev/null
# shellcheck disable=SC2086
$BIN serve --models "$WORK/models" --addr 127.0.0.1:0 $SERVE_FLAGS 2>"$WORK/serve.log" &
PIDS+=($!)
ADDR=$(wait_for "$WORK/serve.log" 'addr=[0-9.:]+' | cut -d= -f2)
echo "== stream (default settings${STREAM_FLAGS:+, $STREAM_FLAGS}), serve on $ADDR; $WARMUP s of traffic, then $PROBES probes"
sleep "$WARMUP"

python3 - "$BIN" "$BROKERS" "http://$ADDR/v1/model" "$WORK/journal.jsonl" "$PROBES" "$LIMIT" <<'PY'
import datetime, json, random, subprocess, sys, time, urllib.request

bin_, brokers, url, journal, probes, limit = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6])
random.seed(1)

def ends():
    out = subprocess.run([bin_, "lag", "--brokers", brokers, "--topic", "clk", "--group", "probe", "--json"],
                         check=True, capture_output=True, text=True).stdout
    return {str(l["partition"]): l["end"] for l in json.loads(out)}

def covers(pos, e):
    o = ((pos or {}).get("topics") or {}).get("clk") or {}
    return all(o.get(p, 0) >= v for p, v in e.items())

served, probe_at = [], []
for i in range(probes):
    time.sleep(random.uniform(3, 9))  # a different phase of the checkpoint cycle each time
    t0 = time.time()
    e = ends()
    while True:
        with urllib.request.urlopen(url, timeout=5) as r:
            info = json.load(r)
        if covers(info.get("position"), e):
            break
        if time.time() - t0 > 3 * limit:
            sys.exit(f"probe {i}: the served position has not covered the clicks {e} in {3 * limit:.0f} s")
        time.sleep(0.05)
    served.append(time.time() - t0)
    probe_at.append((t0, e))
    print(f"probe {i + 1:2d}: clicks up to {e} served after {served[-1]:5.1f} s ({info.get('version')})", flush=True)

pubs, batches = [], []
for line in open(journal):
    l = json.loads(line)
    t = datetime.datetime.fromisoformat(l["time"].replace("Z", "+00:00")).timestamp()
    if l["event"] == "publish":
        pubs.append((t, l.get("position")))
published = []
for t0, e in probe_at:
    ts = [t for t, pos in pubs if t >= t0 and covers(pos, e)]
    if ts:
        published.append(min(ts) - t0)

def q(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2], xs[-1]

p50, mx = q(served)
print(f"click -> served:    p50 {p50:.1f} s, max {mx:.1f} s over {len(served)} probes")
if published:
    a, b = q(published)
    print(f"click -> published: p50 {a:.1f} s, max {b:.1f} s")
gaps = [b[0] - a[0] for a, b in zip(pubs, pubs[1:]) if a[0] >= probe_at[0][0] - 20]
if gaps:
    a, b = q(gaps)
    print(f"time between publishes: p50 {a:.1f} s, max {b:.1f} s")
if mx > limit:
    sys.exit(f"a click took {mx:.1f} s to be served, more than {limit:.0f} s")
PY
grep '^stream: [0-9]' "$WORK/stream.log" | tail -1 | grep -o 'join: .*'
grep -E '^stream: published' "$WORK/stream.log" | tail -2
[ -z "${KEEP:-}" ] || { cp "$WORK/journal.jsonl" "$WORK/stream.log" "$KEEP/"; }
