#!/usr/bin/env bash
# Chaos, parts 1 and 2: stream faults with the real binaries on loopback,
# bounded in time (about 3-6 min). See docs/operations.md ("Streaming").
#
# One `onestone broker --data` process (its log on disk) serves both parts.
#
# Part 1, poison events: a live `onestone stream` trains on good events
# while kcat writes poison events into the same topic (partition 0): bad
# JSON, a wrong type, a missing label, a label of 2, a price of 1e300, a
# standardized value beyond float32, a negative weight, a weight beyond
# float32, and an event longer than --max-event-bytes. Each must land in
# the dead letters with its reason, topic, partition and offset, counted by
# reason on the status line, while the stream trains on, and the group's
# committed offsets move past it.
#
# Part 2, ten SIGKILLs: `onestone produce` sends EVENTS events at RATE/s
# while `onestone stream --journal` is SIGKILLed ten times, each 1.5-4 s
# after its start (once it has trained), and restarted at once; a last run
# trains to the end and stops on SIGTERM. From the journal: the time from
# each restart to its first trained micro-batch (p50, max; the promise is
# 5 s), events never trained (0), events trained twice (within one
# checkpoint per kill); the final bundle's examples equal the events
# produced, and the group's committed offsets (onestone lag) equal the
# final checkpoint's.
#
# It prints a JSON array, one object per fault (fault, done, expected,
# seen, pass), and exits 1 when any fault fails.
#
# BIN is the onestone binary to test (default: bin/onestone, built first).
set -euo pipefail

cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-54000}
RATE=${RATE:-500}
KILLS=${KILLS:-10}
RESTART_WITHIN=${RESTART_WITHIN:-5} # seconds: the promise of docs/streaming.md
WAIT=${WAIT:-180}                   # longest wait for any one expectation, in seconds

log() { echo "chaos-stream: $*" >&2; }

if ! command -v kcat >/dev/null 2>&1; then
	log "installing kcat from Debian"
	if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
	$SUDO apt-get update -qq && $SUDO apt-get install -y -qq kcat >/dev/null
fi
command -v python3 >/dev/null || { log "python3 is needed"; exit 1; }
if [ -z "${BIN:-}" ]; then
	BIN=bin/onestone
	log "building $BIN"
	go build -o "$BIN" ./cmd/onestone
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/onestone-chaos-stream.XXXXXX")
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; fi
	done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

# wait_grep FILE REGEX: prints the first match of REGEX in FILE, waiting up
# to $WAIT s.
wait_grep() {
	for _ in $(seq 1 $((WAIT * 10))); do
		if m=$(grep -o -m1 -E "$2" "$1" 2>/dev/null); then
			echo "$m"
			return 0
		fi
		sleep 0.1
	done
	log "timed out waiting for /$2/ in $1"
	cat "$1" >&2
	return 1
}

RESULTS=()
FAILED=0
# record FAULT DONE EXPECTED SEEN PASS
record() {
	[ "$5" = true ] || FAILED=$((FAILED + 1))
	RESULTS+=("$(python3 -c 'import json, sys; a = sys.argv[1:]; print(json.dumps({"fault": a[0], "done": a[1], "expected": a[2], "seen": a[3], "pass": a[4] == "true"}))' "$@")")
	log "$1: $([ "$5" = true ] && echo PASS || echo FAIL): $4"
}

# lag_json TOPIC GROUP: the group's offsets as onestone lag --json prints them.
lag_json() { "$BIN" lag --brokers "$BROKERS" --topic "$1" --group "$2" --json; }
# lag_total TOPIC GROUP: "committed end" summed over the partitions.
lag_total() { "$BIN" lag --brokers "$BROKERS" --topic "$1" --group "$2" | awk '$1 == "total" { print $2, $3 }'; }
# wait_caught_up TOPIC GROUP END: waits until the group has committed END
# events (the end of the topic); prints the seconds waited.
wait_caught_up() {
	local t0=$SECONDS
	for _ in $(seq 1 $((WAIT * 4))); do
		read -r c e <<<"$(lag_total "$1" "$2" 2>/dev/null || echo "-1 -1")"
		if [ "$c" = "$3" ] && [ "$e" = "$3" ]; then
			echo $((SECONDS - t0))
			return 0
		fi
		sleep 0.25
	done
	log "group $2 did not commit the end of $1 ($3 events) within ${WAIT}s: committed $c of $e"
	return 1
}

T0=$SECONDS
log "generating data under $WORK"
"$BIN" gen --rows $((EVENTS * 10 / 9 + 1000)) --files 2 --users 5000 --items 5000 --out "$WORK/data" >/dev/null
"$BIN" fit --spec "$WORK/data/spec.yaml" --data "$WORK/data/train-*.parquet" >/dev/null
# Part 1's spec also weighs each event (by its true_ctr), so that weight
# faults exist.
mkdir -p "$WORK/poison-spec"
cp "$WORK/data/spec.yaml" "$WORK/poison-spec/spec.yaml"
echo "sample_weight: true_ctr" >>"$WORK/poison-spec/spec.yaml"
"$BIN" fit --spec "$WORK/poison-spec/spec.yaml" --data "$WORK/data/train-*.parquet" >/dev/null

"$BIN" broker --addr 127.0.0.1:0 --data "$WORK/broker" --topics poison,events --partitions 4 2>"$WORK/broker.log" &
PIDS+=($!)
BROKERS=$(wait_grep "$WORK/broker.log" '127\.0\.0\.1:[0-9]+')
log "onestone broker --data on $BROKERS"

#### Part 1: poison events into a live stream.
P1=poison
"$BIN" stream --brokers "$BROKERS" --topic $P1 --group poison --model "$WORK/poison-model" --spec "$WORK/poison-spec/spec.yaml" \
	--checkpoint-every 1s --progress-every 500ms --max-event-bytes 65536 --dead-letters "file:$WORK/dlq.jsonl" \
	--journal "$WORK/poison.jsonl" 2>"$WORK/poison-stream.log" &
POISON_PID=$!
PIDS+=($POISON_PID)
wait_grep "$WORK/poison-stream.log" 'stream: fresh model' >/dev/null
"$BIN" produce --brokers "$BROKERS" --topic $P1 --data "$WORK/data/train-*.parquet" --limit 2000 2>>"$WORK/produce-poison.log"
wait_caught_up $P1 poison 2000 >/dev/null
end0=$(lag_json $P1 poison | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["end"])')
ok='"user_id": 5, "item_id": 7, "device": "ios", "hour": 3, "position": 1, "category": "c1", "brand": "b1"'
python3 - "$WORK/poison.txt" "$ok" <<'PY'
import json, sys
ok = sys.argv[2]
events = [
    ("bad_json", "bad JSON (cut short)", '{"click": 1, "conversion"'),
    ("wrong_type", "a label of type string", '{%s, "true_ctr": 0.1, "click": "yes", "conversion": 0}' % ok),
    ("missing_field", "no labels", '{%s, "true_ctr": 0.1}' % ok),
    ("bad_label", "click 2", '{%s, "true_ctr": 0.1, "click": 2, "conversion": 0}' % ok),
    ("out_of_range", "price 1e300 (log1p field)", '{%s, "true_ctr": 0.1, "price": 1e300, "click": 1, "conversion": 0}' % ok),
    ("out_of_range", "item_popularity -1e39 (standardize field)", '{%s, "true_ctr": 0.1, "item_popularity": -1e39, "click": 0, "conversion": 0}' % ok),
    ("bad_weight", "sample weight -1", '{%s, "true_ctr": -1, "click": 1, "conversion": 0}' % ok),
    ("bad_weight", "sample weight 1e39 (beyond float32)", '{%s, "true_ctr": 1e39, "click": 0, "conversion": 0}' % ok),
    ("oversize", "a 100 KB event (limit 64 KiB)", '{%s, "true_ctr": 0.1, "click": 0, "conversion": 0, "pad": "%s"}' % (ok, "x" * 100000)),
]
with open(sys.argv[1], "w") as f:
    for reason, what, value in events:
        f.write(json.dumps({"reason": reason, "what": what, "value": value}) + "\n")
PY
python3 -c '
import json, sys
for l in open(sys.argv[1]):
    print(json.loads(l)["value"])' "$WORK/poison.txt" >"$WORK/poison-values.txt"
npoison=$(wc -l <"$WORK/poison-values.txt")
log "kcat: $npoison poison events into $P1 partition 0 at offsets $end0..$((end0 + npoison - 1))"
kcat -P -b "$BROKERS" -t $P1 -p 0 -X message.max.bytes=1000000 -l "$WORK/poison-values.txt"
"$BIN" produce --brokers "$BROKERS" --topic $P1 --data "$WORK/data/train-*.parquet" --limit 2000 2>>"$WORK/produce-poison.log"
total1=$((4000 + npoison))
caught=ok
wait_caught_up $P1 poison $total1 >/dev/null || caught=no
alive=yes
kill -0 $POISON_PID 2>/dev/null || alive=no
sleep 1.2 # one more status line
status=$(grep -E '^stream: [0-9]+ events' "$WORK/poison-stream.log" | tail -1 | grep -oE 'dead letters [0-9]+( \([^)]*\))?' || true)
kill -TERM $POISON_PID
stopped=yes
wait $POISON_PID || stopped=no
examples=$(python3 -c '
import json, sys
ls = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(max([l.get("examples", 0) for l in ls if l["event"] == "publish"] or [0]))' "$WORK/poison.jsonl")
# One object per poison event: its dead letter, and the stream going on.
while IFS=$'\t' read -r pass what seen; do
	record "poison: $what" "kcat wrote it to $P1 partition 0 between 2000 good events and 2000 more, into a live onestone stream" \
		"a dead letter with its reason, topic $P1, partition 0 and its offset; counted on the status line; the stream trains on, its committed offsets pass it" \
		"$seen; stream alive: $alive, committed the end of the topic: $caught, good events trained: $examples of 4000, status: ${status:-none}, SIGTERM exit clean: $stopped" \
		"$([ "$pass" = true ] && [ "$alive" = yes ] && [ "$caught" = ok ] && [ "$stopped" = yes ] && [ "$examples" = 4000 ] && echo true || echo false)"
done < <(python3 - "$WORK/poison.txt" "$WORK/dlq.jsonl" "$P1" "$end0" "${status:-}" <<'PY'
import json, re, sys
events = [json.loads(l) for l in open(sys.argv[1])]
letters = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
topic, end0, status = sys.argv[3], int(sys.argv[4]), sys.argv[5]
counts = dict(re.findall(r"(\w+)=(\d+)", status))
want = {}
for e in events:
    want[e["reason"]] = want.get(e["reason"], 0) + 1
for i, e in enumerate(events):
    hits = [d for d in letters if d.get("value") == e["value"]]
    if len(hits) != 1:
        print("false\t%s\t%d dead letters hold it" % (e["what"], len(hits)))
        continue
    d = hits[0]
    ok = (d.get("reason") == e["reason"] and d.get("topic") == topic and d.get("partition") == 0
          and d.get("offset") == end0 + i and int(counts.get(e["reason"], 0)) == want[e["reason"]])
    print("%s\t%s\tdead letter reason %s, topic %s, partition %s, offset %s (written at %d)" % (
        "true" if ok else "false", e["what"], d.get("reason"), d.get("topic"), d.get("partition"), d.get("offset"), end0 + i))
PY
)

#### Part 2: ten SIGKILLs while events arrive.
P2=events
MODEL="$WORK/live"
JOURNAL="$WORK/kill.jsonl"
CK_EVENTS=3000
MAX_BATCH=1000
stream_start() {
	JLINES=$(wc -l <"$JOURNAL" 2>/dev/null || echo 0)
	STARTS+=("$(date +%s.%N)")
	"$BIN" stream --brokers "$BROKERS" --topic $P2 --group trainer --model "$MODEL" --spec "$WORK/data/spec.yaml" \
		--checkpoint-every 2s --checkpoint-events $CK_EVENTS --max-batch $MAX_BATCH --journal "$JOURNAL" \
		--dead-letters "file:$WORK/dlq-kill.jsonl" 2>>"$WORK/kill-stream.log" &
	STREAM_PID=$!
	PIDS+=($STREAM_PID)
}
# wait_first_batch: waits (up to 30 s) until the running stream has
# trained a micro-batch (a batch line in the journal after the lines
# there were at its start); fails when it does not.
wait_first_batch() {
	for _ in $(seq 1 300); do
		if tail -n +$((JLINES + 1)) "$JOURNAL" 2>/dev/null | grep -q '"event":"batch"'; then return 0; fi
		kill -0 "$STREAM_PID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
ms() { date +%s%3N; }
log "part 2: onestone produce $EVENTS events at $RATE/s; $KILLS SIGKILLs of onestone stream"
"$BIN" produce --brokers "$BROKERS" --topic $P2 --data "$WORK/data/train-*.parquet" --limit "$EVENTS" --rate "$RATE" 2>"$WORK/produce.log" &
PRODUCE_PID=$!
PIDS+=($PRODUCE_PID)
STARTS=()
for k in $(seq 0 "$KILLS"); do
	stream_start
	t0=$(ms)
	trained=yes
	wait_first_batch || trained=no
	[ "$k" -gt 0 ] && log "restart $k: trained: $trained"
	[ "$k" -eq "$KILLS" ] && break
	kill -0 "$PRODUCE_PID" 2>/dev/null || log "the producer has finished before kill $((k + 1)): raise EVENTS or lower RATE"
	# SIGKILL 1.5-4 s after the start (later when the first batch came later).
	left=$((1500 + RANDOM % 2500 - ($(ms) - t0)))
	[ "$left" -gt 0 ] && sleep "$(printf '%d.%03d' $((left / 1000)) $((left % 1000)))"
	kill -KILL "$STREAM_PID"
	wait "$STREAM_PID" 2>/dev/null || true
done
wait $PRODUCE_PID
produced=$(grep -o 'produce: [0-9]* events' "$WORK/produce.log" | grep -o '[0-9]*')
log "produced $produced events; the last run trains to the end"
caught=ok
wait_caught_up $P2 trainer "$produced" >/dev/null || caught=no
kill -TERM "$STREAM_PID"
stopped=yes
wait "$STREAM_PID" || stopped=no
LAG=$(lag_json $P2 trainer)
RATE=$RATE python3 - "$JOURNAL" "$MODEL/latest/bundle.json" "$produced" "$KILLS" "$CK_EVENTS" "$MAX_BATCH" "$RESTART_WITHIN" "$LAG" "$caught" "$stopped" "${STARTS[@]}" >"$WORK/part2.tsv" <<'PY'
import json, os, re, statistics, sys
from datetime import datetime
journal, manifest = sys.argv[1], sys.argv[2]
produced, kills, ck_events, max_batch = (int(a) for a in sys.argv[3:7])
within = float(sys.argv[7])
lag, caught, stopped = json.loads(sys.argv[8]), sys.argv[9], sys.argv[10]
starts = [float(x) for x in sys.argv[11:]]
lines = []
for l in open(journal):
    try:
        lines.append(json.loads(l))
    except ValueError:
        pass  # a line a kill cut short
def unix(t):
    m = re.match(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", t)
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + tz).timestamp() + float(m.group(2) or 0)
# Restart k (the process started at starts[k], k >= 1): its first trained
# micro-batch is the first batch line after its start and before the next
# process's start.
batches = [unix(j["time"]) for j in lines if j["event"] == "batch"]
restarts, not_trained = [], 0
for k in range(1, len(starts)):
    nxt = starts[k + 1] if k + 1 < len(starts) else float("inf")
    first = next((b for b in batches if starts[k] <= b < nxt), None)
    if first is None:
        not_trained += 1
    else:
        restarts.append(first - starts[k])
restarts.sort()
count = {}
for j in lines:
    if j["event"] != "batch":
        continue
    for p, to in j["to"]["offsets"].items():
        frm = j["from"].get("offsets", {}).get(p, 0)
        c = count.setdefault(int(p), {})
        for o in range(frm, to):
            c[o] = c.get(o, 0) + 1
ends = {l["partition"]: l["end"] for l in lag}
never = sum(1 for p, e in ends.items() for o in range(e) if count.get(p, {}).get(o, 0) == 0)
twice = sum(max(0, k - 1) for c in count.values() for k in c.values())
bound = kills * (ck_events + max_batch)
m = re.search(r'^examples: (\d+)', open(manifest).read(), re.M) if manifest else None
try:
    examples = json.load(open(manifest)).get("examples")
except Exception:
    examples = int(m.group(1)) if m else None
cks = [j for j in lines if j["event"] == "checkpoint"]
final_ck = {int(p): o for p, o in cks[-1]["position"]["offsets"].items()} if cks else {}
committed = {l["partition"]: l["committed"] for l in lag}
def row(ok, fault, done, expected, seen):
    print("\t".join(["true" if ok else "false", fault, done, expected, seen]))
done = "onestone stream --checkpoint-every 2s --checkpoint-events %d --max-batch %d SIGKILLed %d times, each 1.5-4 s after its start, while onestone produce sent %d events at %s/s to onestone broker --data; a last run trained to the end and stopped on SIGTERM" % (ck_events, max_batch, kills, produced, os.environ["RATE"])
p50 = statistics.median(restarts) if restarts else float("nan")
mx = max(restarts) if restarts else float("nan")
row(len(restarts) == kills and not_trained == 0 and mx <= within, "SIGKILL: restart to first trained event", done,
    "each of the %d restarts trains a micro-batch within %g s of its start" % (kills, within),
    "%d of %d restarts trained; p50 %.2f s, max %.2f s (sorted: %s)" % (len(restarts), kills, p50, mx, " ".join("%.2f" % r for r in restarts)))
row(never == 0, "SIGKILL: events lost", done, "every event produced is trained at least once (the journal's micro-batches cover every offset)",
    "%d of %d events never trained" % (never, sum(ends.values())))
row(twice <= bound, "SIGKILL: events trained twice", done,
    "at most one checkpoint (%d events) plus one micro-batch (%d) per kill: %d" % (ck_events, max_batch, bound),
    "%d events trained twice after %d kills" % (twice, kills))
row(examples == produced and sum(ends.values()) == produced, "SIGKILL: final bundle's examples", done,
    "the final bundle's examples equal the events produced (%d): its lineage trained each once" % produced,
    "final bundle examples %s, topic end offsets sum to %d" % (examples, sum(ends.values())))
row(caught == "ok" and stopped == "yes" and final_ck == committed and sum(committed.values()) == produced,
    "SIGKILL: committed offsets", done,
    "the group's committed offsets (onestone lag) equal the final checkpoint's, at the end of the topic; SIGTERM exits cleanly",
    "committed %s, final checkpoint %s, end %s; SIGTERM exit clean: %s" % (
        json.dumps(committed, sort_keys=True), json.dumps(final_ck, sort_keys=True), json.dumps(ends, sort_keys=True), stopped))
PY
while IFS=$'\t' read -r pass fault done expected seen; do
	record "$fault" "$done" "$expected" "$seen" "$pass"
done <"$WORK/part2.tsv"

log "done in $((SECONDS - T0)) s"
printf '[\n'
for i in "${!RESULTS[@]}"; do
	sep=","
	[ "$i" -eq $((${#RESULTS[@]} - 1)) ] && sep=""
	printf '  %s%s\n' "${RESULTS[$i]}" "$sep"
done
printf ']\n'
[ "$FAILED" -eq 0 ]
