#!/usr/bin/env bash
# Exact tables against hash buckets of equal memory (issue 14), on
# generated data with more distinct ids than buckets and Zipf-skewed id
# picks. For each seed: `onestone gen` (--user-zipf/--item-zipf), then
# the same model trained for one epoch twice, once with user_id and
# item_id hashed into buckets and once with exact tables of the same
# memory, and the CTR and CTCVR AUC of each on the test file. Prints a
# Markdown table (docs/spec.md keeps one) and keeps the JSON in OUT.
#
# Equal memory: a hash field of B buckets has B+1 embedding rows; an
# exact field of capacity C has 1 + shared + C rows (shared = C/100) plus
# its map (features.Exact.MapBytes: 16 bytes a slot at 4/3 slots per row,
# 12 bytes per row, and with admit_after > 1 24 bytes a slot of the
# waiting set, here of C/2 ids: about 49 bytes per row). With the spec's
# embedding_dim 32 and row-wise Adagrad a row is 132 bytes (128 of
# weights, 4 of accumulator). C is the largest capacity whose rows and
# map fit in the B+1 rows of the hash field: 50,000 user buckets (6.60
# MB) give capacity 39,603 and 396 shared rows with admit_after 1
# (33 bytes of map per row), 36,134 and 361 with admit_after 2.
# Takes a few minutes per seed on a loaded 2-core machine.
#
# Environment: SEEDS (default "1 2 3"), ROWS (default 1000000), USERS
# (200000), ITEMS (50000), ZIPF (1.05, users and items), UB and IB (user
# and item buckets, default 50000 and 12500), ADMIT (admit_after,
# default 1), EVICT (lfu), DROP (fields to leave out of both specs, for
# example "user_activity item_popularity", the dense columns that reveal
# the users' and items' effects; default none), BIN (default
# bin/onestone, built when missing), OUT (default a new directory under
# /tmp).
set -euo pipefail

cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-1 2 3}
ROWS=${ROWS:-1000000}
USERS=${USERS:-200000}
ITEMS=${ITEMS:-50000}
ZIPF=${ZIPF:-1.05}
BIN=${BIN:-bin/onestone}
OUT=${OUT:-$(mktemp -d /tmp/exact-vs-hash.XXXXXX)}
mkdir -p "$OUT"
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/onestone

UB=${UB:-50000}
IB=${IB:-12500}
ADMIT=${ADMIT:-1}
EVICT=${EVICT:-lfu}

# exact B: the exact table of the memory of B buckets (see above).
exact() {
	python3 - "$1" "$ADMIT" "$EVICT" <<'PY'
import sys
b, admit, evict = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
row = 32 * 4 + 4
slots = lambda n: n + n // 3 + 1
def size(c):
    s, w = max(1, c // 100), max(1, c // 2)
    m = 16 * slots(c) + 12 * c + (24 * slots(w) if admit > 1 else 0)
    return (1 + s + c) * row + m
lo, hi = 1, b
while lo < hi:
    mid = (lo + hi + 1) // 2
    if size(mid) <= (1 + b) * row: lo = mid
    else: hi = mid - 1
c = lo
w = ", waiting: %d" % max(1, c // 2) if admit > 1 else ""
print("exact: {capacity: %d, shared: %d, admit_after: %d%s, evict: %s}" % (c, max(1, c // 100), admit, w, evict))
PY
}
HASH_USER="buckets: $UB"
HASH_ITEM="buckets: $IB"
EXACT_USER=$(exact "$UB")
EXACT_ITEM=$(exact "$IB")
echo "user_id: $HASH_USER against $EXACT_USER" >&2
echo "item_id: $HASH_ITEM against $EXACT_ITEM" >&2
DROP=${DROP:-}
drop=()
for f in $DROP; do drop+=(-e "/name: $f, /d"); done
TAG="u$UB-i$IB-a$ADMIT-$EVICT${DROP:+-no-${DROP// /-}}"
HTAG="u$UB-i$IB${DROP:+-no-${DROP// /-}}"

auc() { # auc FILE OBJECTIVE: the final AUC of an objective in train --json
	python3 -c 'import json,sys
r = json.load(open(sys.argv[1]))
print("%.4f" % next(m["auc"] for m in r["final"]["metrics"] if m["objective"] == sys.argv[2]))' "$1" "$2"
}
rate() { python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["examples_per_sec"])' "$1"; }

for seed in $SEEDS; do
	data="$OUT/data-$seed"
	if [ ! -f "$data/test-00000.parquet" ]; then
		"$BIN" gen --rows "$ROWS" --users "$USERS" --items "$ITEMS" --user-zipf "$ZIPF" --item-zipf "$ZIPF" \
			--seed "$seed" --files 2 --out "$data" >"$data.gen.txt"
	fi
	for mode in hash exact; do
		if [ "$mode" = hash ]; then u=$HASH_USER i=$HASH_ITEM; else u=$EXACT_USER i=$EXACT_ITEM; fi
		spec="$data/spec-$TAG-$mode.yaml"
		[ "$mode" = hash ] && spec="$data/spec-$HTAG-hash.yaml"
		sed "${drop[@]}" -e "s/name: user_id, kind: categorical, buckets: [0-9]*/name: user_id, kind: categorical, $u/" \
			-e "s/name: item_id, kind: categorical, buckets: [0-9]*/name: item_id, kind: categorical, $i/" \
			-e "s/^  arch: mmoe/  arch: mmoe\n  seed: $seed/" "$data/spec.yaml" >"$spec"
		grep -q "user_id, kind: categorical, ${u%%:*}" "$spec" && grep -q "seed: $seed" "$spec"
		res="$OUT/seed$seed-$TAG-$mode.json"
		[ "$mode" = hash ] && res="$OUT/seed$seed-$HTAG-hash.json"
		[ -f "$res" ] || "$BIN" train --spec "$spec" --data "$data/train-*.parquet" --valid "$data/test-00000.parquet" \
			--out "$OUT/models-$seed-$TAG-$mode" --quiet --json >"$res.tmp"
		[ -f "$res" ] || mv "$res.tmp" "$res"
	done
done

echo "| seed | hash CTR AUC | exact CTR AUC | hash CTCVR AUC | exact CTCVR AUC | hash ex/s | exact ex/s |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for seed in $SEEDS; do
	h="$OUT/seed$seed-$HTAG-hash.json" e="$OUT/seed$seed-$TAG-exact.json"
	echo "| $seed | $(auc "$h" ctr) | $(auc "$e" ctr) | $(auc "$h" ctcvr) | $(auc "$e" ctcvr) | $(rate "$h") | $(rate "$e") |"
done
echo "(raw results in $OUT)"
