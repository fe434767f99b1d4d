//go:build noasm || !amd64

package kernels

func adamAsm(p, m, v, g0, g1 []float32, k *adamConsts) int { return 0 }

func prefetchRows(table []float32, dim int, rows []int32) {}
