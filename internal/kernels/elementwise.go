package kernels

import (
	"fmt"
	"math"
	"unsafe"
)

// The elementwise kernels work on row-major views: element (r, c) of the
// view (x, ld) is x[r*ld+c], so a kernel can work on a block of columns
// inside a wider matrix. They panic when a slice is too short for the view.

func checkView(fn, name string, x []float32, ld, rows, cols int) {
	if rows < 0 || cols < 0 {
		panic(fmt.Sprintf("kernels: %s: negative shape %dx%d", fn, rows, cols))
	}
	if rows > 0 && cols > 0 {
		if ld < cols {
			panic(fmt.Sprintf("kernels: %s: %s row stride %d < %d columns", fn, name, ld, cols))
		}
		if need := (rows-1)*ld + cols; len(x) < need {
			panic(fmt.Sprintf("kernels: %s: len(%s) = %d, want >= %d for %dx%d with stride %d", fn, name, len(x), need, rows, cols, ld))
		}
	}
}

// AddBias adds bias[c] to every row of the rows x len(bias) view (y, ldy).
func AddBias(y []float32, ldy, rows int, bias []float32) {
	n := len(bias)
	checkView("AddBias", "y", y, ldy, rows, n)
	for r := 0; r < rows; r++ {
		addRow(y[r*ldy:r*ldy+n], bias)
	}
}

// AddBiasReLU sets y = max(y + bias, 0) on every row of the rows x len(bias)
// view (y, ldy): the fused bias and ReLU of a dense layer's forward pass.
// A sum that is NaN or -0 stays so.
func AddBiasReLU(y []float32, ldy, rows int, bias []float32) {
	n := len(bias)
	checkView("AddBiasReLU", "y", y, ldy, rows, n)
	for r := 0; r < rows; r++ {
		addReLURow(y[r*ldy:r*ldy+n], bias)
	}
}

// AddScaled sets dst[i] += a*x[i] for every i < len(dst), rounding the
// product before the sum (never a fused multiply-add), so that its result
// is the same whatever the build: the expression y += a*x of Go code
// compiled without FMA. It panics if x is shorter than dst.
func AddScaled(dst []float32, a float32, x []float32) {
	if len(x) < len(dst) {
		panic(fmt.Sprintf("kernels: AddScaled: len(x) = %d < len(dst) = %d", len(x), len(dst)))
	}
	addScaledRow(dst, a, x)
}

// Dot returns the dot product Σ x[i]·y[i] over i < len(x). With assembly
// it sums in vector lanes and fused multiply-adds, an order of its own:
// the result is the same for the same inputs on a given build and CPU,
// but it is not the bits of a scalar loop. It panics if y is shorter than
// x.
func Dot(x, y []float32) float32 {
	if len(y) < len(x) {
		panic(fmt.Sprintf("kernels: Dot: len(y) = %d < len(x) = %d", len(y), len(x)))
	}
	return dotRow(x, y)
}

// dotRowGo adds Σ x[i]·y[i] to s, in order.
func dotRowGo(s float32, x, y []float32) float32 {
	y = y[:len(x)]
	for i, v := range x {
		s += v * y[i]
	}
	return s
}

// maxMix is the most inputs MixTo takes.
const maxMix = 64

// MixTo sets each row of the rows x cols view (dst, ldd) to a weighted sum
// of the same row of len(xs) inputs: row r is Σ_j w[r*ldw+j] · (row r of the
// view (xs[j], ldx[j])), summed in order of j starting from zero, every
// product rounded before its sum (no FMA) — the bits of clearing dst and
// calling AddScaled once per input. It is a gate's mixture of expert
// outputs. It does not allocate. It panics on inconsistent shapes or more
// than 64 inputs.
func MixTo(dst []float32, ldd, rows, cols int, w []float32, ldw int, xs [][]float32, ldx []int) {
	n := len(xs)
	if n > maxMix || len(ldx) != n {
		panic(fmt.Sprintf("kernels: MixTo: %d inputs with %d strides, want equal and at most %d", n, len(ldx), maxMix))
	}
	checkView("MixTo", "dst", dst, ldd, rows, cols)
	checkView("MixTo", "w", w, ldw, rows, n)
	for j, x := range xs {
		checkView("MixTo", "an input", x, ldx[j], rows, cols)
	}
	var (
		ptrs [maxMix]unsafe.Pointer
		row  [maxMix][]float32
	)
	for r := 0; r < rows; r++ {
		for j, x := range xs {
			row[j] = x[r*ldx[j] : r*ldx[j]+cols]
		}
		mixRow(dst[r*ldd:r*ldd+cols], w[r*ldw:r*ldw+n], row[:n], ptrs[:n])
	}
}

// ReLU sets y = max(y, 0) on the rows x cols view (y, ldy).
func ReLU(y []float32, ldy, rows, cols int) {
	checkView("ReLU", "y", y, ldy, rows, cols)
	for r := 0; r < rows; r++ {
		row := y[r*ldy : r*ldy+cols]
		for c, v := range row {
			if v < 0 {
				row[c] = 0
			}
		}
	}
}

// ReLUBackward turns the gradient with respect to a ReLU's output into the
// gradient with respect to its input, in place: it zeroes dy where the
// output y is <= 0. (dy, lddy) and (y, ldy) are rows x cols views.
func ReLUBackward(dy []float32, lddy int, y []float32, ldy, rows, cols int) {
	checkView("ReLUBackward", "dy", dy, lddy, rows, cols)
	checkView("ReLUBackward", "y", y, ldy, rows, cols)
	for r := 0; r < rows; r++ {
		reluMaskRow(dy[r*lddy:r*lddy+cols], y[r*ldy:r*ldy+cols])
	}
}

// AddSumRows adds the sum of the rows of the rows x len(dst) view (x, ldx)
// to dst: dst[c] += Σ_r x[r*ldx+c]. It accumulates a bias gradient.
func AddSumRows(dst, x []float32, ldx, rows int) {
	n := len(dst)
	checkView("AddSumRows", "x", x, ldx, rows, n)
	for r := 0; r < rows; r++ {
		addRow(dst, x[r*ldx:r*ldx+n])
	}
}

// SumRowsTo sets dst[c] = Σ_r x[r*ldx+c] over the rows x len(dst) view
// (x, ldx).
func SumRowsTo(dst, x []float32, ldx, rows int) {
	clear(dst)
	AddSumRows(dst, x, ldx, rows)
}

// SoftmaxTo writes the softmax of each row of the rows x cols view
// (src, lds) into the view (dst, ldd). dst may be src (in place). It is
// numerically stable (the row maximum is subtracted before exponentiating)
// and sums in float64. A row holding +Inf or NaN gives NaN.
func SoftmaxTo(dst []float32, ldd int, src []float32, lds, rows, cols int) {
	checkView("SoftmaxTo", "dst", dst, ldd, rows, cols)
	checkView("SoftmaxTo", "src", src, lds, rows, cols)
	if cols == 0 {
		return
	}
	for r := 0; r < rows; r++ {
		s := src[r*lds : r*lds+cols]
		d := dst[r*ldd : r*ldd+cols]
		mx := s[0]
		for _, v := range s[1:] {
			if v > mx || v != v {
				mx = v
			}
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

// SoftmaxBackwardTo writes the gradient with respect to a row-wise
// softmax's input, dx = y ⊙ (dy − Σ_c dy⊙y), given its output y and the
// gradient dy with respect to that output. All three are rows x cols views;
// dx may be dy.
func SoftmaxBackwardTo(dx []float32, lddx int, y []float32, ldy int, dy []float32, lddy, rows, cols int) {
	checkView("SoftmaxBackwardTo", "dx", dx, lddx, rows, cols)
	checkView("SoftmaxBackwardTo", "y", y, ldy, rows, cols)
	checkView("SoftmaxBackwardTo", "dy", dy, lddy, rows, cols)
	for r := 0; r < rows; r++ {
		yr := y[r*ldy : r*ldy+cols]
		dr := dy[r*lddy : r*lddy+cols]
		xr := dx[r*lddx : r*lddx+cols]
		var dot float64
		for c, v := range yr {
			dot += float64(v) * float64(dr[c])
		}
		d := float32(dot)
		for c, v := range yr {
			xr[c] = v * (dr[c] - d)
		}
	}
}

func checkIDs(fn string, ids []int32, tableRows int) {
	for i, id := range ids {
		if id < 0 || int(id) >= tableRows {
			panic(fmt.Sprintf("kernels: %s: ids[%d] = %d out of range [0, %d)", fn, i, id, tableRows))
		}
	}
}

// Gather copies embedding rows: row r of the len(ids) x dim view (dst, ldd)
// becomes row ids[r] of table (rows of dim floats, contiguous). It panics
// on an id outside the table.
func Gather(dst []float32, ldd int, table []float32, dim int, ids []int32) {
	checkView("Gather", "dst", dst, ldd, len(ids), dim)
	if dim <= 0 {
		return
	}
	rows := len(table) / dim
	for r, id := range ids {
		if id < 0 || int(id) >= rows {
			checkIDs("Gather", ids, rows)
		}
		o := int(id) * dim
		copy(dst[r*ldd:r*ldd+dim], table[o:o+dim])
	}
}

// GatherPooled writes into row r of the (len(offsets)-1) x dim view
// (dst, ldd) the sum of the table rows ids[offsets[r]:offsets[r+1]], or
// their mean when mean is true (an empty bag gives zeros): the lookup of a
// multi-valued field. It panics on an id outside the table or offsets that
// are not non-decreasing within ids.
func GatherPooled(dst []float32, ldd int, table []float32, dim int, ids, offsets []int32, mean bool) {
	rows := max(len(offsets)-1, 0)
	checkView("GatherPooled", "dst", dst, ldd, rows, dim)
	if dim <= 0 {
		return
	}
	trows := len(table) / dim
	for r := 0; r < rows; r++ {
		lo, hi := offsets[r], offsets[r+1]
		if lo < 0 || hi < lo || int(hi) > len(ids) {
			panic(fmt.Sprintf("kernels: GatherPooled: offsets[%d:%d] = [%d, %d] not a range of %d ids", r, r+2, lo, hi, len(ids)))
		}
		d := dst[r*ldd : r*ldd+dim]
		clear(d)
		bag := ids[lo:hi]
		for _, id := range bag {
			if id < 0 || int(id) >= trows {
				checkIDs("GatherPooled", ids, trows)
			}
			o := int(id) * dim
			addRowGo(d, table[o:o+dim])
		}
		if mean && len(bag) > 1 {
			s := 1 / float32(len(bag))
			for i := range d {
				d[i] *= s
			}
		}
	}
}

// ScatterAdd adds row r of the len(ids) x dim view (src, lds) to row ids[r]
// of table: the gradient of Gather. Repeated ids accumulate. It panics on
// an id outside the table.
func ScatterAdd(table []float32, dim int, ids []int32, src []float32, lds int) {
	checkView("ScatterAdd", "src", src, lds, len(ids), dim)
	if dim <= 0 {
		return
	}
	rows := len(table) / dim
	for r, id := range ids {
		if id < 0 || int(id) >= rows {
			checkIDs("ScatterAdd", ids, rows)
		}
		o := int(id) * dim
		addRowGo(table[o:o+dim], src[r*lds:r*lds+dim])
	}
}

// ScatterAddPooled is the gradient of GatherPooled: row r of the
// (len(offsets)-1) x dim view (src, lds) is added to every table row of the
// bag ids[offsets[r]:offsets[r+1]], divided by the bag's size when mean is
// true.
func ScatterAddPooled(table []float32, dim int, ids, offsets []int32, src []float32, lds int, mean bool) {
	rows := max(len(offsets)-1, 0)
	checkView("ScatterAddPooled", "src", src, lds, rows, dim)
	if dim <= 0 {
		return
	}
	trows := len(table) / dim
	for r := 0; r < rows; r++ {
		lo, hi := offsets[r], offsets[r+1]
		if lo < 0 || hi < lo || int(hi) > len(ids) {
			panic(fmt.Sprintf("kernels: ScatterAddPooled: offsets[%d:%d] = [%d, %d] not a range of %d ids", r, r+2, lo, hi, len(ids)))
		}
		bag := ids[lo:hi]
		s := src[r*lds : r*lds+dim]
		scale := float32(1)
		if mean && len(bag) > 1 {
			scale = 1 / float32(len(bag))
		}
		for _, id := range bag {
			if id < 0 || int(id) >= trows {
				checkIDs("ScatterAddPooled", ids, trows)
			}
			t := table[int(id)*dim : int(id)*dim+dim]
			if scale == 1 {
				addRowGo(t, s)
				continue
			}
			for i, v := range s {
				t[i] += scale * v
			}
		}
	}
}

// mixRowGo is mixRow from column i0 on.
func mixRowGo(dst []float32, i0 int, w []float32, xs [][]float32) {
	d := dst[i0:]
	clear(d)
	for j, x := range xs {
		x = x[i0 : i0+len(d)]
		a := w[j]
		for i, v := range x {
			d[i] += float32(a * v)
		}
	}
}

func addScaledRowGo(dst []float32, a float32, x []float32) {
	x = x[:len(dst)]
	for i, v := range x {
		// The conversion forbids fusing into an FMA, so every build
		// rounds the product as the assembly does.
		dst[i] += float32(a * v)
	}
}

func addRowGo(dst, x []float32) {
	x = x[:len(dst)]
	for i, v := range x {
		dst[i] += v
	}
}

// addReLURowGo is addReLURow without assembly, with its ReLU: a sum
// below zero becomes 0, NaN and -0 stay (VMAXPS with the sum as second
// source), so that every element gets the same bits whichever code
// computes it.
func addReLURowGo(dst, x []float32) {
	x = x[:len(dst)]
	for i, v := range x {
		s := dst[i] + v
		if s < 0 {
			s = 0
		}
		dst[i] = s
	}
}

func reluMaskRowGo(dy, y []float32) {
	y = y[:len(dy)]
	for i, v := range y {
		if !(v > 0) {
			dy[i] = 0
		}
	}
}
