package mmoe

import (
	"math/rand/v2"
	"testing"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/kernels"
)

// BenchmarkForwardBackward/std is the standard training workload of
// docs/benchmarks.md: 26 single-id fields of 100,000 rows, dim 16, 13 dense,
// 8 experts [256, 128] ReLU, towers [64], 2 heads, batch 1024.
func BenchmarkForwardBackward(b *testing.B) {
	b.Run("std", func(b *testing.B) { benchStep(b, true) })
	b.Run("std-2workers", benchDataParallel)
}

// BenchmarkForward/std is the forward pass alone on the same workload.
func BenchmarkForward(b *testing.B) {
	b.Run("std", func(b *testing.B) { benchStep(b, false) })
}

func benchStep(b *testing.B, backward bool) {
	const rows = 1024
	layout := stdLayout()
	m, err := New(Config{Seed: 1}, layout, []string{"ctr", "cvr"})
	if err != nil {
		b.Fatal(err)
	}
	batch := randomBatch(layout, rows, rand.New(rand.NewPCG(1, 2)))
	ws, g := m.NewWorkspace(rows), m.NewGrads(rows)
	dl := [][]float32{make([]float32, rows), make([]float32, rows)}
	for i := range dl[0] {
		dl[0][i], dl[1][i] = 0.01, -0.01
	}
	step := func() {
		if err := m.Forward(ws, batch); err != nil {
			b.Fatal(err)
		}
		if backward {
			if err := m.Backward(ws, batch, dl, g); err != nil {
				b.Fatal(err)
			}
		}
	}
	step() // warm up: grow the sparse gradients
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		step()
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "examples/s")
}

// benchDataParallel splits each batch of the std workload over two
// persistent workers (SliceTo views, one Workspace and Grads each) and adds
// the second worker's gradients into the first's, as a trainer on 2 cores
// would.
func benchDataParallel(b *testing.B) {
	const rows, half = 1024, 512
	layout := stdLayout()
	m, err := New(Config{Seed: 1}, layout, []string{"ctr", "cvr"})
	if err != nil {
		b.Fatal(err)
	}
	batch := randomBatch(layout, rows, rand.New(rand.NewPCG(1, 2)))
	dl := [][]float32{make([]float32, rows), make([]float32, rows)}
	for i := range dl[0] {
		dl[0][i], dl[1][i] = 0.01, -0.01
	}
	type worker struct {
		ws    *Workspace
		g     *Grads
		view  features.Batch
		dl    [][]float32
		start chan struct{}
		done  chan error
	}
	ws := make([]*worker, 2)
	for i := range ws {
		w := &worker{ws: m.NewWorkspace(half), g: m.NewGrads(half), start: make(chan struct{}), done: make(chan error)}
		batch.SliceTo(&w.view, i*half, (i+1)*half)
		w.dl = [][]float32{dl[0][i*half : (i+1)*half], dl[1][i*half : (i+1)*half]}
		ws[i] = w
		go func() {
			for range w.start {
				err := m.Forward(w.ws, &w.view)
				if err == nil {
					err = m.Backward(w.ws, &w.view, w.dl, w.g)
				}
				w.done <- err
			}
		}()
	}
	defer func() {
		for _, w := range ws {
			close(w.start)
		}
	}()
	step := func() {
		for _, w := range ws {
			w.start <- struct{}{}
		}
		for _, w := range ws {
			if err := <-w.done; err != nil {
				b.Fatal(err)
			}
		}
		if err := ws[0].g.AddFrom(ws[1].g); err != nil {
			b.Fatal(err)
		}
	}
	step()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		step()
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "examples/s")
}

// BenchmarkScore/std-500 scores one request of the std workload (one
// context, 500 candidates) on one goroutine: full is Model.Forward on the
// joined batch, split is Split.Forward computing the context share once.
func BenchmarkScore(b *testing.B) {
	const n = 500
	layout := stdLayout()
	m, err := New(Config{Seed: 1}, layout, []string{"ctr", "cvr"})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	ctx, cand := randomBatch(layout, 1, rng), randomBatch(layout, n, rng)
	full := joinSides(layout, ctx, cand)
	s := m.NewSplit()
	b.Run("std-500/full", func(b *testing.B) {
		ws := m.NewWorkspace(n)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := m.Forward(ws, full); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "candidates/s")
	})
	b.Run("std-500/split", func(b *testing.B) {
		ws := s.NewWorkspace(n)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := s.Forward(ws, ctx, cand); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "candidates/s")
	})
}

// BenchmarkScorePasses/std-500 scores one std request as the scorer's
// workers do: the context share set once, then the 500 candidates in
// passes of 56 rows (serving.DefaultBatchRows with AVX-512), in each
// precision the CPU runs natively.
func BenchmarkScorePasses(b *testing.B) {
	const n = 500
	rb := kernels.RowBlock()
	pass := (50 + rb - 1) / rb * rb
	layout := stdLayout()
	m, err := New(Config{Seed: 1}, layout, []string{"ctr", "cvr"})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	ctx, cand := randomBatch(layout, 1, rng), randomBatch(layout, n, rng)
	precs := []kernels.Precision{kernels.FP32}
	if kernels.NativeBF16() {
		precs = append(precs, kernels.BF16)
	}
	for _, p := range precs {
		b.Run("std-500/"+p.String(), func(b *testing.B) {
			s := m.NewSplitIn(p)
			ws := s.NewWorkspace(pass)
			var view features.Batch
			b.ReportAllocs()
			for b.Loop() {
				if err := s.SetContext(ws, ctx); err != nil {
					b.Fatal(err)
				}
				for lo := 0; lo < n; lo += pass {
					cand.SliceTo(&view, lo, min(lo+pass, n))
					if err := s.ForwardCandidates(ws, &view); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/request")
		})
	}
}
