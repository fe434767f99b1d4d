package stdwork

import (
	"bufio"
	"context"
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

// GemmFigure is one kernel shape's throughput.
type GemmFigure struct {
	Shape   string  `json:"shape"`
	GFlops1 float64 `json:"gflops_1_core"`
	GFlops2 float64 `json:"gflops_2_cores"`
}

// TrainFigure is the training throughput of the std workload.
type TrainFigure struct {
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
}

// ScoreFigure is the latency of scoring one request of Candidates
// candidates.
type ScoreFigure struct {
	Path          string  `json:"path"` // "model" (split forward) or "scorer" (JSON request to ranked response)
	Workers       int     `json:"workers"`
	Requests      int     `json:"requests"`
	P50Ms         float64 `json:"p50_ms"`
	P90Ms         float64 `json:"p90_ms"`
	P99Ms         float64 `json:"p99_ms"`
	CandidatesSec float64 `json:"candidates_per_sec"`
}

// BenchReport is what `onestone bench` prints.
type BenchReport struct {
	Preset     string        `json:"preset"`
	Kernel     string        `json:"kernel"`
	GOMAXPROCS int           `json:"gomaxprocs"`
	Train      *TrainFigure  `json:"train,omitempty"`
	Score      []ScoreFigure `json:"score,omitempty"`
	Gemm       []GemmFigure  `json:"gemm,omitempty"`
}

// BenchConfig selects what Bench measures.
type BenchConfig struct {
	Train, Score, Gemm bool
	TrainSteps         int           // Default: 30 (after 3 warm-up steps)
	Workers            int           // training workers. Default: GOMAXPROCS
	ScoreRequests      int           // Default: 300
	GemmTime           time.Duration // per shape and core count. Default: 300ms
	Seed               uint64
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
	rep := &BenchReport{Preset: "std", Kernel: kernels.Impl(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	var err error
	if cfg.Train {
		if rep.Train, err = benchTrain(ctx, cfg); err != nil {
			return nil, err
		}
	}
	if cfg.Score {
		if rep.Score, err = benchScore(ctx, cfg); err != nil {
			return nil, err
		}
	}
	if cfg.Gemm {
		for _, s := range kernels.StdShapes() {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			rep.Gemm = append(rep.Gemm, GemmFigure{
				Shape:   s.Name,
				GFlops1: kernels.MeasureGemm(s.M, s.N, s.K, s.TransA, s.TransB, 1, cfg.GemmTime),
				GFlops2: kernels.MeasureGemm(s.M, s.N, s.K, s.TransA, s.TransB, 2, cfg.GemmTime),
			})
		}
	}
	return rep, nil
}

func benchTrain(ctx context.Context, cfg BenchConfig) (*TrainFigure, error) {
	_, m, ts, err := build(cfg.Seed)
	if err != nil {
		return nil, err
	}
	tr, err := mtl.NewTrainer(m, ts, mtl.TrainConfig{BatchSize: Batch, Workers: cfg.Workers})
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	batches := make([]*features.Batch, 8)
	for i := range batches {
		batches[i] = NewBatch(rng, Batch)
	}
	var step, fwd, loss, bwd, opt []float64
	for i := range cfg.TrainSteps + 3 {
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
	}
	f := &TrainFigure{
		Workers: cfg.Workers, Steps: cfg.TrainSteps, BatchSize: Batch,
		StepMs: median(step), ForwardMs: median(fwd), LossMs: median(loss), BackwardMs: median(bwd), OptimizerMs: median(opt),
		PeakRSSMB: peakRSSMB(), OptimizerMB: float64(tr.OptimizerStateBytes()) / (1 << 20), Parameters: m.NumParams(),
	}
	f.ExamplesPerSec = float64(Batch) / (f.StepMs / 1000)
	return f, nil
}

func benchScore(ctx context.Context, cfg BenchConfig) ([]ScoreFigure, error) {
	man, m, ts, err := build(cfg.Seed)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 2))
	split := m.NewSplit()
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
		for r := range cfg.ScoreRequests + 5 {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			ctxRow, cand := NewBatch(rng, 1), NewBatch(rng, Candidates)
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
			}
		}
		out = append(out, latencyFigure("model", workers, lat))
	}
	// The whole serving path, same model: JSON request, decode, transform,
	// split forward, scores, ranking, JSON answer.
	if err := serving.FillSampleScores(man, m); err != nil {
		return nil, err
	}
	b, err := serving.NewBundle(man, m)
	if err != nil {
		return nil, err
	}
	for _, workers := range []int{1, 2} {
		// As onestone serve runs it: the extra workers on polling helpers.
		scfg := serving.ScorerConfig{Workers: workers}
		if workers > 1 {
			h := serving.NewHelpers(workers-1, serving.DefaultHelperSpin)
			defer h.Close()
			scfg.Helpers = h
		}
		sc, err := serving.NewScorer(b, scfg)
		if err != nil {
			return nil, err
		}
		lat := make([]float64, 0, cfg.ScoreRequests)
		for r := range cfg.ScoreRequests + 5 {
			body := Request(rng, Candidates, "")
			t0 := time.Now()
			resp, err := sc.ScoreBody(ctx, body)
			if err != nil {
				return nil, err
			}
			_ = resp.AppendJSON(nil)
			resp.Release()
			if r >= 5 {
				lat = append(lat, ms(time.Since(t0)))
			}
		}
		out = append(out, latencyFigure("scorer", workers, lat))
	}
	return out, nil
}

func latencyFigure(path string, workers int, lat []float64) ScoreFigure {
	f := ScoreFigure{Path: path, Workers: workers, Requests: len(lat),
		P50Ms: percentile(lat, 0.50), P90Ms: percentile(lat, 0.90), P99Ms: percentile(lat, 0.99)}
	f.CandidatesSec = float64(Candidates) / (f.P50Ms / 1000)
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
