//go:build !noasm

package kernels

//go:noescape
func probeKeyLinesAVX512(dst *int32, table *uint64, lines uint64, keys *uint64, n int)

//go:noescape
func prefetchKeyLinesAsm(table *uint64, lines uint64, keys *uint64, n int)

// probeKeyLinesAsm runs ProbeKeyLines with AVX-512 and returns the number
// of keys done: all of them, or none without AVX-512.
func probeKeyLinesAsm(dst []int32, table, keys []uint64) int {
	if !hasAVX512 {
		return 0
	}
	_ = dst[len(keys)-1]
	probeKeyLinesAVX512(&dst[0], &table[0], uint64(len(table)/KeyLineWords), &keys[0], len(keys))
	return len(keys)
}

func prefetchKeyLines(table, keys []uint64) {
	prefetchKeyLinesAsm(&table[0], uint64(len(table)/KeyLineWords), &keys[0], len(keys))
}
