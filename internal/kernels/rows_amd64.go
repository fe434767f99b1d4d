//go:build !noasm

package kernels

import "unsafe"

//go:noescape
func addRowAVX2(dst, x *float32, n int)

//go:noescape
func addReLURowAVX2(dst, x *float32, n int)

//go:noescape
func reluMaskRowAVX2(dy, y *float32, n int)

//go:noescape
func mixRowAVX2(dst *float32, n int, w *float32, xs *unsafe.Pointer, m int)

// mixRow sets dst[i] = Σ_j w[j]*xs[j][i] (see MixTo) for i < len(dst);
// ptrs is scratch of len(w) entries.
func mixRow(dst, w []float32, xs [][]float32, ptrs []unsafe.Pointer) {
	n := 0
	if hasAVX2 && len(w) > 0 {
		n = len(dst) &^ 7
		if n > 0 {
			for j, x := range xs {
				_ = x[n-1]
				ptrs[j] = unsafe.Pointer(&x[0])
			}
			mixRowAVX2(&dst[0], n, &w[0], &ptrs[0], len(w))
		}
	}
	mixRowGo(dst, n, w, xs)
}

//go:noescape
func addScaledRowAVX2(dst, x *float32, a float32, n int)

// addScaledRow sets dst[i] += a*x[i] for i < len(dst); len(x) >= len(dst).
func addScaledRow(dst []float32, a float32, x []float32) {
	x = x[:len(dst)]
	n := 0
	if hasAVX2 {
		n = len(dst) &^ 7
		if n > 0 {
			addScaledRowAVX2(&dst[0], &x[0], a, n)
		}
	}
	addScaledRowGo(dst[n:], a, x[n:])
}

// addRow sets dst[i] += x[i] for i < len(dst); len(x) >= len(dst).
func addRow(dst, x []float32) {
	x = x[:len(dst)]
	n := 0
	if hasAVX2 {
		n = len(dst) &^ 7
		if n > 0 {
			addRowAVX2(&dst[0], &x[0], n)
		}
	}
	addRowGo(dst[n:], x[n:])
}

// addReLURow sets dst[i] = max(dst[i]+x[i], 0) for i < len(dst).
func addReLURow(dst, x []float32) {
	x = x[:len(dst)]
	n := 0
	if hasAVX2 {
		n = len(dst) &^ 7
		if n > 0 {
			addReLURowAVX2(&dst[0], &x[0], n)
		}
	}
	addReLURowGo(dst[n:], x[n:])
}

// reluMaskRow zeroes dy[i] where y[i] <= 0 (or NaN), for i < len(dy).
func reluMaskRow(dy, y []float32) {
	y = y[:len(dy)]
	n := 0
	if hasAVX2 {
		n = len(dy) &^ 7
		if n > 0 {
			reluMaskRowAVX2(&dy[0], &y[0], n)
		}
	}
	reluMaskRowGo(dy[n:], y[n:])
}

// hasTranspose8 reports whether transpose8 has a fast path.
var hasTranspose8 = hasAVX2

//go:noescape
func transpose8AVX2(dst *float32, ldd int, src *float32, lds int, k int)

// transpose8 writes dst[q*ldd+r] = src[r*lds+q] for r < 8 and q < n, for
// the largest n <= k that is a multiple of 8 and that it can do quickly;
// it returns n (0 without AVX2). The caller transposes the rest.
func transpose8(dst []float32, ldd int, src []float32, lds, k int) int {
	n := k &^ 7
	if !hasAVX2 || n == 0 {
		return 0
	}
	_ = dst[(n-1)*ldd+7]
	_ = src[7*lds+n-1]
	transpose8AVX2(&dst[0], ldd, &src[0], lds, n)
	return n
}

//go:noescape
func packPanelsAVX512(dst *float32, pad, kb int, src *float32, lds, full, lastW, rows int)

// packPanels packs rows rows of w columns of a matrix (src, row stride
// lds) into panels of pad columns, each panel kb rows deep: element (r, j)
// goes to dst[(j/pad)*pad*kb + r*pad + j%pad], and the last panel's
// columns past w are zeroed. It is packA for a transposed A and packB
// for a B as stored. On AVX-512 a panel row is one masked load and store
// per 16 columns, and the source is read row by row across the panels
// with the rows ahead prefetched: a call to copy() per panel row cost
// more than the copy, and reading a narrow column strip of a wide matrix
// stalled on every row.
func packPanels(dst []float32, pad, kb int, src []float32, lds, w, rows int) {
	if rows <= 0 || w <= 0 {
		return
	}
	full := (w - 1) / pad
	_ = dst[full*pad*kb+(rows-1)*pad+pad-1]
	_ = src[(rows-1)*lds+w-1]
	if hasAVX512 && pad <= 32 {
		packPanelsAVX512(&dst[0], pad, kb, &src[0], lds, full, w-full*pad, rows)
		return
	}
	packPanelsGo(dst, pad, kb, src, lds, w, rows)
}

//go:noescape
func dotAVX2(x, y *float32, n int) float32

// dotRow returns Σ x[i]·y[i] for i < len(x); len(y) >= len(x).
func dotRow(x, y []float32) float32 {
	y = y[:len(x)]
	n := 0
	var s float32
	if hasAVX2 {
		n = len(x) &^ 7
		if n > 0 {
			s = dotAVX2(&x[0], &y[0], n)
		}
	}
	return dotRowGo(s, x[n:], y[n:])
}
