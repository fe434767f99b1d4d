#!/usr/bin/env bash
# Freshness and bytes published at std size, on the real binaries on
# loopback: the std workload's events (`onestone stddata`: 26 fields of
# 100,000 rows, embedding dim 16, 8 experts [256, 128], a 170 MB model)
# replayed into an `onestone broker` at RATE events/s, `onestone stream`
# training them and publishing a snapshot and then deltas every
# CHECKPOINT_EVERY to the S3 test server (scripts/s3-server.sh), and
# REPLICAS `onestone serve` replicas polling that store every POLL.
#
# At PROBES random moments the script takes the topic's end offsets
# (every event produced so far is below them) and polls every replica's
# /v1/model until its position covers them: the time until the last
# replica does is the freshness of the newest event, event -> served by
# all; it is printed per replica too. The stream's journal and the
# replicas' logs give where the time goes for each version: checkpoint
# (from the end of the last micro-batch trained), publish (upload), then
# per replica the fetch (download and checks) and the load (the delta
# applied, the sample check, the swap). Last, the bytes an hour of this
# stream publishes: a snapshot every SNAPSHOT_EVERY and deltas between,
# against a full bundle at every publish, at the measured publish
# interval. Prints p50 and max; fails when an event took more than
# LIMIT seconds to be served. About 4 minutes. See docs/scale-out.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/onestone}
RATE=${RATE:-1000}
PROBES=${PROBES:-12}
WARMUP=${WARMUP:-30}                     # seconds of traffic before the first probe
REPLICAS=${REPLICAS:-3}
POLL=${POLL:-1s}
CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-10s}
SNAPSHOT_EVERY=${SNAPSHOT_EVERY:-10m}
LIMIT=${LIMIT:-60}
STREAM_FLAGS=${STREAM_FLAGS:-}           # e.g. "--delta-compression zstd"
# Events for the set-up, the warm-up and slow probes: the producer must
# not run dry before the last probe (the script fails if it does).
ROWS=${ROWS:-$(( RATE * (WARMUP + 45 * PROBES + 120) ))}
TOPIC=onestone-std-freshness

command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/onestone
WORK=$(mktemp -d)
export S3_SERVER_STATE=$WORK/s3
# shellcheck source=scripts/loopback.sh
. scripts/loopback.sh
WAIT_SECS=120
cleanup() {
  stop_pids
  scripts/s3-server.sh stop || true
  [ -z "${KEEP:-}" ] || { mkdir -p "$KEEP"; cp "$WORK"/*.log "$WORK"/*.jsonl "$KEEP/" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== $ROWS std events; fit the spec"
DATA=$WORK/data
$BIN stddata --rows "$ROWS" --out "$DATA" >/dev/null
$BIN fit --spec "$DATA/spec.yaml" --data "$DATA/train-*.parquet" | tail -1

echo "== object store and broker"
scripts/s3-server.sh install >/dev/null
eval "$(scripts/s3-server.sh start)"
STORE="s3://$ONESTONE_S3_BUCKET/std-freshness?endpoint=$ONESTONE_S3_ENDPOINT&region=$AWS_REGION&use_path_style=true"
$BIN broker --addr 127.0.0.1:0 --topics "$TOPIC" 2>"$WORK/broker.log" &
PIDS+=($!)
BROKERS=$(wait_for "$WORK/broker.log" '127\.0\.0\.1:[0-9]+' | head -1)

echo "== stream (checkpoint every $CHECKPOINT_EVERY, snapshot every $SNAPSHOT_EVERY${STREAM_FLAGS:+, $STREAM_FLAGS}) to s3://$ONESTONE_S3_BUCKET/std-freshness; $RATE events/s"
# shellcheck disable=SC2086
$BIN stream --brokers "$BROKERS" --topic "$TOPIC" --group std-fresh --model "$STORE" \
  --checkpoints "$WORK/checkpoints" --spec "$DATA/spec.yaml" --checkpoint-every "$CHECKPOINT_EVERY" \
  --snapshot-every "$SNAPSHOT_EVERY" --publish-timeout 60s --journal "$WORK/journal.jsonl" \
  --progress-every 10s $STREAM_FLAGS 2>"$WORK/stream.log" &
PIDS+=($!)
wait_for "$WORK/stream.log" 'stream: fresh model|stream: resumed' >/dev/null
$BIN produce --brokers "$BROKERS" --topic "$TOPIC" --data "$DATA/train-*.parquet" --key c0 --rate "$RATE" 2>"$WORK/produce.log" &
PIDS+=($!)
wait_for "$WORK/stream.log" 'published v[0-9]+' >/dev/null

echo "== $REPLICAS replicas polling every $POLL"
URLS=()
for i in $(seq 1 "$REPLICAS"); do
  $BIN serve --models "$STORE" --addr 127.0.0.1:0 --poll "$POLL" --fetch-timeout 60s \
    --cache "$WORK/cache-$i" --workers 1 2>"$WORK/serve-$i.log" &
  PIDS+=($!)
  URLS+=("http://$(wait_for "$WORK/serve-$i.log" 'addr=[0-9.:]+' | cut -d= -f2)/v1/model")
done
for u in "${URLS[@]}"; do
  for _ in $(seq 1 600); do curl -fsS "${u%/v1/model}/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
done
echo "== $WARMUP s of traffic, then $PROBES probes"
sleep "$WARMUP"

python3 - "$BIN" "$BROKERS" "$TOPIC" "$WORK" "$PROBES" "$LIMIT" "$SNAPSHOT_EVERY" "${URLS[@]}" <<'PY'
import datetime, glob, json, os, random, re, subprocess, sys, time, urllib.request

bin_, brokers, topic, work, probes, limit, snap_every = sys.argv[1:8]
probes, limit = int(probes), float(limit)
urls = sys.argv[8:]
random.seed(1)

def ends():
    out = subprocess.run([bin_, "lag", "--brokers", brokers, "--topic", topic, "--group", "probe", "--json"],
                         check=True, capture_output=True, text=True).stdout
    return {str(l["partition"]): l["end"] for l in json.loads(out)}

def covers(pos, e):
    o = (pos or {}).get("offsets") or {}
    return all(o.get(p, 0) >= v for p, v in e.items())

def served(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            info = json.load(r)
        return info.get("position"), info.get("version")
    except Exception:
        return None, None

def q(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2], xs[-1]

all_, each = [], [[] for _ in urls]
prev = None
for i in range(probes):
    time.sleep(random.uniform(3, 9))  # a different phase of the checkpoint cycle each time
    t0 = time.time()
    e = ends()
    if e == prev:
        sys.exit(f"probe {i + 1}: no event produced since the last probe: the producer ran dry (raise ROWS)")
    prev = e
    pending = set(range(len(urls)))
    vers = [None] * len(urls)
    while pending:
        for k in list(pending):
            pos, v = served(urls[k])
            if covers(pos, e):
                each[k].append(time.time() - t0)
                vers[k] = v
                pending.discard(k)
        if time.time() - t0 > 3 * limit:
            sys.exit(f"probe {i}: replicas {sorted(pending)} have not covered the offsets {e} in {3 * limit:.0f} s")
        time.sleep(0.05)
    all_.append(time.time() - t0)
    print(f"probe {i + 1:2d}: served by all {len(urls)} after {all_[-1]:5.1f} s (" +
          ", ".join(f"{each[k][-1]:.1f}" for k in range(len(urls))) + f"; {vers[0]})", flush=True)

p50, mx = q(all_)
print(f"event -> served by all {len(urls)} replicas: p50 {p50:.1f} s, max {mx:.1f} s over {len(all_)} probes")
for k in range(len(urls)):
    a, b = q(each[k])
    print(f"  replica {k + 1}: p50 {a:.1f} s, max {b:.1f} s")

# Where the time goes, per version published after the replicas started.
def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
batches, cks, pubs = [], [], []
for line in open(os.path.join(work, "journal.jsonl")):
    l = json.loads(line)
    if l["event"] == "batch":
        batches.append(ts(l["time"]))
    elif l["event"] == "checkpoint":
        cks.append(ts(l["time"]))
    elif l["event"] == "publish":
        pubs.append((ts(l["time"]), l["version"], l.get("parent"), l.get("bytes", 0), l.get("examples", 0)))
took = {}  # version -> [(fetch s, load s) per replica]
line_re = re.compile(r'INFO serving: (fetched from the model store|model loaded) .*?version=(v\d+).*?took=(\S+)')
def secs(d):
    m = re.fullmatch(r'([\d.]+)(ms|s|µs)', d)
    return float(m.group(1)) * {"ms": 1e-3, "s": 1, "µs": 1e-6}[m.group(2)] if m else float("nan")
for k, path in enumerate(sorted(glob.glob(os.path.join(work, "serve-*.log")))):
    for line in open(path):
        m = line_re.search(line)
        if m:
            t = took.setdefault(m.group(2), [[None, None] for _ in urls])
            t[k][0 if m.group(1).startswith("fetched") else 1] = secs(m.group(3))
rows = []
for t_pub, v, parent, nbytes, _ in pubs:
    ck = max([c for c in cks if c <= t_pub], default=None)
    last = max([b for b in batches if ck is not None and b <= ck], default=None)
    t = took.get(v)
    if ck is None or last is None or not t or any(x is None for r in t for x in r):
        continue
    rows.append((v, parent, nbytes, ck - last, t_pub - ck, max(r[0] for r in t), max(r[1] for r in t)))
if rows:
    print("where the time goes (s; fetch and load: the slowest replica's):")
    print("  version    kind        bytes  checkpoint  publish  fetch  load")
    for v, parent, nbytes, c, p, f, l in rows:
        kind = "delta" if parent else "snapshot"
        print(f"  {v}  {kind:8s} {nbytes / 1e6:6.1f} MB  {c:10.1f}  {p:7.1f}  {f:5.1f}  {l:4.1f}")
    d = [r for r in rows if r[1]]
    if d:
        med = lambda xs: sorted(xs)[len(xs) // 2]
        print(f"  deltas, median: checkpoint {med([r[3] for r in d]):.1f}, publish {med([r[4] for r in d]):.1f}, "
              f"fetch {med([r[5] for r in d]):.1f}, load {med([r[6] for r in d]):.1f}; "
              f"besides, half the checkpoint interval waiting for the checkpoint and up to a poll interval")

# Bytes an hour.
snaps = [p for p in pubs if not p[2]]
deltas = [p for p in pubs if p[2]][1:]  # the first delta follows the cold start
if snaps and len(deltas) >= 2:
    snap = snaps[0][3]
    delta = sum(p[3] for p in deltas) / len(deltas)
    every = (deltas[-1][0] - deltas[0][0]) / (len(deltas) - 1)
    ev = (deltas[-1][4] - deltas[0][4]) / (len(deltas) - 1)
    m = re.fullmatch(r'(\d+)(m|s|h)', snap_every)
    snap_s = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)] if m else 600
    per_hour, snaps_hour = 3600 / every, 3600 / snap_s
    print(f"snapshot {snap / 1e6:.1f} MB; deltas ({len(deltas)}, after the first): mean {delta / 1e6:.2f} MB "
          f"({100 * delta / snap:.1f}% of a snapshot), {ev:.0f} events each, one every {every:.1f} s")
    print(f"an hour at one publish every {every:.1f} s: full bundles {per_hour * snap / 1e9:.2f} GB; "
          f"{snaps_hour:.0f} snapshots + deltas {(snaps_hour * snap + (per_hour - snaps_hour) * delta) / 1e9:.2f} GB")
if mx > limit:
    sys.exit(f"an event took {mx:.1f} s to be served, more than {limit:.0f} s")
PY
grep '^stream: [0-9]' "$WORK/stream.log" | tail -1 | cut -c1-160
