#!/usr/bin/env bash
# AUC with and without the item content vectors of `onestone gen
# --item-vectors`: for each seed, generate one data set with vectors, then
# train and evaluate the gen spec twice on it, as written (with the
# item_vec field) and without the item_vec line. The other columns are the
# same either way, so the difference is the vectors'.
#
#   scripts/vector-auc.sh [ROWS] [ITEMS] [DIM] [SEEDS...]
#   ROWS=1000000 ITEMS=20000 DIM=16 SEEDS="1 2"
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/onestone}
ROWS=${1:-1000000}
ITEMS=${2:-20000}
DIM=${3:-16}
shift $(( $# < 3 ? $# : 3 ))
SEEDS=${*:-1 2}
WORK=${WORK:-$(mktemp -d)}
printf "%-6s %-8s %-14s %8s %8s\n" seed items spec ctr_auc ctcvr_auc
for seed in $SEEDS; do
	d="$WORK/s$seed"
	"$BIN" gen --rows "$ROWS" --items "$ITEMS" --item-vectors "$DIM" --seed "$seed" --out "$d" >/dev/null
	grep -v "name: item_vec" "$d/spec.yaml" >"$d/spec-novec.yaml"
	for variant in spec spec-novec; do
		"$BIN" train --spec "$d/$variant.yaml" --data "$d/train-*.parquet" --valid "$d/test-00000.parquet" \
			--out "$d/models-$variant" >/dev/null 2>&1
		"$BIN" eval --model "$d/models-$variant/latest" --data "$d/test-00000.parquet" >"$d/eval-$variant.txt"
		awk -v s="$seed" -v i="$ITEMS" -v v="$variant" '$1 == "ctr" { c = $2 } $1 == "ctcvr" { k = $2 }
			END { printf "%-6s %-8s %-14s %8.4f %8.4f\n", s, i, v, c, k }' "$d/eval-$variant.txt"
	done
done
