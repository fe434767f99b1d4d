package kernels

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkServeShapes runs the packed products of one scoring pass of the
// std model (56 candidates with AVX-512): the first layer's candidate share (208 ->
// 2064, with the split's epilogue), the experts' second layers (8 x 256
// -> 128, reading the first layer's output in place), the towers (128 ->
// 64) and heads (64 -> 1), in each precision the CPU runs natively. "pass"
// runs them all in turn, as a pass does, with all the weights streaming
// through the caches.
func BenchmarkServeShapes(b *testing.B) {
	rb := RowBlock()
	rows := (50 + rb - 1) / rb * rb // the scorer's pass (serving.DefaultBatchRows)
	const inK, out0, hid, h2, tw = 208, 2064, 256, 128, 64
	rng := rand.New(rand.NewPCG(1, 2))
	precs := []Precision{FP32}
	if NativeBF16() {
		precs = append(precs, BF16)
	}
	for _, p := range precs {
		w0 := p.PackB(true, out0, inK, randSlice(rng, out0*inK), inK)
		var w1 [8]*PackedB
		for e := range w1 {
			w1[e] = p.PackB(true, h2, hid, randSlice(rng, h2*hid), hid)
		}
		var wt, wh [2]*PackedB
		for t := range wt {
			wt[t] = p.PackB(true, tw, h2, randSlice(rng, tw*h2), h2)
			wh[t] = p.PackB(true, 1, tw, randSlice(rng, tw), tw)
		}
		x := randSlice(rng, rows*inK)
		yc, b0 := randSlice(rng, out0), randSlice(rng, out0)
		y0 := make([]float32, rows*out0)
		y1 := make([]float32, 8*rows*h2)
		mix := randSlice(rng, 2*rows*h2)
		yt := make([]float32, 2*rows*tw)
		yh := make([]float32, 2*rows)
		bias := randSlice(rng, 256)
		first := func() {
			LinearPackedEpilogueTo(y0, out0, x, inK, rows, w0, Epilogue{Bias: yc, Bias2: b0, ReLUFrom: 0, ReLUTo: 2048})
		}
		experts := func() {
			for e := range w1 {
				LinearPackedTo(ActReLU, y1[e*rows*h2:], h2, y0[e*hid:], out0, rows, w1[e], bias[:h2])
			}
		}
		const ldPairs = 1024 + 16 // a row stride off 4 KiB: rows in distinct L1 sets
		// The bf16 split forward: the first layer also stores the experts'
		// columns as bf16 pairs, which their second layers read in place.
		pairs := make([]float32, rows*ldPairs)
		firstPairs := func() {
			LinearPackedEpilogueTo(y0, out0, x, inK, rows, w0, Epilogue{Bias: yc, Bias2: b0, ReLUFrom: 0, ReLUTo: 2048,
				Pairs: pairs, LdPairs: ldPairs, PairsFrom: 0, PairsTo: 2048})
		}
		expertsPairs := func() {
			for e := range w1 {
				LinearPackedPairsTo(ActReLU, y1[e*rows*h2:], h2, pairs[e*hid/2:], ldPairs, rows, w1[e], bias[:h2])
			}
		}
		towers := func() {
			for t := range wt {
				LinearPackedTo(ActReLU, yt[t*rows*tw:], tw, mix[t*rows*h2:], h2, rows, wt[t], bias[:tw])
				LinearPackedTo(ActNone, yh[t*rows:], 1, yt[t*rows*tw:], tw, rows, wh[t], bias[:1])
			}
		}
		cases := []struct {
			name  string
			fn    func()
			flops float64
		}{
			{"first", first, 2.0 * float64(rows) * inK * out0},
			{"experts", experts, 2.0 * 8 * float64(rows) * hid * h2},
			{"towers", towers, 2.0 * 2 * float64(rows) * (h2*tw + tw)},
			{"pass", func() { first(); experts(); towers() }, 2.0 * float64(rows) * (inK*out0 + 8*hid*h2 + 2*(h2*tw+tw))},
		}
		if p == BF16 {
			cases = append(cases, []struct {
				name  string
				fn    func()
				flops float64
			}{
				{"first-pairs", firstPairs, 2.0 * float64(rows) * inK * out0},
				{"experts-pairs", expertsPairs, 2.0 * 8 * float64(rows) * hid * h2},
				{"pass-pairs", func() { firstPairs(); expertsPairs(); towers() }, 2.0 * float64(rows) * (inK*out0 + 8*hid*h2 + 2*(h2*tw+tw))},
			}...)
		}
		for _, c := range cases {
			b.Run(p.String()+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					c.fn()
				}
				b.ReportMetric(c.flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "us/op")
			})
		}
	}
}
