#!/usr/bin/env bash
# Chaos, part 3: bundle faults against a live `onestone serve` on loopback,
# with the real binary, bounded in time (about 3-5 min). See
# docs/operations.md ("Serving: bundle faults").
#
# A server polls a root holding one good std bundle (random weights, 170
# MB) while hey sends 100 req/s of 50 candidates. One after the other:
#
#  1. truncated weights:  a version whose weights are cut in half,
#  2. flipped byte:       a version with one byte flipped in the middle of
#                         its weights (embedding rows no sample event uses),
#  3. huge manifest:      a version whose manifest asks for 2,000,000,000
#                         rows in one table (its checksum rewritten to
#                         match: a writer's bug, not a corruption),
#  4. half-copied:        a version copied in place, weights first half,
#                         then completed,
#  5. bad newest at restart: the server is restarted while the newest
#                         version has truncated weights.
#
# Each fault runs under its own 100 req/s of hey. It passes when no request
# fails, the server is alive, the version served is the one expected, and
# the refusal is the one expected. The script prints a JSON array, one
# object per fault (fault, done, expected, seen, served, requests, failed,
# pass), and exits 1 when any fault fails.
#
# BIN is the onestone binary to test (default: bin/onestone, built first).
set -euo pipefail

cd "$(dirname "$0")/.."
RATE=${RATE:-100}
SECS=${SECS:-12}       # hey run per fault
CANDIDATES=${CANDIDATES:-50}
WAIT=${WAIT:-90}       # longest wait for any one expectation, in seconds

log() { echo "chaos-bundles: $*" >&2; }

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

WORK=$(mktemp -d "${TMPDIR:-/tmp}/onestone-chaos-bundles.XXXXXX")
ROOT="$WORK/models"
STAGE="$WORK/stage"
SERVER_PID=""
HEY_PID=""
cleanup() {
	[ -n "$HEY_PID" ] && kill "$HEY_PID" 2>/dev/null || true
	if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

# stage SEED: writes a good std bundle under $STAGE and prints its dir.
stage() { "$BIN" stdbundle --out "$STAGE" --seed "$1" 2>/dev/null; }

# crc32c_sidecar DIR: rewrites DIR/bundle.json.crc32c for DIR/bundle.json
# (CRC-32C, Castagnoli, computed here independently of onestone).
crc32c_sidecar() {
	python3 - "$1" <<'PY'
import json, sys
poly, table = 0x82F63B78, []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ poly if c & 1 else c >> 1
    table.append(c)
data = open(sys.argv[1] + "/bundle.json", "rb").read()
crc = 0xFFFFFFFF
for b in data:
    crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
crc ^= 0xFFFFFFFF
open(sys.argv[1] + "/bundle.json.crc32c", "w").write(json.dumps({"size": len(data), "crc32c": "%08x" % crc}) + "\n")
PY
}

start_server() {
	: >"$WORK/server.log"
	"$BIN" serve --models "$ROOT" --addr 127.0.0.1:0 --poll 500ms >>"$WORK/server.log" 2>&1 &
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

served() { curl -fsS "http://$ADDR/readyz" 2>/dev/null | sed -n 's/^ready //p'; }
model_json() { curl -sS "http://$ADDR/v1/model" 2>/dev/null || true; }
# refusal VERSION: "reason attempts" of VERSION in /v1/model, or "".
refusal() {
	model_json | python3 -c '
import json, sys
try:
    doc = json.load(sys.stdin)
except Exception:
    sys.exit(0)
for r in doc.get("refused", []):
    if r["version"] == sys.argv[1]:
        print(r["reason"], r["attempts"])
' "$1"
}
rss_peak_mb() { awk '/^VmHWM:/ { printf "%d", $2 / 1024 }' "/proc/$SERVER_PID/status"; }

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
load_start() {
	HEY_OUT="$WORK/hey-$1.txt"
	hey -z "${SECS}s" -c 1 -q "$RATE" -m POST -T application/json -D "$WORK/req.json" "http://$ADDR/v1/score" >"$HEY_OUT" 2>&1 &
	HEY_PID=$!
}
# load_end: waits for hey and sets total and bad (requests sent, and those
# that failed: a status other than 200, or a transport error).
load_end() {
	wait "$HEY_PID" || true
	HEY_PID=""
	read -r total bad <<<"$(awk '
	/^Status code distribution:/ { incode = 1; inerr = 0; next }
	/^Error distribution:/ { inerr = 1; incode = 0; next }
	incode && /^  \[[0-9]+\]/ {
		code = substr($1, 2, length($1) - 2); n = $2 + 0; total += n
		if (code != "200") bad += n
	}
	inerr && /^  \[[0-9]+\]/ { n = substr($1, 2, length($1) - 2) + 0; bad += n; total += n }
	END { printf "%d %d\n", total, bad }' "$HEY_OUT")"
}

RESULTS=()
FAILED=0
# record FAULT DONE EXPECTED SEEN SERVED REQUESTS FAILED PASS
record() {
	local pass=$8
	[ "$pass" = true ] || FAILED=$((FAILED + 1))
	RESULTS+=("$(python3 -c '
import json, sys
a = sys.argv[1:]
print(json.dumps({"fault": a[0], "done": a[1], "expected": a[2], "seen": a[3], "served": a[4],
                  "requests": int(a[5]), "failed": int(a[6]), "pass": a[7] == "true"}))
' "$@")")
	log "$1: $([ "$pass" = true ] && echo PASS || echo FAIL): $4"
}

# check_refused FAULT DONE VERSION REASON: waits for VERSION to be refused
# for REASON while the load runs, then records the outcome (v00000001 must
# keep serving, every request succeed, the server live).
check_refused() {
	local fault=$1 done=$2 v=$3 reason=$4 want=v00000001
	local seen_reason=""
	if wait_for "$v refused" sh -c "[ -n \"\$(curl -sS http://$ADDR/v1/model | grep -o '\"version\": \"$v\"')\" ]"; then
		seen_reason=$(refusal "$v" | cut -d' ' -f1)
	fi
	load_end
	local now alive=yes
	now=$(served)
	kill -0 "$SERVER_PID" 2>/dev/null || alive=no
	local pass=false
	[ "$seen_reason" = "$reason" ] && [ "$now" = "$want" ] && [ "$bad" -eq 0 ] && [ "$total" -gt 0 ] && [ "$alive" = yes ] && pass=true
	record "$fault" "$done" "$v refused ($reason), $want keeps serving, 0 failed requests" \
		"$v refused (${seen_reason:-not refused}), serving ${now:-nothing}, $bad of $total requests failed, server alive: $alive, server peak RSS $(rss_peak_mb) MB" \
		"$now" "$total" "$bad" "$pass"
}

T0=$(date +%s)
log "writing the std bundles under $WORK (170 MB each)"
mkdir -p "$ROOT"
"$BIN" stdbundle --out "$ROOT" --seed 1 --request "$WORK/req.json" --candidates "$CANDIDATES" >/dev/null 2>&1
start_server
log "serving $(served) on $ADDR"
# Warm up (pools, page cache).
hey -n 20 -c 1 -m POST -T application/json -D "$WORK/req.json" "http://$ADDR/v1/score" >/dev/null

# 1. Truncated weights.
d=$(stage 2)
w="$d/weights.safetensors"
truncate -s $(($(stat -c %s "$w") / 2)) "$w"
load_start truncated
sleep 2
mv "$d" "$ROOT/v00000002"
check_refused "truncated weights" "published v00000002 with weights.safetensors cut to half its size (atomic rename)" v00000002 checksum

# 2. A flipped byte in the middle of the weights.
d=$(stage 3)
python3 - "$d/weights.safetensors" <<'PY'
import os, sys
with open(sys.argv[1], "r+b") as f:
    at = os.path.getsize(sys.argv[1]) // 2
    f.seek(at); b = f.read(1); f.seek(at); f.write(bytes([b[0] ^ 0x10]))
PY
load_start flipped
sleep 2
mv "$d" "$ROOT/v00000003"
check_refused "flipped byte" "published v00000003 with one byte of weights.safetensors flipped at its middle (embedding rows)" v00000003 checksum

# 3. A manifest asking for 2,000,000,000 rows, checksum matching.
d=$(stage 4)
sed -i 's/name: c0, kind: categorical, buckets: 100000,/name: c0, kind: categorical, buckets: 2000000000,/' "$d/bundle.json"
grep -q 'buckets: 2000000000' "$d/bundle.json" || { log "the manifest edit did not apply"; exit 1; }
crc32c_sidecar "$d"
load_start huge
sleep 2
mv "$d" "$ROOT/v00000004"
check_refused "huge manifest" "published v00000004 whose spec says buckets: 2000000000 for c0 (128 GB of embeddings), its bundle.json.crc32c rewritten to match" v00000004 too_large

# 4. A version copied in place: half the weights, then the rest.
d=$(stage 5)
dst="$ROOT/v00000005"
size=$(stat -c %s "$d/weights.safetensors")
half=$((size / 2))
load_start halfcopy
sleep 2
mkdir "$dst"
head -c "$half" "$d/weights.safetensors" >"$dst/weights.safetensors"
cp "$d/bundle.json.crc32c" "$d/bundle.json" "$dst/"
seen_half=""
if wait_for "the half copy refused" sh -c "[ -n \"\$(curl -sS http://$ADDR/v1/model | grep -o '\"version\": \"v00000005\"')\" ]"; then
	sleep 2 # four polls with the copy unchanged
	seen_half=$(refusal v00000005)
fi
served_half=$(served)
tail -c +$((half + 1)) "$d/weights.safetensors" >>"$dst/weights.safetensors"
wait_for "v00000005 served" sh -c "[ \"\$(curl -fsS http://$ADDR/readyz 2>/dev/null)\" = 'ready v00000005' ]" || true
load_end
now=$(served)
pass=false
[ "$seen_half" = "checksum 1" ] && [ "$served_half" = v00000001 ] && [ "$now" = v00000005 ] && [ "$bad" -eq 0 ] && [ "$total" -gt 0 ] && pass=true
record "half-copied directory" "copied v00000005 in place: weights.safetensors's first half, then bundle.json.crc32c and bundle.json; 2 s later the rest of the weights" \
	"refused once (checksum) while half-copied, v00000001 serving meanwhile; v00000005 served once complete; 0 failed requests" \
	"while half-copied: refusal '${seen_half:-none}' (reason attempts), serving ${served_half:-nothing}; after the copy: serving ${now:-nothing}; $bad of $total requests failed" \
	"$now" "$total" "$bad" "$pass"

# 5. A restart while the newest version is bad.
d=$(stage 6)
w="$d/weights.safetensors"
truncate -s $(($(stat -c %s "$w") / 3)) "$w"
mv "$d" "$ROOT/v00000006"
stop_server
start_server
load_start restart
sleep 1
now=$(served)
seen_reason=$(refusal v00000006 | cut -d' ' -f1)
behind=$(curl -fsS "http://$ADDR/metrics" | awk '/^onestone_model_versions_behind / { print $2 }')
load_end
pass=false
[ "$now" = v00000005 ] && [ "$seen_reason" = checksum ] && [ "$behind" = 1 ] && [ "$bad" -eq 0 ] && [ "$total" -gt 0 ] && pass=true
record "bad newest bundle at restart" "published v00000006 with weights.safetensors cut to a third, then restarted the server (SIGTERM, start)" \
	"the server starts on v00000005 (the newest valid), v00000006 refused (checksum), onestone_model_versions_behind 1, 0 failed requests" \
	"serving ${now:-nothing}, v00000006 refused (${seen_reason:-not refused}), versions behind ${behind:-?}, $bad of $total requests failed after the restart" \
	"$now" "$total" "$bad" "$pass"

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
