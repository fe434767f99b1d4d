//go:build race

package pipelines

// raceEnabled: the race detector is on; the longest test that runs streams
// in child processes is skipped (the in-process stream tests run under it).
const raceEnabled = true
