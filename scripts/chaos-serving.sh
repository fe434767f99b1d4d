#!/usr/bin/env bash
# Chaos, serving part: request faults against a live `onestone serve` on
# loopback, with the real binary, bounded in time (about 1-2 min). See
# docs/serving.md ("What a request may hold") and docs/operations.md.
#
# A small model is trained on `onestone gen` data (its spec has a
# standardized field, item_popularity) and served with --strict. Then:
#
#  1. slow-body clients: SLOW (8) clients send a score request's headers
#                        and half its body, then 2 bytes/s (never done),
#                        reconnecting when answered, while hey sends
#                        RATE (50) normal requests/s for SECS (15) s,
#  2. unknown key:       requests with a misspelt feature ("pirce"),
#  3. 1e300:             item_popularity 1e300 (+Inf in float32 once
#                        standardized) in one candidate,
#  4. over-limit:        one request of 100,000 candidates (limit 2000),
#  5. unknown key, default mode: the server restarted without --strict,
#                        the misspelt requests again.
#
# Faults 2-5 run under RATE req/s of normal requests too. A fault passes
# when no normal request fails and the poison gets the answer expected.
# The script prints a JSON array, one object per fault (fault, done,
# expected, seen, pass), and exits 1 when any fault fails.
#
# BIN is the onestone binary to test (default: bin/onestone, built first).
set -euo pipefail

cd "$(dirname "$0")/.."
RATE=${RATE:-50}
SECS=${SECS:-15}          # hey run of the slow-body fault
POISON_SECS=${POISON_SECS:-5}
SLOW=${SLOW:-8}
P99_MS=${P99_MS:-50}      # the p99 the normal requests must keep beside the slow clients
BODY_TIMEOUT=${BODY_TIMEOUT:-5s}
WAIT=${WAIT:-60}          # longest wait for any one expectation, in seconds

log() { echo "chaos-serving: $*" >&2; }

if ! command -v hey >/dev/null 2>&1; then
	log "installing hey from Debian"
	if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
	$SUDO apt-get update -qq && $SUDO apt-get install -y -qq hey >/dev/null
fi
for tool in curl python3; do
	command -v $tool >/dev/null || { log "$tool is needed"; exit 1; }
done
if [ -z "${BIN:-}" ]; then
	BIN=bin/onestone
	log "building $BIN"
	go build -o "$BIN" ./cmd/onestone
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/onestone-chaos-serving.XXXXXX")
SERVER_PID=""
HEY_PID=""
SLOW_PID=""
cleanup() {
	[ -n "$HEY_PID" ] && kill "$HEY_PID" 2>/dev/null || true
	[ -n "$SLOW_PID" ] && kill "$SLOW_PID" 2>/dev/null || true
	if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

T0=$(date +%s)
log "training a small model on generated data under $WORK"
"$BIN" gen --rows 20000 --out "$WORK/data" >/dev/null 2>&1
"$BIN" train --spec "$WORK/data/spec.yaml" --data "$WORK/data/train-*.parquet" --out "$WORK/models" >"$WORK/train.log" 2>&1 ||
	{ cat "$WORK/train.log" >&2; log "train failed"; exit 1; }

# The requests: normal (50 candidates), misspelt, 1e300 and its null
# twin, 100,000 candidates.
python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
ctx = {"user_id": 17, "age": 31, "user_tags": ["t1", "t2"], "user_activity": 3.5, "device": "ios", "hour": "10", "position": "1"}
def cands(n):
    return [{"item_id": 1000 + i, "category": "c%d" % (i % 7), "brand": "b%d" % (i % 5), "price": 5 + i, "item_popularity": 0.1 * i} for i in range(n)]
def write(name, doc):
    open(w + "/" + name, "w").write(json.dumps(doc))
write("req.json", {"context": ctx, "candidates": cands(50)})
typo = cands(5)
typo[2]["pirce"] = typo[2].pop("price")
write("typo.json", {"context": ctx, "candidates": typo})
big = cands(5)
big[3]["item_popularity"] = 1e300
write("big.json", {"context": ctx, "candidates": big})
big[3]["item_popularity"] = None
write("null.json", {"context": ctx, "candidates": big})
open(w + "/over.json", "w").write('{"context": %s, "candidates": [%s]}' % (json.dumps(ctx), ",".join(["{}"] * 100000)))
PY

# The slow clients: SLOW connections that send the headers and half of
# req.json, then 1 byte every 0.5 s; each reconnects when answered. After
# DURATION s they stop and print {"connections": n, "codes": {code: n}}.
cat >"$WORK/slow.py" <<'PY'
import json, socket, sys, threading, time
host, port = sys.argv[1].rsplit(":", 1)
n, duration, body = int(sys.argv[2]), float(sys.argv[3]), open(sys.argv[4], "rb").read()
head = ("POST /v1/score HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (sys.argv[1], len(body))).encode()
end = time.time() + duration
lock = threading.Lock()
stats = {"connections": 0, "codes": {}}
def client():
    while time.time() < end:
        s = socket.create_connection((host, int(port)))
        with lock:
            stats["connections"] += 1
        half = len(body) // 2
        s.sendall(head + body[:half])
        s.settimeout(0.5)
        at, resp = half, b""
        while time.time() < end:
            try:
                data = s.recv(65536)
                if not data:
                    break
                resp += data
                if b"\r\n\r\n" in resp:
                    break
            except socket.timeout:
                try:
                    s.sendall(body[at:at + 1])
                    at += 1
                except OSError:
                    break
        s.close()
        if resp.startswith(b"HTTP/1.1 "):
            code = resp.split(b" ")[1].decode()
            with lock:
                stats["codes"][code] = stats["codes"].get(code, 0) + 1
threads = [threading.Thread(target=client) for _ in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(stats))
PY

start_server() {
	: >"$WORK/server.log"
	"$BIN" serve --models "$WORK/models" --addr 127.0.0.1:0 --poll -1s --body-timeout "$BODY_TIMEOUT" "$@" >>"$WORK/server.log" 2>&1 &
	SERVER_PID=$!
	ADDR=""
	for _ in $(seq 1 $((WAIT * 10))); do
		ADDR=$(grep -o 'addr=127\.0\.0\.1:[0-9]*' "$WORK/server.log" | head -1 | cut -d= -f2 || true)
		if [ -n "$ADDR" ] && curl -fsS "http://$ADDR/readyz" >/dev/null 2>&1; then return 0; fi
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$WORK/server.log" >&2; log "server died"; exit 1; fi
		sleep 0.1
	done
	cat "$WORK/server.log" >&2
	log "server not ready after ${WAIT}s"
	exit 1
}

stop_server() {
	kill -TERM "$SERVER_PID"
	wait "$SERVER_PID" || { cat "$WORK/server.log" >&2; log "server exited with an error"; exit 1; }
	SERVER_PID=""
}

metric() { curl -fsS "http://$ADDR/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
alive() { kill -0 "$SERVER_PID" 2>/dev/null && echo yes || echo no; }

# wait_for WHAT COMMAND...: runs COMMAND until it succeeds, at most $WAIT s.
wait_for() {
	local what=$1
	shift
	for _ in $(seq 1 $((WAIT * 10))); do
		if "$@"; then return 0; fi
		sleep 0.1
	done
	log "timed out waiting for $what"
	return 1
}

HEY_OUT=""
# load_start NAME SECONDS: normal requests at RATE req/s, evenly spaced.
load_start() {
	HEY_OUT="$WORK/hey-$1.txt"
	hey -z "${2}s" -c 1 -q "$RATE" -m POST -T application/json -D "$WORK/req.json" "http://$ADDR/v1/score" >"$HEY_OUT" 2>&1 &
	HEY_PID=$!
}
# load_end: waits for hey and sets total, bad (a status other than 200, or
# a transport error), p50 and p99 (ms).
load_end() {
	wait "$HEY_PID" || true
	HEY_PID=""
	read -r total bad p50 p99 <<<"$(awk '
	/^  50% in/ { p50 = $3 * 1000 }
	/^  99% in/ { p99 = $3 * 1000 }
	/^Status code distribution:/ { incode = 1; inerr = 0; next }
	/^Error distribution:/ { inerr = 1; incode = 0; next }
	incode && /^  \[[0-9]+\]/ {
		code = substr($1, 2, length($1) - 2); n = $2 + 0; total += n
		if (code != "200") bad += n
	}
	inerr && /^  \[[0-9]+\]/ { n = substr($1, 2, length($1) - 2) + 0; bad += n; total += n }
	END { printf "%d %d %.1f %.1f\n", total, bad, p50, p99 }' "$HEY_OUT")"
}

# post FILE: "code seconds" of one score request, its body in $WORK/answer.json.
post() {
	curl -sS -o "$WORK/answer.json" -w '%{http_code} %{time_total}' -H 'Content-Type: application/json' \
		--data-binary "@$1" "http://$ADDR/v1/score"
}

RESULTS=()
FAILED=0
# record FAULT DONE EXPECTED SEEN PASS
record() {
	local pass=$5
	[ "$pass" = true ] || FAILED=$((FAILED + 1))
	RESULTS+=("$(python3 -c '
import json, sys
a = sys.argv[1:]
print(json.dumps({"fault": a[0], "done": a[1], "expected": a[2], "seen": a[3], "pass": a[4] == "true"}))
' "$@")")
	log "$1: $([ "$pass" = true ] && echo PASS || echo FAIL): $4"
}

start_server --strict
log "serving $(curl -fsS "http://$ADDR/readyz") on $ADDR (--strict)"
hey -n 20 -c 1 -m POST -T application/json -D "$WORK/req.json" "http://$ADDR/v1/score" >/dev/null # warm up

# 1. Slow-body clients.
python3 "$WORK/slow.py" "$ADDR" "$SLOW" $((SECS + 3)) "$WORK/req.json" >"$WORK/slow.json" &
SLOW_PID=$!
reading=0
if wait_for "$SLOW slow bodies being read" sh -c "[ \"\$(curl -fsS http://$ADDR/metrics | awk '\$1 == \"onestone_score_reading\" { print \$2 }')\" = $SLOW ]"; then
	reading=$SLOW
fi
load_start slow "$SECS"
sleep $((SECS / 2))
reading_mid=$(metric onestone_score_reading)
load_end
wait "$SLOW_PID" || true
SLOW_PID=""
slow=$(cat "$WORK/slow.json" 2>/dev/null || echo '{}')
n408=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1]).get("codes", {}).get("408", 0))' "$slow")
pass=false
[ "$reading" = "$SLOW" ] && [ "$bad" -eq 0 ] && [ "$total" -gt 0 ] && [ "$n408" -gt 0 ] && [ "$(alive)" = yes ] &&
	awk -v p="$p99" -v max="$P99_MS" 'BEGIN { exit !(p < max) }' && pass=true
record "slow-body clients" \
	"$SLOW clients sent a score request's headers and half its body, then 2 bytes/s, reconnecting when answered, for $((SECS + 3)) s; meanwhile hey sent $RATE req/s of 50 candidates for $SECS s" \
	"the slow bodies are read without holding a slot (onestone_score_reading $SLOW); normal requests: 0 failed, p99 under $P99_MS ms; the slow clients get 408 after --body-timeout $BODY_TIMEOUT" \
	"bodies being read: $reading at the start, ${reading_mid:-?} halfway; normal requests: $bad of $total failed, p50 $p50 ms, p99 $p99 ms; slow clients: $slow; server alive: $(alive); load average $(cut -d' ' -f1-3 /proc/loadavg)" \
	"$pass"

# 2. A misspelt feature key, --strict.
load_start typo "$POISON_SECS"
codes=""
fields_ok=yes
for _ in 1 2 3 4 5 6 7 8 9 10; do
	read -r code _ <<<"$(post "$WORK/typo.json")"
	codes="$codes $code"
	grep -q '"field":"candidates\[2\]\.pirce"' "$WORK/answer.json" || fields_ok=no
done
msg=$(cat "$WORK/answer.json")
load_end
pass=false
[ "$(echo $codes | tr ' ' '\n' | sort -u)" = 400 ] && [ "$fields_ok" = yes ] && [ "$bad" -eq 0 ] && [ "$total" -gt 0 ] && pass=true
record "unknown key (--strict)" \
	"10 requests whose candidate 2 has \"pirce\" for \"price\", to serve --strict, under $RATE req/s of normal requests" \
	"400 naming candidates[2].pirce each time; 0 normal requests failed" \
	"codes:$codes; last answer: $msg; normal requests: $bad of $total failed" \
	"$pass"

# 3. A value beyond float32 once standardized.
load_start big "$POISON_SECS"
read -r code _ <<<"$(post "$WORK/big.json")"
cp "$WORK/answer.json" "$WORK/big-answer.json"
read -r ncode _ <<<"$(post "$WORK/null.json")"
load_end
verdict=$(python3 - "$WORK/big-answer.json" "$WORK/answer.json" <<'PY'
import json, math, sys
try:
    big, null = (json.load(open(p)) for p in sys.argv[1:])
except Exception as e:
    print("unreadable answer: %s" % e); sys.exit(0)
def scores(doc):
    return {r["index"]: r["scores"] for r in doc["results"]}
b, n = scores(big), scores(null)
bad = [i for i, s in b.items() for v in s.values() if not isinstance(v, (int, float)) or not math.isfinite(v)]
if bad:
    print("non-finite scores of candidates %s: %s" % (sorted(set(bad)), b[bad[0]]))
elif b != n:
    print("scores differ from the null twin's: candidate 3 %s vs %s" % (b.get(3), n.get(3)))
else:
    print("ok: every score finite; candidate 3 scores %s, as with null" % b[3])
PY
)
pass=false
[ "$code" = 200 ] && [ "$ncode" = 200 ] && [[ "$verdict" == ok:* ]] && [ "$bad" -eq 0 ] && [ "$total" -gt 0 ] && pass=true
record "1e300" \
	"a request whose candidate 3 has item_popularity 1e300 (standardized, +Inf in float32), and its twin with null, under $RATE req/s of normal requests" \
	"200, every score finite (none null), candidate 3 scored as with null (the field's default); 0 normal requests failed" \
	"codes $code (1e300) and $ncode (null); $verdict; normal requests: $bad of $total failed" \
	"$pass"

# 4. Over the candidate limit.
load_start over "$POISON_SECS"
read -r code secs <<<"$(post "$WORK/over.json")"
msg=$(cat "$WORK/answer.json")
load_end
pass=false
[ "$code" = 400 ] && [[ "$msg" == *"more than 2000 candidates"* ]] && [[ "$msg" == *'"field":"candidates"'* ]] &&
	awk -v s="$secs" 'BEGIN { exit !(s < 2) }' && [ "$bad" -eq 0 ] && [ "$total" -gt 0 ] && [ "$(alive)" = yes ] && pass=true
record "over-limit candidates" \
	"one request of 100,000 candidates ($(stat -c %s "$WORK/over.json") bytes; --max-candidates 2000), under $RATE req/s of normal requests" \
	"400 naming candidates and the limit, answered in under 2 s; 0 normal requests failed" \
	"code $code in $secs s: $msg; normal requests: $bad of $total failed; server alive: $(alive)" \
	"$pass"

# 5. The misspelt key without --strict: scored and counted.
stop_server
start_server
load_start typo-default "$POISON_SECS"
before=$(metric onestone_score_unknown_keys_total)
codes=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
	read -r code _ <<<"$(post "$WORK/typo.json")"
	codes="$codes $code"
done
after=$(metric onestone_score_unknown_keys_total)
load_end
pass=false
[ "$(echo $codes | tr ' ' '\n' | sort -u)" = 200 ] && [ "$((${after%.*} - ${before%.*}))" -eq 10 ] && [ "$bad" -eq 0 ] && [ "$total" -gt 0 ] && pass=true
record "unknown key (default mode)" \
	"the server restarted without --strict; the 10 misspelt requests again, under $RATE req/s of normal requests" \
	"200 each (price takes its default), onestone_score_unknown_keys_total up by 10; 0 normal requests failed" \
	"codes:$codes; onestone_score_unknown_keys_total $before -> $after; normal requests: $bad of $total failed" \
	"$pass"

stop_server
log "done in $(($(date +%s) - T0)) s"
printf '[\n'
for i in "${!RESULTS[@]}"; do
	sep=","
	[ "$i" -eq $((${#RESULTS[@]} - 1)) ] && sep=""
	printf '  %s%s\n' "${RESULTS[$i]}" "$sep"
done
printf ']\n'
[ "$FAILED" -eq 0 ]
