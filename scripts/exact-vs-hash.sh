#!/usr/bin/env bash
# Exact tables against hash buckets of equal memory (issue 14), on
# generated data with more distinct ids than buckets and Zipf-skewed id
# picks. For each seed: `onestone gen` (--user-zipf/--item-zipf, a large
# test file so that AUC differences of a few thousandths show), then the
# same model trained for one epoch, for each memory budget, once with
# user_id and item_id hashed into that many buckets and once with exact
# tables of the same memory, with and without the dense columns that
# reveal the ids' effects; and once with REF_BUCKETS buckets, the
# reference of what collisions cost on this data. Prints the CTR and
# CTCVR AUC on the test file (docs/spec.md keeps the table) and keeps
# the JSON in OUT.
#
# Equal memory: a hash field of B buckets has B+1 embedding rows; an
# exact field of capacity C has 1 + shared + C rows (shared = C/100) plus
# its map, features.Exact.MapBytes (with evict lfu, at 2 slots a row:
# about 57 bytes a row; more with admit_after > 1, here with a waiting
# set of C/2 ids). With the spec's embedding_dim 32 and row-wise Adagrad
# a row is 132 bytes (128 of weights, 4 of accumulator). C is the
# largest capacity whose rows and map fit in the B+1 rows of the hash
# field (scripts/exactcap computes it from MapBytes): 50,000 user
# buckets give capacity 34,199 with admit_after 1 and evict lfu.
# Takes about 40 minutes for 5 seeds on a loaded 2-core machine.
#
# Environment: SEEDS (default "1 2 3 4 5"), ROWS (default 1300000),
# TEST_FRAC (0.3), USERS (200000), ITEMS (50000), ZIPF (1.05, users and
# items), BUDGETS (user:item buckets of each memory budget, default
# "50000:12500 5000:1250"), REF_BUCKETS (800000:200000), ADMIT
# (admit_after, default 1), EVICT (lfu), DROPS (the sets of fields to
# leave out of every spec, separated by commas, an empty set included:
# default ",user_activity item_popularity", the dense columns that reveal
# the users' and items' effects), BIN (default bin/onestone, built when
# missing), OUT (default a new directory under /tmp).
set -euo pipefail

cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-1 2 3 4 5}
ROWS=${ROWS:-1300000}
TEST_FRAC=${TEST_FRAC:-0.3}
USERS=${USERS:-200000}
ITEMS=${ITEMS:-50000}
ZIPF=${ZIPF:-1.05}
BUDGETS=${BUDGETS:-50000:12500 5000:1250}
REF_BUCKETS=${REF_BUCKETS:-800000:200000}
ADMIT=${ADMIT:-1}
EVICT=${EVICT:-lfu}
DROPS=${DROPS:-,user_activity item_popularity}
BIN=${BIN:-bin/onestone}
OUT=${OUT:-$(mktemp -d /tmp/exact-vs-hash.XXXXXX)}
mkdir -p "$OUT"
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/onestone

# exact B: the exact table of the memory of B buckets (see above).
go build -o "$OUT/exactcap" ./scripts/exactcap
exact() { "$OUT/exactcap" -buckets "$1" -row 132 -admit "$ADMIT" -evict "$EVICT"; }

# train SEED NAME USER ITEM DROP: one training run, its JSON in
# $OUT/NAME-seedSEED.json.
train() {
	local seed=$1 name=$2 u=$3 i=$4 drop=() f
	for f in $5; do drop+=(-e "/name: $f, /d"); done
	local data="$OUT/data-$seed" spec="$OUT/data-$seed/spec-$name.yaml" res="$OUT/$name-seed$seed.json"
	[ -f "$res" ] && return
	sed "${drop[@]}" -e "s/name: user_id, kind: categorical, buckets: [0-9]*/name: user_id, kind: categorical, $u/" \
		-e "s/name: item_id, kind: categorical, buckets: [0-9]*/name: item_id, kind: categorical, $i/" \
		-e "s/^  arch: mmoe/  arch: mmoe\n  seed: $seed/" "$data/spec.yaml" >"$spec"
	grep -q "name: user_id, kind: categorical, ${u%%:*}" "$spec" && grep -q "seed: $seed" "$spec"
	"$BIN" train --spec "$spec" --data "$data/train-*.parquet" --valid "$data/test-00000.parquet" \
		--out "$OUT/models-$name-$seed" --quiet --json >"$res.tmp"
	mv "$res.tmp" "$res"
	rm -rf "$OUT/models-$name-$seed"
}

names=()
for seed in $SEEDS; do
	data="$OUT/data-$seed"
	if [ ! -f "$data/test-00000.parquet" ]; then
		"$BIN" gen --rows "$ROWS" --test-frac "$TEST_FRAC" --users "$USERS" --items "$ITEMS" \
			--user-zipf "$ZIPF" --item-zipf "$ZIPF" --seed "$seed" --files 2 --out "$data" >"$data.gen.txt"
	fi
	IFS=, read -ra dropsets <<<"$DROPS"
	[ "${DROPS: -1}" = , ] && dropsets+=("")
	for drop in "${dropsets[@]}"; do
		dtag=${drop:+-no-${drop// /-}}
		for budget in $BUDGETS; do
			ub=${budget%%:*} ib=${budget##*:}
			train "$seed" "hash-$ub$dtag" "buckets: $ub" "buckets: $ib" "$drop"
			train "$seed" "exact-$ub-a$ADMIT-$EVICT$dtag" "$(exact "$ub")" "$(exact "$ib")" "$drop"
		done
		ub=${REF_BUCKETS%%:*} ib=${REF_BUCKETS##*:}
		train "$seed" "hash-$ub$dtag" "buckets: $ub" "buckets: $ib" "$drop"
	done
done

for budget in $BUDGETS; do
	echo "user_id/item_id at the memory of ${budget/:/\/} buckets: $(exact "${budget%%:*}") / $(exact "${budget##*:}")"
done
python3 - "$OUT" "$BUDGETS" "${REF_BUCKETS%%:*}" "a$ADMIT-$EVICT" "$SEEDS" "$DROPS" <<'PY'
import json, math, sys
out, budgets, ref, pol, seeds, drops = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4], sys.argv[5].split(), sys.argv[6].split(",")
def auc(name, seed, obj):
    r = json.load(open("%s/%s-seed%s.json" % (out, name, seed)))
    return next(m["auc"] for m in r["final"]["metrics"] if m["objective"] == obj)
def mean_se(xs):
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, float("nan")
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs))
print("| dense id columns | buckets (user, item) | seed | CTR AUC hash | exact | hash %s | CTCVR AUC hash | exact | hash %s |" % (ref, ref))
print("|---|---|---|---:|---:|---:|---:|---:|---:|")
for drop in drops:
    dtag = "-no-" + drop.replace(" ", "-") if drop else ""
    dense = "without" if drop else "with"
    for b in budgets:
        ub, ib = b.split(":")
        h, e, r = "hash-%s%s" % (ub, dtag), "exact-%s-%s%s" % (ub, pol, dtag), "hash-%s%s" % (ref, dtag)
        d = {o: [[], []] for o in ("ctr", "ctcvr")}
        for s in seeds:
            v = {o: (auc(h, s, o), auc(e, s, o), auc(r, s, o)) for o in ("ctr", "ctcvr")}
            for o in v:
                d[o][0].append(v[o][1] - v[o][0])
                d[o][1].append(v[o][2] - v[o][0])
            print("| %s | %s, %s | %s | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f |" % ((dense, ub, ib, s) + v["ctr"] + v["ctcvr"]))
        f = lambda xs: "%+.4f ± %.4f" % mean_se(xs)
        print("| %s | %s, %s | **mean difference to hash** | | **%s** | %s | | **%s** | %s |" % (dense, ub, ib, f(d["ctr"][0]), f(d["ctr"][1]), f(d["ctcvr"][0]), f(d["ctcvr"][1])))
PY
echo "(± one standard error over the seeds; raw results in $OUT)"
