package mmoe

import (
	"math"

	"github.com/onestone/onestone/internal/kernels"
)

// Elementwise kernels on row-major views: element (r, c) of a view (x, ld)
// is x[r*ld+c]. They may move to internal/kernels later.

// addBias adds bias[c] to every row of the rows x len(bias) view (y, ld).
func addBias(y []float32, ld, rows int, bias []float32) {
	if rows > 0 && len(bias) > 0 {
		kernels.AddBias(y, ld, rows, bias)
	}
}

// colSumAdd adds the column sums of the rows x len(dst) view (x, ld) to dst.
func colSumAdd(dst []float32, x []float32, ld, rows int) {
	if rows > 0 && len(dst) > 0 {
		kernels.AddSumRows(dst, x, ld, rows)
	}
}

// biasActivate adds bias to the rows x len(bias) view (y, ld) and applies
// act (fused for ReLU).
func biasActivate(act activation, y []float32, ld, rows int, bias, pre []float32) {
	if rows == 0 || len(bias) == 0 {
		return
	}
	if act == actReLU {
		kernels.AddBiasReLU(y, ld, rows, bias)
		return
	}
	kernels.AddBias(y, ld, rows, bias)
	activate(act, y, ld, rows, len(bias), pre)
}

// activate applies act in place to the rows x cols view (y, ld). For GELU it
// first copies the pre-activations into (pre, ld), which backward needs.
func activate(act activation, y []float32, ld, rows, cols int, pre []float32) {
	switch act {
	case actReLU:
		for r := 0; r < rows; r++ {
			row := y[r*ld : r*ld+cols]
			for c, v := range row {
				if v < 0 {
					row[c] = 0
				}
			}
		}
	case actTanh:
		for r := 0; r < rows; r++ {
			row := y[r*ld : r*ld+cols]
			for c, v := range row {
				row[c] = tanh32(v)
			}
		}
	case actGELU:
		for r := 0; r < rows; r++ {
			row := y[r*ld : r*ld+cols]
			copy(pre[r*ld:r*ld+cols], row)
			for c, v := range row {
				x := float64(v)
				row[c] = float32(0.5 * x * (1 + math.Erf(x/math.Sqrt2)))
			}
		}
	}
}

// activateBack turns the gradient (dy, ldd) with respect to an activation's
// output into the gradient with respect to its input, in place, given the
// output (y, ld) (or, for GELU, the input (pre, ld)).
func activateBack(act activation, dy []float32, ldd int, y, pre []float32, ld, rows, cols int) {
	switch act {
	case actReLU:
		if rows > 0 && cols > 0 {
			kernels.ReLUBackward(dy, ldd, y, ld, rows, cols)
		}
	case actTanh:
		for r := 0; r < rows; r++ {
			d := dy[r*ldd : r*ldd+cols]
			o := y[r*ld : r*ld+cols]
			for c, v := range o {
				d[c] *= 1 - v*v
			}
		}
	case actGELU:
		const invSqrt2Pi = 0.3989422804014327
		for r := 0; r < rows; r++ {
			d := dy[r*ldd : r*ldd+cols]
			p := pre[r*ld : r*ld+cols]
			for c, v := range p {
				x := float64(v)
				cdf := 0.5 * (1 + math.Erf(x/math.Sqrt2))
				pdf := invSqrt2Pi * math.Exp(-0.5*x*x)
				d[c] *= float32(cdf + x*pdf)
			}
		}
	}
}

func tanh32(x float32) float32 { return float32(math.Tanh(float64(x))) }

// softmaxTo writes softmax(src[r*lds : r*lds+n]) into dst[r*n : r*n+n] for
// every row.
func softmaxTo(dst []float32, n int, src []float32, lds, rows int) {
	for r := 0; r < rows; r++ {
		s := src[r*lds : r*lds+n]
		d := dst[r*n : r*n+n]
		mx := s[0]
		for _, v := range s[1:] {
			mx = max(mx, v)
		}
		var sum float64
		for j, v := range s {
			e := math.Exp(float64(v - mx))
			d[j] = float32(e)
			sum += e
		}
		inv := float32(1 / sum)
		for j := range d {
			d[j] *= inv
		}
	}
}

// axpy adds a*x to y (len(y) elements), each product rounded before the
// sum (vectorised by kernels.AddScaled).
func axpy(y []float32, a float32, x []float32) {
	kernels.AddScaled(y, a, x)
}

func dot(x, y []float32) float32 {
	y = y[:len(x)]
	var s float32
	for i, v := range x {
		s += v * y[i]
	}
	return s
}

// linearTo computes the rows x out view (y, ldy) = act((x, ldx) · Wᵀ + b)
// with products in precision p, keeping the pre-activations in (pre, ldy)
// for GELU. The bias and a ReLU are applied in the product's epilogue,
// which gives the bits of the product followed by biasActivate.
func linearTo(p kernels.Precision, act activation, y []float32, ldy int, x []float32, ldx, rows int, in, out int, w, b, pre []float32) {
	if rows == 0 {
		return
	}
	switch {
	case act == actReLU && len(b) > 0:
		p.LinearTo(kernels.ActReLU, y, ldy, x, ldx, rows, in, out, w, b)
	case act == actNone:
		p.LinearTo(kernels.ActNone, y, ldy, x, ldx, rows, in, out, w, b)
	default:
		p.Gemm(false, true, rows, out, in, 1, x, ldx, w, in, 0, y, ldy)
		biasActivate(act, y, ldy, rows, b, pre)
	}
}

// linearBack accumulates dW += dyᵀ·x and db += colsum(dy), and, if dx is not
// nil, sets (dx, lddx) = dy·W (beta 0) or adds it (beta 1), with products
// in precision p.
func linearBack(p kernels.Precision, dw, db []float32, dy []float32, lddy int, x []float32, ldx, rows, in, out int, w []float32, dx []float32, lddx int, beta float32) {
	if rows == 0 {
		return
	}
	p.Gemm(true, false, out, in, rows, 1, dy, lddy, x, ldx, 1, dw, in)
	colSumAdd(db, dy, lddy, rows)
	if dx != nil {
		p.Gemm(false, false, rows, in, out, 1, dy, lddy, w, in, beta, dx, lddx)
	}
}

// linearBackSet is linearBack that sets dW = dyᵀ·x (beta 0) instead of
// adding to it: for a weight whose gradient nothing else writes, which
// then needs no clearing first.
func linearBackSet(p kernels.Precision, dw, db []float32, dy []float32, lddy int, x []float32, ldx, rows, in, out int, w []float32, dx []float32, lddx int, beta float32) {
	if rows == 0 {
		return
	}
	p.Gemm(true, false, out, in, rows, 1, dy, lddy, x, ldx, 0, dw, in)
	colSumAdd(db, dy, lddy, rows)
	if dx != nil {
		p.Gemm(false, false, rows, in, out, 1, dy, lddy, w, in, beta, dx, lddx)
	}
}

// linearPacked is linearTo with the weights packed by kernels.PackB (in x
// out): the same bits, with the bias and a ReLU applied in the GEMM's
// epilogue (which adds and clamps in the order biasActivate does).
func linearPacked(act activation, y []float32, ldy int, x []float32, ldx, rows int, w *kernels.PackedB, b, pre []float32) {
	linearPackedWith(kernels.LinearPackedTo, act, y, ldy, x, ldx, rows, w, b, pre)
}

// linearPackedPairs is linearPacked with x given as bf16 pairs
// (kernels.LinearPackedPairsTo; w packed for bf16): the same bits as
// linearPacked on the float32 x they were rounded from.
func linearPackedPairs(act activation, y []float32, ldy int, x []float32, ldx, rows int, w *kernels.PackedB, b, pre []float32) {
	linearPackedWith(kernels.LinearPackedPairsTo, act, y, ldy, x, ldx, rows, w, b, pre)
}

// linearPackedWith is linearPacked on the packed product f.
func linearPackedWith(f func(kernels.Activation, []float32, int, []float32, int, int, *kernels.PackedB, []float32),
	act activation, y []float32, ldy int, x []float32, ldx, rows int, w *kernels.PackedB, b, pre []float32) {
	if rows == 0 {
		return
	}
	if len(b) == 0 {
		f(kernels.ActNone, y, ldy, x, ldx, rows, w, nil)
		return
	}
	if act == actReLU {
		f(kernels.ActReLU, y, ldy, x, ldx, rows, w, b)
		return
	}
	f(kernels.ActNone, y, ldy, x, ldx, rows, w, b)
	activate(act, y, ldy, rows, len(b), pre)
}
