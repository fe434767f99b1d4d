#!/usr/bin/env bash
# bf16 training against fp32 on `onestone gen` data (issue 15: "the
# generated data's AUCs within 0.002 of fp32 after 1 epoch, 3 seeds").
# For each seed: gen ROWS rows with that seed, fit the spec, then train
# one epoch twice from the same spec and seed, once as it is (fp32) and
# once with `train.precision: bf16`, and evaluate both on the test file.
# Prints a Markdown table of CTR and CTCVR AUC and the differences, and
# keeps everything in OUT. On a CPU without AVX512_BF16 the bf16 run
# falls back to fp32 and the script says so (the differences are then 0).
#
# Environment: SEEDS (default "1 2 3"), ROWS (default 1000000), BIN
# (default bin/onestone, built when missing), OUT (default a new
# directory under /tmp). About a minute per seed on a quiet 2-core host.
set -euo pipefail

cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-1 2 3}
ROWS=${ROWS:-1000000}
BIN=${BIN:-bin/onestone}
OUT=${OUT:-$(mktemp -d /tmp/bf16-auc.XXXXXX)}
mkdir -p "$OUT"
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/onestone
grep -qw avx512_bf16 /proc/cpuinfo || echo "bf16-auc: this CPU has no AVX512_BF16: the bf16 runs fall back to fp32" >&2

# auc FILE TASK: the AUC column of TASK's line in an `onestone eval` output.
auc() { awk -v t="$2" '$1 == t { print $2; exit }' "$1"; }

rows=()
for seed in $SEEDS; do
	d=$OUT/data-$seed
	$BIN gen --rows "$ROWS" --seed "$seed" --out "$d" >"$d.gen.txt"
	$BIN fit --spec "$d/spec.yaml" --data "$d/train-*.parquet" >/dev/null
	sed 's/^train:$/train:\n  precision: bf16/' "$d/spec.yaml" >"$d/spec-bf16.yaml"
	grep -q 'precision: bf16' "$d/spec-bf16.yaml" || { echo "bf16-auc: no train: section in $d/spec.yaml" >&2; exit 1; }
	cp "$d/spec.stats.json" "$d/spec-bf16.stats.json" 2>/dev/null || true
	line="| $seed"
	for p in fp32 bf16; do
		spec=$d/spec.yaml
		[ $p = bf16 ] && spec=$d/spec-bf16.yaml
		$BIN train --spec "$spec" --data "$d/train-*.parquet" --out "$OUT/models-$seed-$p" 2>"$OUT/train-$seed-$p.log" >/dev/null
		$BIN eval --model "$OUT/models-$seed-$p/latest" --data "$d/test-00000.parquet" >"$OUT/eval-$seed-$p.txt"
	done
	c32=$(auc "$OUT/eval-$seed-fp32.txt" ctr) c16=$(auc "$OUT/eval-$seed-bf16.txt" ctr)
	v32=$(auc "$OUT/eval-$seed-fp32.txt" ctcvr) v16=$(auc "$OUT/eval-$seed-bf16.txt" ctcvr)
	rows+=("$(python3 -c "import sys; a,b,c,d=map(float,sys.argv[1:]); print(f'| $seed | {a:.4f} | {b:.4f} | {b-a:+.4f} | {c:.4f} | {d:.4f} | {d-c:+.4f} |')" "$c32" "$c16" "$v32" "$v16")")
done
echo "| seed | CTR AUC fp32 | bf16 | diff | CTCVR AUC fp32 | bf16 | diff |"
echo "|---|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo "raw: $OUT"
