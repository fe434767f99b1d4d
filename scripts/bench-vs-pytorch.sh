#!/usr/bin/env bash
# onestone against PyTorch on the std workload, side by side (issue 7).
# Bounded in time: about 1-2 minutes with the defaults.
#
#  1. installs Debian's python3-torch (1.13.1) if /usr/bin/python3 cannot
#     import torch, and OpenBLAS (libopenblas0-pthread) if libblas.so.3 is
#     the reference BLAS: torch's Debian build calls the generic
#     libblas.so.3, and the reference implementation is about 10x slower
#     (600 examples/s), which would make the comparison meaningless;
#  2. builds bin/onestone;
#  3. runs PyTorch training (bench/pytorch/mmoe_std.py, 2 threads) as
#     shipped (libgomp's spinning idle threads, OMP_WAIT_POLICY unset),
#     PyTorch tuned (OMP_WAIT_POLICY=PASSIVE, so that the OpenMP pool and
#     OpenBLAS's pool do not fight over the 2 cores) and `onestone bench
#     train` in turn, ROUNDS times each, so that all see the same load on
#     the shared machine;
#  4. runs PyTorch scoring (1 thread, OpenBLAS pinned to 1 thread), PyTorch
#     scoring with torch at 1 thread but OpenBLAS's default pool of one
#     thread per core (the configuration that reproduces the first-wave design note's
#     9.5 ms p50), and `onestone bench score`;
#  5. prints a side-by-side table with the ratios (onestone's advantage:
#     throughput onestone/PyTorch, latency PyTorch/onestone) and the load
#     average before each run. The raw JSON stays in OUT.
#
# Environment: STEPS (measured training steps, default 30), REQUESTS
# (measured scoring requests, default 300), ROUNDS (default 2), BIN
# (default bin/onestone), OUT (default a new directory under /tmp),
# PYTHON (default /usr/bin/python3: Debian's torch is installed for the
# system python, not pyenv's).
set -euo pipefail

cd "$(dirname "$0")/.."
STEPS=${STEPS:-30}
REQUESTS=${REQUESTS:-300}
ROUNDS=${ROUNDS:-2}
BIN=${BIN:-bin/onestone}
PYTHON=${PYTHON:-/usr/bin/python3}
OUT=${OUT:-$(mktemp -d /tmp/bench-vs-pytorch.XXXXXX)}
LIMIT=${LIMIT:-300} # seconds allowed to any one run
mkdir -p "$OUT"

die() { echo "bench-vs-pytorch: $*" >&2; exit 1; }
for v in STEPS REQUESTS ROUNDS LIMIT; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v=${!v}: want a positive integer"
done
[[ -x $PYTHON ]] || die "$PYTHON: not an executable python3"

apt_install() {
	[[ $(id -u) -eq 0 ]] || die "need root to apt-get install $*"
	echo "bench-vs-pytorch: installing $* with apt-get" >&2
	apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
	apt_install python3-torch libopenblas0-pthread
	"$PYTHON" -c 'import torch' || die "$PYTHON still cannot import torch"
fi
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
if [[ $blas != *openblas* ]]; then
	apt_install libopenblas0-pthread
	blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)
	[[ $blas == *openblas* ]] || die "libblas.so.3 is $blas, not OpenBLAS (update-alternatives --config libblas.so.3-x86_64-linux-gnu)"
fi

echo "bench-vs-pytorch: building $BIN" >&2
go build -o "$BIN" ./cmd/onestone

load() { cut -d' ' -f1-3 /proc/loadavg; }
run() { # run NAME CMD...: stdout to $OUT/NAME.json, load average to $OUT/NAME.load
	local name=$1
	shift
	load >"$OUT/$name.load"
	echo "bench-vs-pytorch: $name (load $(cat "$OUT/$name.load"))" >&2
	timeout "$LIMIT" "$@" >"$OUT/$name.json" || die "$name failed (exit $?): $*"
}

PT=bench/pytorch/mmoe_std.py
"$PYTHON" "$PT" selftest >/dev/null || die "$PT selftest failed"
for r in $(seq "$ROUNDS"); do
	run "pytorch-train-$r" env -u OMP_WAIT_POLICY OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 "$PYTHON" "$PT" train --threads 2 --omp-wait default --steps "$STEPS"
	run "pytorch-tuned-$r" env OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 "$PYTHON" "$PT" train --threads 2 --steps "$STEPS"
	run "onestone-train-$r" env GOMAXPROCS=2 "$BIN" bench train --steps "$STEPS"
done
run pytorch-score env OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 "$PYTHON" "$PT" score --threads 1 --requests "$REQUESTS"
run pytorch-score-blas2 env OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=1 "$PYTHON" "$PT" score --threads 1 --requests "$REQUESTS"
run onestone-score env GOMAXPROCS=2 "$BIN" bench score --requests "$REQUESTS"

"$PYTHON" - "$OUT" "$ROUNDS" <<'EOF'
import json, os, statistics, sys

out, rounds = sys.argv[1], int(sys.argv[2])
def load(name):
    with open(os.path.join(out, name + ".json")) as f:
        return json.load(f)
def loadavg(name):
    with open(os.path.join(out, name + ".load")) as f:
        return f.read().strip()

pt = [load("pytorch-train-%d" % r) for r in range(1, rounds + 1)]
pq = [load("pytorch-tuned-%d" % r) for r in range(1, rounds + 1)]
os_ = [load("onestone-train-%d" % r)["train"] for r in range(1, rounds + 1)]
HEAD = ("figure", "PyTorch shipped", "PyTorch tuned", "onestone", "vs shipped", "vs tuned")
rows = []
def row(name, p, q, o, higher_better=True, fmt="{:,.1f}"):
    """p: PyTorch as shipped (None where it does not apply), q: tuned, o: onestone.
    The ratios are onestone's advantage: o/p for throughput, p/o for times."""
    ratio = lambda a: "-" if a is None else "{:.2f}x".format(o / a if higher_better else a / o)
    rows.append((name, "-" if p is None else fmt.format(p), fmt.format(q), fmt.format(o), ratio(p), ratio(q)))

med = statistics.median
for r in range(rounds):
    row("train examples/s, run %d (2 cores)" % (r + 1), pt[r]["examples_per_sec"], pq[r]["examples_per_sec"], os_[r]["examples_per_sec"])
f = lambda xs, k: med([x[k] for x in xs])
row("train examples/s, median of runs", f(pt, "examples_per_sec"), f(pq, "examples_per_sec"), f(os_, "examples_per_sec"))
row("train step ms (median)", f(pt, "step_ms_median"), f(pq, "step_ms_median"), f(os_, "step_ms_median"), False)
row("  forward + loss ms", f(pt, "forward_ms_median"), f(pq, "forward_ms_median"), med([x["forward_ms_median"] + x["loss_ms_median"] for x in os_]), False)
row("  backward ms", f(pt, "backward_ms_median"), f(pq, "backward_ms_median"), f(os_, "backward_ms_median"), False)
opt = lambda xs: med([x["dense_adam_ms_median"] + x["sparse_update_ms_median"] for x in xs])
row("  optimizers ms (dense Adam + sparse)", opt(pt), opt(pq), f(os_, "optimizer_ms_median"), False)
row("train peak RSS MB", max(x["peak_rss_mb"] for x in pt), max(x["peak_rss_mb"] for x in pq), max(x["peak_rss_mb"] for x in os_), False)

ps, ps2 = load("pytorch-score"), load("pytorch-score-blas2")
osc = {(s["path"], s["workers"]): s for s in load("onestone-score")["score"]}
m1, m2 = osc[("model", 1)], osc[("model", 2)]
row("score 500 p50 ms, 1 core", None, ps["p50_ms"], m1["p50_ms"], False, "{:.2f}")
row("score 500 p99 ms, 1 core", None, ps["p99_ms"], m1["p99_ms"], False, "{:.2f}")
row("score 500 p50 ms, 2 cores*", None, ps2["p50_ms"], m2["p50_ms"], False, "{:.2f}")
row("score 500 p99 ms, 2 cores*", None, ps2["p99_ms"], m2["p99_ms"], False, "{:.2f}")

w = [max(len(r[i]) for r in rows + [HEAD]) for i in range(len(HEAD))]
line = lambda r: "| " + " | ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) + " |"
print(line(HEAD))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in rows:
    print(line(r))
print()
print("PyTorch %s (%s experts, %s tables, %s embeddings; shipped = OMP_WAIT_POLICY unset, tuned = PASSIVE), blas %s" % (
    pt[0]["torch"], pt[0]["experts"], pt[0]["tables"], pt[0]["embedding_optimizer"], pt[0]["blas"].split(",")[-1]))
print("onestone kernel %s; scoring = model path (context/candidate split); full JSON scorer path p50/p99 ms: 1 worker %.2f/%.2f, 2 workers %.2f/%.2f" % (
    load("onestone-score")["kernel"], osc[("scorer", 1)]["p50_ms"], osc[("scorer", 1)]["p99_ms"], osc[("scorer", 2)]["p50_ms"], osc[("scorer", 2)]["p99_ms"]))
print("PyTorch scoring is the plain forward of 500 rows (%s experts); 1 core = torch and OpenBLAS at 1 thread;" % ps["experts"])
print("* 2 cores = PyTorch: torch 1 thread, OpenBLAS 2 threads (docs/benchmarks.md's reference configuration); onestone: 2 workers")
names = [n % r for r in range(1, rounds + 1) for n in ("pytorch-train-%d", "pytorch-tuned-%d", "onestone-train-%d")]
names += ["pytorch-score", "pytorch-score-blas2", "onestone-score"]
print("load average (1, 5, 15 min) before each run, in order: " + "; ".join("%s %s" % (n, loadavg(n)) for n in names))
print("raw JSON: " + out)
EOF
