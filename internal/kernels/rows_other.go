//go:build noasm || !amd64

package kernels

import "unsafe"

func addRow(dst, x []float32)     { addRowGo(dst, x) }
func addReLURow(dst, x []float32) { addReLURowGo(dst, x) }
func reluMaskRow(dy, y []float32) { reluMaskRowGo(dy, y) }

func addScaledRow(dst []float32, a float32, x []float32) { addScaledRowGo(dst, a, x) }

// hasTranspose8 reports whether transpose8 has a fast path.
const hasTranspose8 = false

// transpose8 has no fast path in this build: the caller does all the work.
func transpose8(dst []float32, ldd int, src []float32, lds, k int) int { return 0 }

func mixRow(dst, w []float32, xs [][]float32, ptrs []unsafe.Pointer) { mixRowGo(dst, 0, w, xs) }

func packPanels(dst []float32, pad, kb int, src []float32, lds, w, rows int) {
	packPanelsGo(dst, pad, kb, src, lds, w, rows)
}

func dotRow(x, y []float32) float32 { return dotRowGo(0, x, y) }
