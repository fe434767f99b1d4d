#!/usr/bin/env bash
# Chaos: the production faults of issue 12 injected with the real binaries
# on loopback, bounded in time (about 10 min in all). `make chaos` runs it.
# See docs/operations.md.
#
# It runs every scripts/chaos-*.sh part, one after the other:
#
#   chaos-stream.sh   1. poison events through kcat into a live onestone
#                        stream; 2. ten SIGKILLs of onestone stream against
#                        onestone broker --data while onestone produce
#                        sends events
#   chaos-bundles.sh  3. bundle faults against onestone serve under 100
#                        req/s of hey
#   (and any other chaos-*.sh, e.g. chaos-serving.sh)
#
# Each part prints a JSON array, one object per fault (done, expected,
# seen, pass, and what else it reports), on its standard output; its log
# goes to standard error. This script merges them into ONE JSON array, each
# object naming its part, and exits 1 when any fault fails, or a part
# fails without saying which fault (that part then counts as a failed
# fault of its own). It installs kcat and hey with apt when they are
# missing (the parts do the same when run alone).
#
# BIN is the onestone binary to test (default: bin/onestone, built first).
# PARTS lists the parts to run (default: every scripts/chaos-*.sh, the
# stream's first).
set -euo pipefail

cd "$(dirname "$0")/.."
log() { echo "chaos: $*" >&2; }

missing=()
for tool in kcat hey; do command -v $tool >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]} from Debian"
	if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
	$SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for tool in curl python3 go; do
	command -v $tool >/dev/null || { log "$tool is needed"; exit 1; }
done
if [ -z "${BIN:-}" ]; then
	BIN=bin/onestone
	log "building $BIN"
	go build -o "$BIN" ./cmd/onestone
fi
export BIN

OUT=$(mktemp -d "${TMPDIR:-/tmp}/onestone-chaos.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

# The stream's parts first (1 and 2), then the others in name order.
read -r -a parts <<<"${PARTS:-$(ls scripts/chaos-*.sh | awk '/chaos-stream/ { print; next } { rest = rest $0 " " } END { print rest }' | tr '\n' ' ')}"
T0=$SECONDS
for p in "${parts[@]}"; do
	name=$(basename "$p" .sh)
	log "== $name"
	t=$SECONDS
	rc=0
	case $p in /*) cmd=$p ;; *) cmd=./$p ;; esac
	"$cmd" >"$OUT/$name.json" || rc=$?
	echo "$rc $((SECONDS - t))" >"$OUT/$name.rc"
	log "== $name: exit $rc after $((SECONDS - t)) s"
done
log "all parts done in $((SECONDS - T0)) s"

python3 - "$OUT" "${parts[@]}" <<'PY'
import json, os, sys
out, parts = sys.argv[1], sys.argv[2:]
merged, failed = [], 0
for p in parts:
    name = os.path.basename(p)[:-3]
    rc, secs = (int(x) for x in open(os.path.join(out, name + ".rc")).read().split())
    text = open(os.path.join(out, name + ".json")).read()
    start = text.find("[")
    try:
        faults = json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        faults = None
    if not isinstance(faults, list) or not faults:
        merged.append({"part": name, "fault": name, "done": "ran " + p, "expected": "a JSON summary and exit 0",
                       "seen": "exit %d after %d s without a JSON summary" % (rc, secs), "pass": False})
        failed += 1
        continue
    for f in faults:
        merged.append({"part": name, **f})
        failed += not f.get("pass", False)
    if rc != 0 and all(f.get("pass", False) for f in faults):
        merged.append({"part": name, "fault": name, "done": "ran " + p, "expected": "exit 0 when every fault passes",
                       "seen": "exit %d after %d s" % (rc, secs), "pass": False})
        failed += 1
print(json.dumps(merged, indent=2))
print("chaos: %d of %d faults passed" % (len(merged) - failed, len(merged)), file=sys.stderr)
sys.exit(1 if failed else 0)
PY
