//go:build race

package features_test

// raceEnabled: the race detector's instrumentation makes the allocation
// counts of some calls vary from run to run.
const raceEnabled = true
