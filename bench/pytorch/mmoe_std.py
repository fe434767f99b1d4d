#!/usr/bin/python3
"""PyTorch baseline of onestone's standard workload (std, BENCHMARKS.md).

The same model, loss, optimizers, batches and timing as
`onestone bench train` / `onestone bench score` (internal/stdwork/bench.go):

  * 26 categorical fields, each an embedding table of 100,001 x 16 (row 0 is
    the missing id, random ids are uniform over rows 1..100,000), 13 dense
    features: expert input 26*16 + 13 = 429.
  * MMoE: 8 experts [256, 128] ReLU, one softmax gate per task linear in the
    input, one tower [64] ReLU per task, linear heads with sigmoid.
  * Tasks: CTR (BCE of pCTR against click) and ESMM CVR (BCE of
    pCTCVR = pCTR * pCVR against click-and-conversion); the loss is the sum
    of the two per-task means.
  * Dense parameters: torch.optim.Adam, lr 1e-3. Embeddings: sparse
    gradients (nn.Embedding(sparse=True)) and, by default, row-wise sparse
    Adagrad (lr 0.05, one accumulator per row, as onestone's default),
    written with index_select/index_add_ since PyTorch has no row-wise
    Adagrad; --emb-opt adagrad uses torch.optim.Adagrad (per element) and
    --emb-opt sparseadam torch.optim.SparseAdam (lr 1e-3).
  * Training: batch 1024, 8 random batches made up front and cycled
    (clicks 5%, conversions 20% of clicks, dense N(0, 1)), 3 warm-up steps,
    then --steps measured steps; examples/s from the median step time, and
    the process's CPU time per measured step (all threads).
  * Scoring: one request = one context row broadcast to 500 candidates,
    the plain forward of 500 rows (no context/candidate split) under
    torch.inference_mode, 5 warm-up requests, then --requests measured.

Threads: --threads N (default 2 for train, 1 for score) calls
torch.set_num_threads(N) and, unless they are already set, exports
OPENBLAS_NUM_THREADS and OMP_NUM_THREADS=N before torch loads. Debian's torch
does its GEMMs in OpenBLAS (through libblas.so.3), whose pool ignores
torch.set_num_threads and defaults to one thread per core: "torch at 1
thread" with that default is what BENCHMARKS.md's 9.5 ms scoring p50 matches.

--omp-wait passive (the default) also exports OMP_WAIT_POLICY=PASSIVE unless
it is set. As shipped, libgomp's idle threads spin, and on 2 cores they fight
OpenBLAS's own pool for the CPU: training measured 700-5,900 examples/s
with the spinning default against 6,400-13,500 with PASSIVE in the same
sessions (load 2-4). --omp-wait default leaves the environment alone.

Prints one JSON object on stdout. Errors go to stderr as
"mmoe_std: ..." with exit status 2.
"""

import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import time

FIELDS, ROWS, DENSE, DIM = 26, 100_000, 13, 16
CONTEXT_FIELDS = FIELDS // 2  # fields 0-12 are the request's context
EXPERTS, EXPERT_HIDDEN, TOWER = 8, (256, 128), 64
BATCH, CANDIDATES = 1024, 500
TASKS = ("ctr", "cvr")
EMB_INIT_BOUND = 0.05


def fail(msg):
    print("mmoe_std: " + msg, file=sys.stderr)
    sys.exit(2)


def positive(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer" % s)
    if v <= 0:
        raise argparse.ArgumentTypeError("%d: want > 0" % v)
    return v


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="mmoe_std", description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["train", "score", "selftest"])
    ap.add_argument("--threads", type=positive, default=None,
                    help="torch.set_num_threads and, unless set, OPENBLAS_NUM_THREADS/OMP_NUM_THREADS (default: 2 for train, 1 for score)")
    ap.add_argument("--omp-wait", choices=["passive", "default"], default="passive",
                    help="passive: export OMP_WAIT_POLICY=PASSIVE unless set (default); default: leave libgomp's spinning as shipped")
    ap.add_argument("--steps", type=positive, default=30, help="measured training steps after 3 warm-up steps (default 30)")
    ap.add_argument("--requests", type=positive, default=300, help="measured scoring requests after 5 warm-up requests (default 300)")
    ap.add_argument("--experts", choices=["fused", "loop"], default=None,
                    help="expert implementation (default: fused for train, loop for score)")
    ap.add_argument("--tables", choices=["separate", "fused"], default="separate", help="26 tables or one with offsets (default separate)")
    ap.add_argument("--emb-opt", choices=["rowwise", "adagrad", "sparseadam"], default="rowwise",
                    help="embedding optimizer (default rowwise: row-wise sparse Adagrad, lr 0.05)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    args.experts = args.experts or ("loop" if args.mode == "score" else "fused")
    args.threads = args.threads or (1 if args.mode == "score" else 2)
    return args


# The thread pools are sized when torch and OpenBLAS load, so the
# environment is set from the arguments before the import.
ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_var, str(ARGS.threads))
    if ARGS.omp_wait == "passive":
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - depends on the machine
    fail("cannot import torch (%s): install python3-torch (apt-get install -y python3-torch libopenblas0-pthread) and run with /usr/bin/python3" % e)


def he_uniform_(w, fan_in):
    b = math.sqrt(6.0 / fan_in)
    nn.init.uniform_(w, -b, b)


def xavier_uniform_(w, fan_in, fan_out):
    b = math.sqrt(6.0 / (fan_in + fan_out))
    nn.init.uniform_(w, -b, b)


class MMoE(nn.Module):
    """The std MMoE. Initialisation as onestone's mmoe: He uniform for
    hidden layers, Xavier uniform for gates and heads, zero biases, uniform
    +-0.05 embeddings.

    experts="fused": the first layers of all experts are one 429 x 2048
    GEMM and the second layers one batched GEMM (8 x [256 x 128]), the
    efficient way to write MMoE in PyTorch. experts="loop": one nn.Linear
    pair per expert, the textbook way. Measured here (torch 1.13.1,
    OpenBLAS 0.3.21, OMP_WAIT_POLICY=PASSIVE): in training the two are
    within run-to-run noise (fused about 1.4x faster with libgomp's
    spinning default); scoring 500 rows, loop is about 1.3x faster
    (baddbmm's forward is slower than 8 addmm calls). Each mode defaults to
    its faster one.

    tables="separate": 26 nn.Embedding tables; tables="fused": one table of
    26 * 100,001 rows indexed with per-field offsets (TorchRec/DLRM style).
    """

    def __init__(self, experts="fused", tables="separate"):
        super().__init__()
        self.experts_impl, self.tables_impl = experts, tables
        n_rows = ROWS + 1
        if tables == "separate":
            self.emb = nn.ModuleList(nn.Embedding(n_rows, DIM, sparse=True) for _ in range(FIELDS))
            for e in self.emb:
                nn.init.uniform_(e.weight, -EMB_INIT_BOUND, EMB_INIT_BOUND)
        else:
            self.emb = nn.ModuleList([nn.Embedding(FIELDS * n_rows, DIM, sparse=True)])
            nn.init.uniform_(self.emb[0].weight, -EMB_INIT_BOUND, EMB_INIT_BOUND)
            self.register_buffer("offsets", torch.arange(FIELDS, dtype=torch.int64) * n_rows, persistent=False)
        d_in = FIELDS * DIM + DENSE
        h1, h2 = EXPERT_HIDDEN
        if experts == "fused":
            self.w1 = nn.Parameter(torch.empty(EXPERTS * h1, d_in))
            self.b1 = nn.Parameter(torch.zeros(EXPERTS * h1))
            self.w2 = nn.Parameter(torch.empty(EXPERTS, h1, h2))
            self.b2 = nn.Parameter(torch.zeros(EXPERTS, 1, h2))
            he_uniform_(self.w1, d_in)
            he_uniform_(self.w2, h1)
        else:
            self.experts = nn.ModuleList(
                nn.Sequential(nn.Linear(d_in, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU()) for _ in range(EXPERTS))
            for ex in self.experts:
                he_uniform_(ex[0].weight, d_in)
                he_uniform_(ex[2].weight, h1)
                nn.init.zeros_(ex[0].bias)
                nn.init.zeros_(ex[2].bias)
        self.gates = nn.ModuleList(nn.Linear(d_in, EXPERTS) for _ in TASKS)
        self.towers = nn.ModuleList(nn.Linear(h2, TOWER) for _ in TASKS)
        self.heads = nn.ModuleList(nn.Linear(TOWER, 1) for _ in TASKS)
        for g in self.gates:
            xavier_uniform_(g.weight, d_in, EXPERTS)
            nn.init.zeros_(g.bias)
        for t in self.towers:
            he_uniform_(t.weight, h2)
            nn.init.zeros_(t.bias)
        for h in self.heads:
            xavier_uniform_(h.weight, TOWER, 1)
            nn.init.zeros_(h.bias)

    def embedding_tables(self):
        return [e.weight for e in self.emb]

    def dense_parameters(self):
        tables = {id(w) for w in self.embedding_tables()}
        return [p for p in self.parameters() if id(p) not in tables]

    def expert_outputs(self, x):
        """(B, 429) -> (B, EXPERTS, 128)."""
        if self.experts_impl == "fused":
            h = F.relu(F.linear(x, self.w1, self.b1))  # (B, 8*256)
            h = h.view(x.shape[0], EXPERTS, -1).transpose(0, 1)  # (8, B, 256)
            h = F.relu(torch.baddbmm(self.b2, h, self.w2))  # (8, B, 128)
            return h.transpose(0, 1)
        return torch.stack([ex(x) for ex in self.experts], dim=1)

    def forward(self, ids, dense):
        """ids (B, 26) int64, dense (B, 13) float32 -> logits (ctr, cvr)."""
        if self.tables_impl == "separate":
            embs = [e(ids[:, i]) for i, e in enumerate(self.emb)]
            x = torch.cat(embs + [dense], dim=1)
        else:
            e = self.emb[0](ids + self.offsets).flatten(1)
            x = torch.cat([e, dense], dim=1)
        ex = self.expert_outputs(x)
        logits = []
        for g, t, h in zip(self.gates, self.towers, self.heads):
            w = F.softmax(g(x), dim=1)  # (B, 8)
            mix = torch.bmm(w.unsqueeze(1), ex).squeeze(1)  # (B, 128)
            logits.append(h(F.relu(t(mix))).squeeze(1))
        return logits


def esmm_loss(logits, click, conv):
    """Mean BCE of pCTR vs click plus mean BCE of pCTR*pCVR vs
    click-and-conversion, computed in log space for stability."""
    z_ctr, z_cvr = logits
    ctr = F.binary_cross_entropy_with_logits(z_ctr, click)
    log_p = F.logsigmoid(z_ctr) + F.logsigmoid(z_cvr)  # log pCTCVR
    log_q = torch.log1p(-torch.exp(log_p).clamp(max=1 - 1e-7))  # log(1 - pCTCVR)
    y = click * conv
    ctcvr = -(y * log_p + (1 - y) * log_q).mean()
    return ctr + ctcvr


class RowwiseAdagrad:
    """Row-wise sparse Adagrad (one accumulator per row), onestone's
    default embedding optimizer:
        a_r += mean_j g_rj^2;  w_r -= lr * g_r / (sqrt(a_r) + eps)
    touching only the rows in the batch. Not safe for concurrent use."""

    def __init__(self, tables, lr=0.05, eps=1e-8):
        self.tables, self.lr, self.eps = tables, lr, eps
        self.acc = [torch.zeros(t.shape[0]) for t in tables]

    @torch.no_grad()
    def step(self):
        for w, acc in zip(self.tables, self.acc):
            if w.grad is None:
                continue
            g = w.grad.coalesce()
            rows, vals = g.indices()[0], g.values()
            a = acc.index_select(0, rows).add_(vals.pow(2).mean(1))
            acc.index_copy_(0, rows, a)
            w.index_add_(0, rows, vals.div(a.sqrt_().add_(self.eps).unsqueeze(1)), alpha=-self.lr)

    def zero_grad(self):
        for w in self.tables:
            w.grad = None

    def state_bytes(self):
        return sum(a.numel() * a.element_size() for a in self.acc)


class TorchSparseOpt:
    """torch.optim.Adagrad (per-element) or SparseAdam on the tables."""

    def __init__(self, opt):
        self.opt = opt

    def step(self):
        self.opt.step()

    def zero_grad(self):
        self.opt.zero_grad(set_to_none=True)

    def state_bytes(self):
        n = 0
        for st in self.opt.state.values():
            for v in st.values():
                if torch.is_tensor(v) and v.dim() > 0:
                    n += v.numel() * v.element_size()
        return n


def make_sparse_opt(kind, tables):
    if kind == "rowwise":
        return RowwiseAdagrad(tables)
    if kind == "adagrad":
        return TorchSparseOpt(torch.optim.Adagrad(tables, lr=0.05))
    return TorchSparseOpt(torch.optim.SparseAdam(tables, lr=1e-3))


def random_batch(gen, n):
    """Like pipelines.stdBatch: ids uniform over 1..100,000, dense N(0, 1),
    clicks at 5%, conversions at 20% of clicks."""
    ids = torch.randint(1, ROWS + 1, (n, FIELDS), generator=gen, dtype=torch.int64)
    dense = torch.randn(n, DENSE, generator=gen)
    click = (torch.rand(n, generator=gen) < 0.05).float()
    conv = click * (torch.rand(n, generator=gen) < 0.2).float()
    return ids, dense, click, conv


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # ru_maxrss is in KiB on Linux


def percentile(xs, q):
    """Nearest rank, as pipelines.percentile."""
    s = sorted(xs)
    return s[min(int(q * (len(s) - 1) + 0.5), len(s) - 1)]


def blas_library():
    """The BLAS libraries mapped into this process. Debian's torch links the
    generic libblas.so.3, which update-alternatives points at the reference
    BLAS (about 10x slower here) or at OpenBLAS."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line.rsplit("/", 1)[-1].lower()}
    except OSError:
        return "unknown"
    return ",".join(sorted({os.path.realpath(p) for p in paths})) or "none"


def ms(seconds):
    return round(seconds * 1000.0, 3)


def common(args, mode):
    return {
        "framework": "pytorch", "torch": torch.__version__, "python": platform.python_version(),
        "mode": mode, "threads": torch.get_num_threads(), "experts": args.experts, "tables": args.tables,
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(libgomp default)"), "blas": blas_library(),
    }


def bench_train(args):
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    model = MMoE(args.experts, args.tables)
    dense_opt = torch.optim.Adam(model.dense_parameters(), lr=1e-3)
    sparse_opt = make_sparse_opt(args.emb_opt, model.embedding_tables())
    batches = [random_batch(gen, BATCH) for _ in range(8)]
    step_t, fwd_t, bwd_t, dopt_t, sopt_t, losses = [], [], [], [], [], []
    cpu0 = 0.0
    for i in range(args.steps + 3):
        if i == 3:
            cpu0 = time.process_time()
        ids, dense, click, conv = batches[i % len(batches)]
        t0 = time.perf_counter()
        loss = esmm_loss(model(ids, dense), click, conv)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        dense_opt.step()
        dense_opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        sparse_opt.step()
        sparse_opt.zero_grad()
        t4 = time.perf_counter()
        if not math.isfinite(loss.item()):
            fail("train: step %d: loss %r is not finite" % (i, loss.item()))
        losses.append(loss.item())
        if i < 3:
            continue
        step_t.append(t4 - t0)
        fwd_t.append(t1 - t0)
        bwd_t.append(t2 - t1)
        dopt_t.append(t3 - t2)
        sopt_t.append(t4 - t3)
    # CPU time of every thread of the process (OpenBLAS's and OpenMP's
    # pools included) over the measured steps, as onestone's
    # cpu_ms_per_step: less moved by other processes' load than wall time.
    cpu = time.process_time() - cpu0
    step = statistics.median(step_t)
    out = common(args, "train")
    out.update({
        "steps": args.steps, "batch_size": BATCH, "embedding_optimizer": args.emb_opt,
        "examples_per_sec": round(BATCH / step, 1),
        "step_ms_median": ms(step),
        "forward_ms_median": ms(statistics.median(fwd_t)),  # forward + loss
        "backward_ms_median": ms(statistics.median(bwd_t)),
        "dense_adam_ms_median": ms(statistics.median(dopt_t)),
        "sparse_update_ms_median": ms(statistics.median(sopt_t)),
        "step_ms_min": ms(min(step_t)), "step_ms_max": ms(max(step_t)),
        "cpu_ms_per_step": ms(cpu / args.steps),
        "loss_first": round(losses[0], 5), "loss_last": round(losses[-1], 5),
        "parameters": sum(p.numel() for p in model.parameters()),
        "sparse_state_mb": round(sparse_opt.state_bytes() / 2**20, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    })
    return out


def bench_score(args):
    gen = torch.Generator().manual_seed(args.seed + 1)
    torch.manual_seed(args.seed)
    model = MMoE(args.experts, args.tables).eval()
    lat = []
    with torch.inference_mode():
        for r in range(args.requests + 5):
            # One context (fields 0-12 and the dense features) broadcast to
            # 500 candidates (fields 13-25), built before the clock starts.
            c_ids, c_dense, _, _ = random_batch(gen, 1)
            ids, _, _, _ = random_batch(gen, CANDIDATES)
            ids[:, :CONTEXT_FIELDS] = c_ids[:, :CONTEXT_FIELDS]
            dense = c_dense.expand(CANDIDATES, DENSE).contiguous()
            t0 = time.perf_counter()
            z_ctr, z_cvr = model(ids, dense)
            p_ctr = torch.sigmoid(z_ctr)
            scores = torch.stack([p_ctr, p_ctr * torch.sigmoid(z_cvr)])
            el = time.perf_counter() - t0
            if scores.shape != (2, CANDIDATES):
                fail("score: request %d: scores of shape %s, want (2, %d)" % (r, tuple(scores.shape), CANDIDATES))
            if r >= 5:
                lat.append(el)
    p50 = percentile(lat, 0.5)
    out = common(args, "score")
    out.update({
        "candidates": CANDIDATES, "requests": len(lat),
        "p50_ms": ms(p50), "p90_ms": ms(percentile(lat, 0.9)), "p99_ms": ms(percentile(lat, 0.99)),
        "candidates_per_sec": round(CANDIDATES / p50, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    })
    return out


def self_test():
    """Checks the pieces the timings rely on: the fused and looped experts
    compute the same function, the row-wise Adagrad step matches a dense
    per-row reference (with a repeated row), and the ESMM loss matches the
    direct formula. Returns a list of failures."""
    bad = []
    torch.manual_seed(3)
    fused, loop = MMoE("fused", "fused"), MMoE("loop", "separate")
    with torch.no_grad():
        h1 = EXPERT_HIDDEN[0]
        for e, ex in enumerate(loop.experts):
            ex[0].weight.copy_(fused.w1[e * h1:(e + 1) * h1])
            ex[0].bias.copy_(fused.b1[e * h1:(e + 1) * h1])
            ex[2].weight.copy_(fused.w2[e].t())
            ex[2].bias.copy_(fused.b2[e, 0])
        for a, b in [(loop.gates, fused.gates), (loop.towers, fused.towers), (loop.heads, fused.heads)]:
            for la, lb in zip(a, b):
                la.load_state_dict(lb.state_dict())
        for f in range(FIELDS):
            loop.emb[f].weight.copy_(fused.emb[0].weight[f * (ROWS + 1):(f + 1) * (ROWS + 1)])
    ids, dense, click, conv = random_batch(torch.Generator().manual_seed(4), 64)
    za, zb = fused(ids, dense), loop(ids, dense)
    for t in range(2):
        d = (za[t] - zb[t]).abs().max().item()
        if not d < 1e-4:
            bad.append("fused and looped experts differ by %g on task %s" % (d, TASKS[t]))

    w = torch.randn(10, 4, requires_grad=True)
    rows = torch.tensor([2, 7, 2, 5])
    g = torch.randn(4, 4)
    w0 = w.detach().clone()
    w.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), g, (10, 4))
    opt = RowwiseAdagrad([w], lr=0.1)
    opt.acc[0] += 0.5
    opt.step()
    want = w0.clone()
    for r in set(rows.tolist()):
        gr = g[rows == r].sum(0)
        a = 0.5 + gr.pow(2).mean()
        want[r] -= 0.1 * gr / (a.sqrt() + 1e-8)
    d = (w.detach() - want).abs().max().item()
    if not d < 1e-6:
        bad.append("row-wise Adagrad differs from the reference by %g" % d)

    z = [torch.randn(64), torch.randn(64)]
    y2 = click * conv
    p, q = torch.sigmoid(z[0]), torch.sigmoid(z[0]) * torch.sigmoid(z[1])
    ref = -(click * p.log() + (1 - click) * (1 - p).log()).mean() - (y2 * q.log() + (1 - y2) * (1 - q).log()).mean()
    d = abs(esmm_loss(z, click, conv).item() - ref.item())
    if not d < 1e-5:
        bad.append("ESMM loss differs from the direct formula by %g" % d)
    return bad


def main(args):
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    if args.mode == "selftest":
        bad = self_test()
        for b in bad:
            print("mmoe_std: selftest: " + b, file=sys.stderr)
        print(json.dumps({"selftest": "fail" if bad else "ok", "failures": bad}))
        sys.exit(1 if bad else 0)
    out = bench_train(args) if args.mode == "train" else bench_score(args)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main(ARGS)
