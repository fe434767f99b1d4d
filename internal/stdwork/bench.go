package stdwork

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/kernels"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
	"github.com/onestone/onestone/serving"
)

// GemmFigure is one kernel shape's throughput in one precision, and its
// fractions of the ceiling (CeilingFigure) of the instruction the kernel
// runs on, measured in the same run.
type GemmFigure struct {
	Shape     string  `json:"shape"`
	Precision string  `json:"precision"` // fp32 or bf16 (bf16 operands, float32 sums)
	GFlops1   float64 `json:"gflops_1_core"`
	GFlops2   float64 `json:"gflops_2_cores"`
	// CPU1 and CPU2 are the rates per second of the process's CPU time
	// (kernels.GemmRate): per busy core, which load moves far less.
	CPU1 float64 `json:"gflops_per_cpu_sec_1_core,omitempty"`
	CPU2 float64 `json:"gflops_per_cpu_sec_2_cores,omitempty"`
	// Ceiling names the ceiling; empty for the portable kernels, which
	// have none (and no fractions). Frac1 and Frac2 are GFlops1 and
	// GFlops2 over its wall-time rates on as many cores; FracCPU1 and
	// FracCPU2 are CPU1 and CPU2 over its rate per CPU second.
	Ceiling  string  `json:"ceiling,omitempty"`
	Frac1    float64 `json:"ceiling_frac_1_core,omitempty"`
	Frac2    float64 `json:"ceiling_frac_2_cores,omitempty"`
	FracCPU1 float64 `json:"ceiling_frac_cpu_1_core,omitempty"`
	FracCPU2 float64 `json:"ceiling_frac_cpu_2_cores,omitempty"`
	// VsFP32 is, for bf16, CPU2 over the fp32 figure's CPU2 for the shape
	// (GFlops2 over GFlops2 where CPU time is not measured).
	VsFP32 float64 `json:"vs_fp32_2_cores,omitempty"`
}

// CeilingFigure is one arithmetic ceiling of the CPU (kernels.Ceiling):
// a loop of one instruction with no memory operands, on one goroutine
// and on Workers at once.
type CeilingFigure struct {
	Name      string  `json:"name"`
	GFlops1   float64 `json:"gflops_1_core"`
	GFlopsAll float64 `json:"gflops_all_cores"`
	Workers   int     `json:"workers"`
	// GFlopsCPU is the one-core rate per second of CPU time (0 where
	// unmeasured).
	GFlopsCPU float64 `json:"gflops_per_cpu_sec"`
}

// TrainFigure is the training throughput of the std workload.
type TrainFigure struct {
	Precision      string  `json:"precision"` // the products' (Trainer.Precision)
	Workers        int     `json:"workers"`
	Steps          int     `json:"steps"`
	BatchSize      int     `json:"batch_size"`
	ExamplesPerSec float64 `json:"examples_per_sec"` // from the median step time
	StepMs         float64 `json:"step_ms_median"`
	ForwardMs      float64 `json:"forward_ms_median"`
	LossMs         float64 `json:"loss_ms_median"`
	BackwardMs     float64 `json:"backward_ms_median"`
	OptimizerMs    float64 `json:"optimizer_ms_median"`
	PeakRSSMB      float64 `json:"peak_rss_mb"`
	OptimizerMB    float64 `json:"optimizer_state_mb"`
	Parameters     int     `json:"parameters"`
	// CPUMsPerStep is the process's CPU time (user and system, all
	// threads) per measured step: less sensitive to other processes'
	// load than the step's wall time.
	CPUMsPerStep float64 `json:"cpu_ms_per_step"`
	// FlopPerExample is the arithmetic of one example's step
	// (StepFlopPerExample), and GFlopsEffective that times
	// ExamplesPerSec.
	FlopPerExample  float64 `json:"flop_per_example"`
	GFlopsEffective float64 `json:"gflops_effective"`
	// GFlopsPerCPUSec is FlopPerExample times the examples per second
	// of the process's CPU time (from CPUMsPerStep): per busy core.
	GFlopsPerCPUSec float64 `json:"gflops_per_cpu_sec"`
	// CeilingFrac is GFlopsEffective over the ceiling of the products'
	// instruction on Workers cores (none for the portable kernels, or
	// when Workers is neither 1 nor GOMAXPROCS); CeilingFracCPU is
	// GFlopsPerCPUSec over its rate per CPU second, the fraction to
	// trust on a loaded machine.
	Ceiling        string  `json:"ceiling,omitempty"`
	CeilingFrac    float64 `json:"ceiling_frac,omitempty"`
	CeilingFracCPU float64 `json:"ceiling_frac_cpu,omitempty"`
	// OptimizerMBPerStep is the optimizer pass's memory traffic per
	// step (mtl.Trainer.OptimizerBytes, the median over the steps), and
	// OptimizerGBps that over OptimizerMs. CopyGBps is the bandwidth of
	// copying buffers larger than the caches on Workers cores, measured
	// after the steps (each byte read and each written counted, as for
	// the optimizer); OptimizerCopyFrac is OptimizerGBps over it.
	OptimizerMBPerStep float64 `json:"optimizer_mb_per_step"`
	OptimizerGBps      float64 `json:"optimizer_gbps"`
	CopyGBps           float64 `json:"copy_gbps"`
	OptimizerCopyFrac  float64 `json:"optimizer_copy_frac,omitempty"`
}

// ScoreFigure is the latency of scoring one request of Candidates
// candidates.
type ScoreFigure struct {
	Path string `json:"path"` // "model" (split forward) or "scorer" (JSON request to ranked response)
	// Precision of the model's products: fp32, or bf16 (bf16 operands,
	// float32 sums: `serve --precision bf16`) where the CPU has
	// AVX512_BF16.
	Precision     string  `json:"precision"`
	Workers       int     `json:"workers"`
	Requests      int     `json:"requests"`
	P50Ms         float64 `json:"p50_ms"`
	P90Ms         float64 `json:"p90_ms"`
	P99Ms         float64 `json:"p99_ms"`
	CandidatesSec float64 `json:"candidates_per_sec"`
	// CPUMsPerRequest is the process's CPU time (all threads) over the
	// measured requests, per request: the figure that the load of a
	// shared host moves least. With 2 workers on the scorer path it
	// includes the helper's polling between requests.
	CPUMsPerRequest float64 `json:"cpu_ms_per_request"`
}

// BenchReport is what `onestone bench` prints.
//
// Ceilings are measured first, in the same run as the figures judged
// against them: hosts of one kind differ, and a loaded host lowers both.
type BenchReport struct {
	Preset     string          `json:"preset"`
	Kernel     string          `json:"kernel"`
	KernelBF16 string          `json:"kernel_bf16"`
	GOMAXPROCS int             `json:"gomaxprocs"`
	LoadAvg    string          `json:"load_avg,omitempty"` // /proc/loadavg's 1, 5 and 15 minute figures at the start
	Ceilings   []CeilingFigure `json:"ceilings,omitempty"`
	Train      *TrainFigure    `json:"train,omitempty"`
	Score      []ScoreFigure   `json:"score,omitempty"`
	Gemm       []GemmFigure    `json:"gemm,omitempty"`
}

// BenchConfig selects what Bench measures.
type BenchConfig struct {
	Train, Score, Gemm bool
	TrainSteps         int           // Default: 30 (after 3 warm-up steps)
	Workers            int           // training workers. Default: GOMAXPROCS
	ScoreRequests      int           // Default: 300
	GemmTime           time.Duration // per shape and core count. Default: 300ms
	// CeilingTime is the time per ceiling and core count. Default:
	// 200ms.
	CeilingTime time.Duration
	// Precision of the training products: "fp32" or "bf16" (the trainer
	// falls back to fp32 without AVX512_BF16). Default: "fp32". The
	// GEMM and scoring figures cover both precisions where bf16 runs
	// natively.
	Precision string
	Seed      uint64
}

// Bench measures the std workload. Training runs first so that the peak
// resident memory it reports is that of training.
func Bench(ctx context.Context, cfg BenchConfig) (*BenchReport, error) {
	if cfg.TrainSteps <= 0 {
		cfg.TrainSteps = 30
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.ScoreRequests <= 0 {
		cfg.ScoreRequests = 300
	}
	if cfg.GemmTime <= 0 {
		cfg.GemmTime = 300 * time.Millisecond
	}
	if cfg.CeilingTime <= 0 {
		cfg.CeilingTime = 200 * time.Millisecond
	}
	if _, err := kernels.ParsePrecision(cfg.Precision); err != nil {
		return nil, fmt.Errorf("stdwork: bench: %w", err)
	}
	rep := &BenchReport{Preset: "std", Kernel: kernels.Impl(), KernelBF16: kernels.ImplBF16(), GOMAXPROCS: runtime.GOMAXPROCS(0), LoadAvg: loadAvg()}
	var err error
	if cfg.Train || cfg.Gemm {
		for _, c := range kernels.MeasureCeilings(cfg.CeilingTime) {
			rep.Ceilings = append(rep.Ceilings, CeilingFigure(c))
		}
	}
	if cfg.Train {
		if rep.Train, err = benchTrain(ctx, cfg, rep); err != nil {
			return nil, err
		}
	}
	if cfg.Score {
		if rep.Score, err = benchScore(ctx, cfg); err != nil {
			return nil, err
		}
	}
	if cfg.Gemm {
		if rep.Gemm, err = benchGemm(ctx, cfg, rep); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// ceiling returns the ceiling of rep named name, and whether there is one.
func (rep *BenchReport) ceiling(name string) (CeilingFigure, bool) {
	for _, c := range rep.Ceilings {
		if name != "" && c.Name == name {
			return c, true
		}
	}
	return CeilingFigure{}, false
}

// frac is gflops over the ceiling on workers cores: GFlops1 for one,
// GFlopsAll for the ceiling's Workers, 0 (none) otherwise.
func (c CeilingFigure) frac(gflops float64, workers int) float64 {
	switch {
	case workers == 1 && c.GFlops1 > 0:
		return gflops / c.GFlops1
	case workers == c.Workers && c.GFlopsAll > 0:
		return gflops / c.GFlopsAll
	}
	return 0
}

// fracCPU is a rate per CPU second over the ceiling's (0: none).
func (c CeilingFigure) fracCPU(gflops float64) float64 {
	if c.GFlopsCPU > 0 && gflops > 0 {
		return gflops / c.GFlopsCPU
	}
	return 0
}

// benchGemm measures the std shapes in fp32, and in bf16 where the CPU
// runs it natively (the emulation is no figure to judge).
func benchGemm(ctx context.Context, cfg BenchConfig, rep *BenchReport) ([]GemmFigure, error) {
	precs := []kernels.Precision{kernels.FP32}
	if kernels.NativeBF16() {
		precs = append(precs, kernels.BF16)
	}
	var out []GemmFigure
	fp32 := map[string]float64{}
	for _, p := range precs {
		measure := kernels.MeasureGemm
		if p == kernels.BF16 {
			measure = kernels.MeasureGemmBF16
		}
		for _, s := range kernels.StdShapes() {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			r1 := measure(s.M, s.N, s.K, s.TransA, s.TransB, 1, cfg.GemmTime)
			r2 := measure(s.M, s.N, s.K, s.TransA, s.TransB, 2, cfg.GemmTime)
			f := GemmFigure{
				Shape: s.Name, Precision: p.String(),
				GFlops1: r1.GFlops, GFlops2: r2.GFlops, CPU1: r1.GFlopsCPU, CPU2: r2.GFlopsCPU,
			}
			if c, ok := rep.ceiling(p.CeilingName()); ok {
				f.Ceiling, f.Frac1, f.Frac2 = c.Name, c.frac(f.GFlops1, 1), c.frac(f.GFlops2, 2)
				f.FracCPU1, f.FracCPU2 = c.fracCPU(f.CPU1), c.fracCPU(f.CPU2)
			}
			rate := f.CPU2
			if rate == 0 {
				rate = f.GFlops2
			}
			if p == kernels.FP32 {
				fp32[s.Name] = rate
			} else if fp32[s.Name] > 0 {
				f.VsFP32 = rate / fp32[s.Name]
			}
			out = append(out, f)
		}
	}
	return out, nil
}

// copyBandwidth measures the rate at which workers goroutines each copy
// a 32 MB buffer into another (together larger than any cache here), in
// GB/s counting each byte read and each byte written: the memory
// bandwidth the optimizer's streams can reach. It takes the best of 5
// trials of d/5, as the FMA ceilings do: other work on the host only
// lowers a trial. 0 if ctx ends first.
func copyBandwidth(ctx context.Context, workers int, d time.Duration) float64 {
	const size = 32 << 20
	bufs := make([][2][]byte, workers)
	for w := range bufs {
		src, dst := make([]byte, size), make([]byte, size)
		for i := 0; i < size; i += 4096 { // resident before any clock starts
			src[i], dst[i] = 1, 1
		}
		bufs[w] = [2][]byte{src, dst}
	}
	best := 0.0
	for range 5 {
		var wg sync.WaitGroup
		copied := make([]int64, workers)
		t0 := time.Now()
		for w := range bufs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(t0) < d/5 && ctx.Err() == nil {
					copy(bufs[w][1], bufs[w][0])
					copied[w] += 2 * size
				}
			}()
		}
		wg.Wait()
		el := time.Since(t0)
		if ctx.Err() != nil {
			return 0
		}
		var n int64
		for _, c := range copied {
			n += c
		}
		best = max(best, float64(n)/el.Seconds()/1e9)
	}
	return best
}

// StepFlopPerExample is the arithmetic of one training example's step on
// m: each weight matrix [out, in] costs 2·out·in FLOP in the forward
// product and as much again in each of the backward ones (the gradient of
// its input and of its weights; the first layers' input gradient feeds the
// embeddings). Elementwise work is left out: it is a small share, and no
// ceiling measures it.
func StepFlopPerExample(m *mmoe.Model) float64 {
	var fwd float64
	for _, p := range m.Params() {
		if len(p.Shape) == 2 {
			fwd += 2 * float64(p.Shape[0]) * float64(p.Shape[1])
		}
	}
	return 3 * fwd
}

func benchTrain(ctx context.Context, cfg BenchConfig, rep *BenchReport) (*TrainFigure, error) {
	_, m, ts, err := build(cfg.Seed)
	if err != nil {
		return nil, err
	}
	tr, err := mtl.NewTrainer(m, ts, mtl.TrainConfig{BatchSize: Batch, Workers: cfg.Workers, Precision: cfg.Precision})
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	batches := make([]*features.Batch, 8)
	for i := range batches {
		batches[i] = NewBatch(rng, Batch)
	}
	var step, fwd, loss, bwd, opt, optBytes []float64
	var cpu0 time.Duration
	for i := range cfg.TrainSteps + 3 {
		if i == 3 {
			cpu0 = kernels.ProcessCPU()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		t0 := time.Now()
		if _, err := tr.Step(batches[i%len(batches)]); err != nil {
			return nil, err
		}
		el := time.Since(t0)
		if i < 3 {
			continue
		}
		step = append(step, ms(el))
		fwd = append(fwd, ms(tr.Times.Forward))
		loss = append(loss, ms(tr.Times.Loss))
		bwd = append(bwd, ms(tr.Times.Backward))
		opt = append(opt, ms(tr.Times.Optimizer))
		optBytes = append(optBytes, float64(tr.OptimizerBytes()))
	}
	cpu := kernels.ProcessCPU() - cpu0
	f := &TrainFigure{
		Precision: tr.Precision().String(), Workers: cfg.Workers, Steps: cfg.TrainSteps, BatchSize: Batch,
		StepMs: median(step), ForwardMs: median(fwd), LossMs: median(loss), BackwardMs: median(bwd), OptimizerMs: median(opt),
		PeakRSSMB: peakRSSMB(), OptimizerMB: float64(tr.OptimizerStateBytes()) / (1 << 20), Parameters: m.NumParams(),
	}
	f.ExamplesPerSec = float64(Batch) / (f.StepMs / 1000)
	f.CPUMsPerStep = ms(cpu) / float64(cfg.TrainSteps)
	f.FlopPerExample = StepFlopPerExample(m)
	f.GFlopsEffective = f.FlopPerExample * f.ExamplesPerSec / 1e9
	if f.CPUMsPerStep > 0 {
		f.GFlopsPerCPUSec = f.FlopPerExample * Batch / (f.CPUMsPerStep / 1000) / 1e9
	}
	if c, ok := rep.ceiling(tr.Precision().CeilingName()); ok {
		f.Ceiling = c.Name
		f.CeilingFrac = c.frac(f.GFlopsEffective, cfg.Workers)
		f.CeilingFracCPU = c.fracCPU(f.GFlopsPerCPUSec)
	}
	f.OptimizerMBPerStep = median(optBytes) / (1 << 20)
	if f.OptimizerMs > 0 {
		f.OptimizerGBps = median(optBytes) / (f.OptimizerMs / 1000) / 1e9
	}
	// After PeakRSSMB: the buffers must not count in the training's peak.
	f.CopyGBps = copyBandwidth(ctx, cfg.Workers, cfg.CeilingTime)
	if f.CopyGBps > 0 {
		f.OptimizerCopyFrac = f.OptimizerGBps / f.CopyGBps
	}
	return f, nil
}

// benchScore measures scoring in fp32, and in bf16 where the CPU has
// AVX512_BF16: the model path on 1 and 2 workers, then the whole scorer on
// 1 and 2 workers.
func benchScore(ctx context.Context, cfg BenchConfig) ([]ScoreFigure, error) {
	man, m, ts, err := build(cfg.Seed)
	if err != nil {
		return nil, err
	}
	precs := []kernels.Precision{kernels.FP32}
	if kernels.NativeBF16() {
		precs = append(precs, kernels.BF16)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 2))
	var out []ScoreFigure
	for _, p := range precs {
		figs, err := benchModelPath(ctx, cfg, m, ts, p, rng)
		if err != nil {
			return nil, err
		}
		out = append(out, figs...)
	}
	// The whole serving path, same model: JSON request, decode, transform,
	// split forward, scores, ranking, JSON answer.
	if err := serving.FillSampleScores(man, m, nil); err != nil {
		return nil, err
	}
	b, err := serving.NewBundle(man, m, nil)
	if err != nil {
		return nil, err
	}
	// Bodies made up front and an answer buffer reused, as the server's
	// are: the figure is the scorer's, not the harness's garbage.
	bodies := make([][]byte, min(cfg.ScoreRequests+5, 16))
	for i := range bodies {
		bodies[i] = Request(rng, Candidates, "")
	}
	for _, p := range precs {
		for _, workers := range []int{1, 2} {
			f, err := benchScorerPath(ctx, cfg, b, p, workers, bodies)
			if err != nil {
				return nil, err
			}
			out = append(out, f)
		}
	}
	return out, nil
}

// benchModelPath times the split forward alone, in precision p, on 1 and
// 2 workers.
func benchModelPath(ctx context.Context, cfg BenchConfig, m *mmoe.Model, ts *mtl.TaskSet, p kernels.Precision, rng *rand.Rand) ([]ScoreFigure, error) {
	split := m.NewSplitIn(p)
	var out []ScoreFigure
	for _, workers := range []int{1, 2} {
		// Each worker scores its share of the candidates against the
		// request's context, with its own workspace, in passes of the
		// scorer's default size (the context's share computed once).
		type wk struct {
			ws     *mmoe.Workspace
			full   [][]float32 // one pass of scores per objective
			scores [][]float32 // full, cut to the pass
			view   [][]float32
			cand   features.Batch
		}
		per := (Candidates + workers - 1) / workers
		pass := serving.DefaultBatchRows()
		wks := make([]*wk, workers)
		for i := range wks {
			w := &wk{ws: split.NewWorkspace(pass), view: make([][]float32, 2)}
			for range ts.Objectives() {
				w.full = append(w.full, make([]float32, pass))
			}
			w.scores = make([][]float32, len(w.full))
			wks[i] = w
		}
		share := func(w *wk, ctxRow, cand *features.Batch, lo, hi int) error {
			if err := split.SetContext(w.ws, ctxRow); err != nil {
				return err
			}
			for a := lo; a < hi; a += pass {
				b := min(a+pass, hi)
				cand.SliceTo(&w.cand, a, b)
				if err := split.ForwardCandidates(w.ws, &w.cand); err != nil {
					return err
				}
				for h := range w.view {
					w.view[h] = w.ws.Logits[h][:b-a]
				}
				for o := range w.scores {
					w.scores[o] = w.full[o][:b-a]
				}
				if _, err := ts.PredictTo(w.scores, w.view); err != nil {
					return err
				}
			}
			return nil
		}
		errs := make([]error, workers)
		lat := make([]float64, 0, cfg.ScoreRequests)
		var cpu time.Duration
		for r := range cfg.ScoreRequests + 5 {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			ctxRow, cand := NewBatch(rng, 1), NewBatch(rng, Candidates)
			c0 := kernels.ProcessCPU()
			t0 := time.Now()
			var wg sync.WaitGroup
			for i := 1; i < workers; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = share(wks[i], ctxRow, cand, i*per, min((i+1)*per, Candidates))
				}()
			}
			errs[0] = share(wks[0], ctxRow, cand, 0, min(per, Candidates))
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					return nil, err
				}
			}
			if r >= 5 {
				lat = append(lat, ms(time.Since(t0)))
				cpu += kernels.ProcessCPU() - c0
			}
		}
		out = append(out, latencyFigure("model", p, workers, lat, cpu))
	}
	return out, nil
}

// benchScorerPath times the whole scorer, in precision p, on workers
// workers: as onestone serve runs it, the extra workers on polling
// helpers.
func benchScorerPath(ctx context.Context, cfg BenchConfig, b *serving.Bundle, p kernels.Precision, workers int, bodies [][]byte) (ScoreFigure, error) {
	scfg := serving.ScorerConfig{Workers: workers, Precision: p.String()}
	if workers > 1 {
		h := serving.NewHelpers(workers-1, serving.DefaultHelperSpin)
		defer h.Close()
		scfg.Helpers = h
	}
	sc, err := serving.NewScorer(b, scfg)
	if err != nil {
		return ScoreFigure{}, err
	}
	var answer []byte
	lat := make([]float64, 0, cfg.ScoreRequests)
	var cpu0 time.Duration
	for r := range cfg.ScoreRequests + 5 {
		if r == 5 {
			cpu0 = kernels.ProcessCPU()
		}
		t0 := time.Now()
		resp, err := sc.ScoreBody(ctx, bodies[r%len(bodies)])
		if err != nil {
			return ScoreFigure{}, err
		}
		answer = resp.AppendJSON(answer[:0])
		resp.Release()
		if r >= 5 {
			lat = append(lat, ms(time.Since(t0)))
		}
	}
	return latencyFigure("scorer", sc.Precision(), workers, lat, kernels.ProcessCPU()-cpu0), nil
}

func latencyFigure(path string, p kernels.Precision, workers int, lat []float64, cpu time.Duration) ScoreFigure {
	f := ScoreFigure{Path: path, Precision: p.String(), Workers: workers, Requests: len(lat),
		P50Ms: percentile(lat, 0.50), P90Ms: percentile(lat, 0.90), P99Ms: percentile(lat, 0.99)}
	f.CandidatesSec = float64(Candidates) / (f.P50Ms / 1000)
	if len(lat) > 0 {
		f.CPUMsPerRequest = ms(cpu) / float64(len(lat))
	}
	return f
}

func median(x []float64) float64 { return percentile(x, 0.5) }

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// percentile returns the q-quantile of x (nearest rank).
func percentile(x []float64, q float64) float64 {
	if len(x) == 0 {
		return 0
	}
	s := slices.Clone(x)
	slices.Sort(s)
	i := int(q*float64(len(s)-1) + 0.5)
	return s[min(i, len(s)-1)]
}

// loadAvg is the 1, 5 and 15 minute load averages of /proc/loadavg ("" if
// unreadable).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// peakRSSMB reads the process's peak resident set (VmHWM) from /proc.
func peakRSSMB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}
