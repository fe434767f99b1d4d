#!/usr/bin/env bash
# onestone against tuned PyTorch on the std workload, side by side.
# Bounded in time: a few minutes with the defaults on a quiet host.
#
#  1. installs Debian's python3-torch (1.13.1) if /usr/bin/python3 cannot
#     import torch, and OpenBLAS (libopenblas0-pthread) if libblas.so.3 is
#     the reference BLAS: torch's Debian build calls the generic
#     libblas.so.3, and the reference implementation is about 10x slower
#     (600 examples/s), which would make the comparison meaningless;
#  2. builds bin/onestone;
#  3. runs, ROUNDS times, PyTorch training tuned
#     (bench/pytorch/mmoe_std.py, 2 threads, OMP_WAIT_POLICY=PASSIVE so
#     that the OpenMP pool and OpenBLAS's pool do not fight over the 2
#     cores: the reference of docs/benchmarks.md) and `onestone bench
#     train` (and, where the CPU has AVX512_BF16, `onestone bench train
#     --precision bf16`), alternating which goes first from round to
#     round so that neither always gets the quieter slot; then, with
#     SHIPPED=1, PyTorch as shipped (libgomp's spinning idle threads), an
#     extra column only;
#  4. runs PyTorch scoring (1 thread, OpenBLAS pinned to 1 thread), PyTorch
#     scoring with torch at 1 thread but OpenBLAS's default pool of one
#     thread per core (the configuration that reproduces the first-wave
#     design note's 9.5 ms p50), and `onestone bench score` (fp32, and
#     bf16 where the CPU has AVX512_BF16: serve's default there);
#  5. prints a side-by-side table with the ratios to tuned PyTorch
#     (throughput onestone/PyTorch, times PyTorch/onestone) and the load
#     average before each run, and last the ratio itself: the median over
#     the rounds of each round's ratio, in examples per second and in
#     examples per CPU second (each program's CPU time, all its threads,
#     over its measured steps: on a loaded host, the figure that load
#     moves least). The raw JSON stays in OUT.
#
# Environment: STEPS (measured training steps, default 30), REQUESTS
# (measured scoring requests, default 300), ROUNDS (default 3), SHIPPED
# (1, the default, also runs PyTorch as shipped; 0 skips it), BF16 (auto,
# the default: onestone in bf16 too where the CPU has avx512_bf16; 0
# never; 1 always, which trains in fp32 where bf16 cannot run), BIN
# (default bin/onestone), OUT (default a new directory under /tmp), PYTHON
# (default /usr/bin/python3: Debian's torch is installed for the system
# python, not pyenv's), LIMIT (seconds allowed to any one run, default
# 300).
set -euo pipefail

cd "$(dirname "$0")/.."
STEPS=${STEPS:-30}
REQUESTS=${REQUESTS:-300}
ROUNDS=${ROUNDS:-3}
SHIPPED=${SHIPPED:-1}
BF16=${BF16:-auto}
BIN=${BIN:-bin/onestone}
PYTHON=${PYTHON:-/usr/bin/python3}
OUT=${OUT:-$(mktemp -d /tmp/bench-vs-pytorch.XXXXXX)}
LIMIT=${LIMIT:-300} # seconds allowed to any one run
mkdir -p "$OUT"

die() { echo "bench-vs-pytorch: $*" >&2; exit 1; }
for v in STEPS REQUESTS ROUNDS LIMIT; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v=${!v}: want a positive integer"
done
[[ $SHIPPED == [01] ]] || die "SHIPPED=$SHIPPED: want 0 or 1"
case $BF16 in
auto) if grep -qw avx512_bf16 /proc/cpuinfo; then BF16=1; else BF16=0; fi ;;
0 | 1) ;;
*) die "BF16=$BF16: want auto, 0 or 1" ;;
esac
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
tuned() { run "pytorch-tuned-$1" env OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 "$PYTHON" "$PT" train --threads 2 --steps "$STEPS"; }
ours() {
	run "onestone-train-$1" env GOMAXPROCS=2 "$BIN" bench train --steps "$STEPS"
	if [[ $BF16 == 1 ]]; then
		run "onestone-bf16-$1" env GOMAXPROCS=2 "$BIN" bench train --steps "$STEPS" --precision bf16
	fi
}
for r in $(seq "$ROUNDS"); do
	if ((r % 2)); then
		tuned "$r"
		ours "$r"
	else
		ours "$r"
		tuned "$r"
	fi
	if [[ $SHIPPED == 1 ]]; then
		run "pytorch-train-$r" env -u OMP_WAIT_POLICY OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 "$PYTHON" "$PT" train --threads 2 --omp-wait default --steps "$STEPS"
	fi
done
run pytorch-score env OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 "$PYTHON" "$PT" score --threads 1 --requests "$REQUESTS"
run pytorch-score-blas2 env OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=1 "$PYTHON" "$PT" score --threads 1 --requests "$REQUESTS"
run onestone-score env GOMAXPROCS=2 "$BIN" bench score --requests "$REQUESTS"

"$PYTHON" - "$OUT" "$ROUNDS" "$SHIPPED" "$BF16" <<'EOF'
import json, os, statistics, sys

out, rounds, shipped, bf16 = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1"
def load(name):
    with open(os.path.join(out, name + ".json")) as f:
        return json.load(f)
def loadavg(name):
    with open(os.path.join(out, name + ".load")) as f:
        return f.read().strip()

R = range(1, rounds + 1)
pq = [load("pytorch-tuned-%d" % r) for r in R]
os_ = [load("onestone-train-%d" % r)["train"] for r in R]
ob = [load("onestone-bf16-%d" % r)["train"] for r in R] if bf16 else None
pt = [load("pytorch-train-%d" % r) for r in R] if shipped else None

# Columns: PyTorch tuned, onestone and its ratio, [onestone bf16 and its
# ratio], [PyTorch shipped, no ratio].
HEAD = ["figure", "PyTorch tuned", "onestone", "vs tuned"]
if bf16:
    HEAD += ["onestone bf16", "bf16 vs tuned"]
if shipped:
    HEAD += ["PyTorch shipped"]
rows = []
med = statistics.median
def row(name, q, o, b=None, p=None, higher_better=True, fmt="{:,.1f}"):
    """q: PyTorch tuned, o: onestone, b: onestone bf16, p: PyTorch as shipped
    (None where they do not apply). The ratios are onestone's advantage over
    tuned PyTorch: o/q for throughput, q/o for times."""
    ratio = lambda a: "-" if a is None or q is None else "{:.2f}x".format(a / q if higher_better else q / a)
    num = lambda x: "-" if x is None else fmt.format(x)
    r = [name, num(q), num(o), ratio(o)]
    if bf16:
        r += [num(b), ratio(b)]
    if shipped:
        r += [num(p)]
    rows.append(r)

f = lambda xs, k: None if xs is None else med([x[k] for x in xs])
at = lambda xs, r, k: None if xs is None else xs[r][k]
for r in range(rounds):
    row("train examples/s, run %d (2 cores)" % (r + 1), pq[r]["examples_per_sec"], os_[r]["examples_per_sec"],
        at(ob, r, "examples_per_sec"), at(pt, r, "examples_per_sec"))
row("train examples/s, median of runs", f(pq, "examples_per_sec"), f(os_, "examples_per_sec"), f(ob, "examples_per_sec"), f(pt, "examples_per_sec"))
row("train step ms (median)", f(pq, "step_ms_median"), f(os_, "step_ms_median"), f(ob, "step_ms_median"), f(pt, "step_ms_median"), False)
fl = lambda xs: None if xs is None else med([x["forward_ms_median"] + x["loss_ms_median"] for x in xs])
row("  forward + loss ms", f(pq, "forward_ms_median"), fl(os_), fl(ob), f(pt, "forward_ms_median"), False)
row("  backward ms", f(pq, "backward_ms_median"), f(os_, "backward_ms_median"), f(ob, "backward_ms_median"), f(pt, "backward_ms_median"), False)
opt = lambda xs: None if xs is None else med([x["dense_adam_ms_median"] + x["sparse_update_ms_median"] for x in xs])
row("  optimizers ms (dense Adam + sparse)", opt(pq), f(os_, "optimizer_ms_median"), f(ob, "optimizer_ms_median"), opt(pt), False)
# The optimizer's memory traffic against the copy bandwidth measured in
# the same run (onestone only; absent from older reports).
g = lambda xs, k: None if xs is None or any(k not in x for x in xs) else med([x[k] for x in xs])
row("  optimizer traffic MB per step", None, g(os_, "optimizer_mb_per_step"), g(ob, "optimizer_mb_per_step"))
row("  optimizer GB/s", None, g(os_, "optimizer_gbps"), g(ob, "optimizer_gbps"))
row("  copy GB/s (2 cores)", None, g(os_, "copy_gbps"), g(ob, "copy_gbps"))
row("train CPU ms per step (all threads)", f(pq, "cpu_ms_per_step"), f(os_, "cpu_ms_per_step"), f(ob, "cpu_ms_per_step"), f(pt, "cpu_ms_per_step"), False)
mx = lambda xs: None if xs is None else max(x["peak_rss_mb"] for x in xs)
row("train peak RSS MB", mx(pq), mx(os_), mx(ob), mx(pt), False)
fr = lambda xs, k: None if xs is None or not all(x.get(k) for x in xs) else med([x[k] for x in xs])
row("train, fraction of the ceiling (wall)", None, fr(os_, "ceiling_frac"), fr(ob, "ceiling_frac"), None, True, "{:.2f}")
row("train, fraction of the ceiling (CPU)", None, fr(os_, "ceiling_frac_cpu"), fr(ob, "ceiling_frac_cpu"), None, True, "{:.2f}")

ps, ps2 = load("pytorch-score"), load("pytorch-score-blas2")
osc = {(s["path"], s["workers"]): s for s in load("onestone-score")["score"] if s.get("precision", "fp32") == "fp32"}
osb = {(s["path"], s["workers"]): s for s in load("onestone-score")["score"] if s.get("precision") == "bf16"}
m1, m2 = osc[("model", 1)], osc[("model", 2)]
row("score 500 p50 ms, 1 core", ps["p50_ms"], m1["p50_ms"], higher_better=False, fmt="{:.2f}")
row("score 500 p99 ms, 1 core", ps["p99_ms"], m1["p99_ms"], higher_better=False, fmt="{:.2f}")
row("score 500 p50 ms, 2 cores*", ps2["p50_ms"], m2["p50_ms"], higher_better=False, fmt="{:.2f}")
row("score 500 p99 ms, 2 cores*", ps2["p99_ms"], m2["p99_ms"], higher_better=False, fmt="{:.2f}")

w = [max(len(r[i]) for r in rows + [HEAD]) for i in range(len(HEAD))]
line = lambda r: "| " + " | ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) + " |"
print(line(HEAD))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in rows:
    print(line(r))
print()
print("PyTorch %s (%s experts, %s tables, %s embeddings; tuned = OMP_WAIT_POLICY=PASSIVE%s), blas %s" % (
    pq[0]["torch"], pq[0]["experts"], pq[0]["tables"], pq[0]["embedding_optimizer"],
    ", shipped = unset" if shipped else "", pq[0]["blas"].split(",")[-1]))
bfk = ""
if bf16:
    bfk = ", bf16 kernel %s (trained in %s)" % (load("onestone-bf16-1").get("kernel_bf16", "?"), ob[0]["precision"])
print("onestone kernel %s%s; ceiling fractions: effective GFLOP/s over the FMA ceiling measured in each run, per second of wall and of CPU time" % (
    load("onestone-train-1")["kernel"], bfk))
print("scoring = model path (context/candidate split); full JSON scorer path p50/p99 ms: 1 worker %.2f/%.2f, 2 workers %.2f/%.2f" % (
    osc[("scorer", 1)]["p50_ms"], osc[("scorer", 1)]["p99_ms"], osc[("scorer", 2)]["p50_ms"], osc[("scorer", 2)]["p99_ms"]))
if osb:
    print("scoring in bf16 (serve's default), p50/p99 ms: model path 1 worker %.2f/%.2f, 2 workers %.2f/%.2f; full JSON scorer path 1 worker %.2f/%.2f, 2 workers %.2f/%.2f" % tuple(
        osb[(p, w)][k] for p in ("model", "scorer") for w in (1, 2) for k in ("p50_ms", "p99_ms")))
print("PyTorch scoring is the plain forward of 500 rows (%s experts); 1 core = torch and OpenBLAS at 1 thread;" % ps["experts"])
print("* 2 cores = PyTorch: torch 1 thread, OpenBLAS 2 threads (docs/benchmarks.md's reference configuration); onestone: 2 workers")
names = []
for r in R:
    ours = ["onestone-train-%d" % r] + (["onestone-bf16-%d" % r] if bf16 else [])
    names += (["pytorch-tuned-%d" % r] + ours) if r % 2 else (ours + ["pytorch-tuned-%d" % r])
    names += ["pytorch-train-%d" % r] if shipped else []
names += ["pytorch-score", "pytorch-score-blas2", "onestone-score"]
print("load average (1, 5, 15 min) before each run, in order: " + "; ".join("%s %s" % (n, loadavg(n)) for n in names))
print("raw JSON: " + out)

# Last, the ratio to tuned PyTorch: the median over the rounds of each
# round's ratio (the two programs ran minutes apart, in alternating order).
def ratios(xs):
    wall = [x["examples_per_sec"] / q["examples_per_sec"] for x, q in zip(xs, pq)]
    cpu = [q["cpu_ms_per_step"] / x["cpu_ms_per_step"] for x, q in zip(xs, pq)]
    return "%.2fx examples/s (runs %s), %.2fx examples per CPU second (runs %s)" % (
        med(wall), " ".join("%.2fx" % v for v in wall), med(cpu), " ".join("%.2fx" % v for v in cpu))
last = "onestone vs tuned PyTorch, median of %d alternating runs: fp32 %s" % (rounds, ratios(os_))
if bf16:
    last += "; bf16 %s" % ratios(ob)
print(last)
EOF
