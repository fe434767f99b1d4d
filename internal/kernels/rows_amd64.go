//go:build !noasm

package kernels

//go:noescape
func addRowAVX2(dst, x *float32, n int)

//go:noescape
func addReLURowAVX2(dst, x *float32, n int)

//go:noescape
func reluMaskRowAVX2(dy, y *float32, n int)

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
