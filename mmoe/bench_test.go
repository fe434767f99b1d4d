package mmoe

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkForwardBackward/std is the standard training workload of
// BENCHMARKS.md: 26 single-id fields of 100,000 rows, dim 16, 13 dense,
// 8 experts [256, 128] ReLU, towers [64], 2 heads, batch 1024.
func BenchmarkForwardBackward(b *testing.B) {
	b.Run("std", func(b *testing.B) { benchStep(b, true) })
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
