#!/usr/bin/env bash
# Exact tables against hash buckets of equal memory (issue 14), on
# generated data with more distinct ids than buckets, Zipf-skewed id
# picks and effects only the ids reveal. For each seed: `onestone gen`
# (--user-zipf/--item-zipf, --id-effects, a large
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
# exact field of capacity C has 1 + shared + C rows (shared = C/100 by
# default, or SHARED) plus
# its map, features.Exact.MapBytes (with evict lfu, at 2 slots a row:
# about 60 bytes a row; more with admit_after > 1, here with a waiting
# set of C/2 ids). With the spec's embedding_dim 32 and row-wise Adagrad
# a row is 132 bytes (128 of weights, 4 of accumulator). C is the
# largest capacity whose rows and map fit in the B+1 rows of the hash
# field (scripts/exactcap computes it from MapBytes): 50,000 user
# buckets give capacity 34,199 with admit_after 1 and evict lfu.
# Takes about 30 minutes for 5 seeds on a loaded 2-core machine (70
# trainings of about 20 s).
#
# Environment: SEEDS (default "1 2 3 4 5"), ROWS (default 1300000),
# TEST_FRAC (0.3), USERS (200000), ITEMS (50000), ZIPF (0.8, users and
# items), ID_EFFECTS (gen --id-effects, default 1), BUDGETS (user:item buckets of each memory budget, default
# "50000:12500 5000:1250"), REF_BUCKETS (250000:62500), ADMIT
# (admit_after, default 1), EVICT (lfu), SHARED (the exact tables'
# shared rows, one exact column each: 0 for the default, capacity/100;
# 1 for a single default row; default "0 1"), DROPS (the sets of fields to
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
ZIPF=${ZIPF:-0.8}
ID_EFFECTS=${ID_EFFECTS:-1}
BUDGETS=${BUDGETS:-50000:12500 5000:1250}
REF_BUCKETS=${REF_BUCKETS:-250000:62500}
ADMIT=${ADMIT:-1}
EVICT=${EVICT:-lfu}
SHARED=${SHARED:-0 1}
DROPS=${DROPS:-,user_activity item_popularity}
BIN=${BIN:-bin/onestone}
OUT=${OUT:-$(mktemp -d /tmp/exact-vs-hash.XXXXXX)}
mkdir -p "$OUT"
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/onestone

# exact B: the exact table of the memory of B buckets (see above).
go build -o "$OUT/exactcap" ./scripts/exactcap
exact() { "$OUT/exactcap" -buckets "$1" -row 132 -admit "$ADMIT" -evict "$EVICT" -shared "$2"; }
# stag N: the name tag of the exact tables with N shared rows.
stag() { [ "$1" = 0 ] || echo "-shared$1"; }

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
			--user-zipf "$ZIPF" --item-zipf "$ZIPF" --id-effects "$ID_EFFECTS" --seed "$seed" --files 2 --out "$data" >"$data.gen.txt"
	fi
	IFS=, read -ra dropsets <<<"$DROPS"
	[ "${DROPS: -1}" = , ] && dropsets+=("")
	for drop in "${dropsets[@]}"; do
		dtag=${drop:+-no-${drop// /-}}
		for budget in $BUDGETS; do
			ub=${budget%%:*} ib=${budget##*:}
			train "$seed" "hash-$ub$dtag" "buckets: $ub" "buckets: $ib" "$drop"
			for sh in $SHARED; do
				train "$seed" "exact-$ub-a$ADMIT-$EVICT$(stag "$sh")$dtag" "$(exact "$ub" "$sh")" "$(exact "$ib" "$sh")" "$drop"
			done
		done
		ub=${REF_BUCKETS%%:*} ib=${REF_BUCKETS##*:}
		train "$seed" "hash-$ub$dtag" "buckets: $ub" "buckets: $ib" "$drop"
	done
done

for budget in $BUDGETS; do
	for sh in $SHARED; do
		echo "user_id/item_id at the memory of ${budget/:/\/} buckets: $(exact "${budget%%:*}" "$sh") / $(exact "${budget##*:}" "$sh")"
	done
done
python3 - "$OUT" "$BUDGETS" "${REF_BUCKETS%%:*}" "a$ADMIT-$EVICT" "$SEEDS" "$DROPS" "$SHARED" <<'PY'
import json, math, sys
out, budgets, ref, pol, seeds, drops, shared = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4], sys.argv[5].split(), sys.argv[6].split(","), sys.argv[7].split()
def auc(name, seed, obj):
    r = json.load(open("%s/%s-seed%s.json" % (out, name, seed)))
    return next(m["auc"] for m in r["final"]["metrics"] if m["objective"] == obj)
def mean_se(xs):
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, float("nan")
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs))
ex = ["exact" if s == "0" else "exact, shared %s" % s for s in shared]
cols = ["hash"] + ex + ["hash %s" % ref]
print("| dense id columns | buckets (user, item) | seed | CTR AUC " + " | ".join(cols) + " | CTCVR AUC " + " | ".join(cols) + " |")
print("|---|---|---|" + "---:|" * (2 * len(cols)))
for drop in drops:
    dtag = "-no-" + drop.replace(" ", "-") if drop else ""
    dense = "without" if drop else "with"
    for b in budgets:
        ub, ib = b.split(":")
        names = ["hash-%s%s" % (ub, dtag)] + ["exact-%s-%s%s%s" % (ub, pol, "" if s == "0" else "-shared" + s, dtag) for s in shared] + ["hash-%s%s" % (ref, dtag)]
        d = {o: [[] for _ in names[1:]] for o in ("ctr", "ctcvr")}
        for s in seeds:
            v = {o: [auc(n, s, o) for n in names] for o in ("ctr", "ctcvr")}
            for o in v:
                for k, x in enumerate(v[o][1:]):
                    d[o][k].append(x - v[o][0])
            print("| %s | %s, %s | %s | " % (dense, ub, ib, s) + " | ".join("%.4f" % x for x in v["ctr"] + v["ctcvr"]) + " |")
        f = lambda xs: "%+.4f ± %.4f" % mean_se(xs)
        print("| %s | %s, %s | **mean difference to hash** | | " % (dense, ub, ib) + " | ".join(f(x) for x in d["ctr"]) + " | | " + " | ".join(f(x) for x in d["ctcvr"]) + " |")
PY
echo "(± one standard error over the seeds; raw results in $OUT)"
