//go:build race

package serving

// raceEnabled: the race detector makes sync.Pool drop items at random.
const raceEnabled = true
