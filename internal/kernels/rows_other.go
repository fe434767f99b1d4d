//go:build noasm || !amd64

package kernels

func addRow(dst, x []float32)     { addRowGo(dst, x) }
func addReLURow(dst, x []float32) { addReLURowGo(dst, x) }
func reluMaskRow(dy, y []float32) { reluMaskRowGo(dy, y) }
