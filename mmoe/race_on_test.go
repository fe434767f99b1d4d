//go:build race

package mmoe

// raceEnabled: the race detector makes sync.Pool (the GEMM's packing
// buffers) drop items at random, so allocation counts are not meaningful.
const raceEnabled = true
