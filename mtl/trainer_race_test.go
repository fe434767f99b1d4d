//go:build race

package mtl_test

// raceEnabled: sync.Pool (the GEMM packing buffers) drops items under the
// race detector, so allocation counts are meaningless there.
const raceEnabled = true
