//go:build race

package join

// raceEnabled: the join runs on one goroutine (only Stats is shared), so
// under the race detector the tests on generated streams run smaller, and
// the memory and allocation measurements are skipped.
const raceEnabled = true
