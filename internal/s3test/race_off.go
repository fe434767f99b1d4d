//go:build !race

package s3test

// raceEnabled: built with the race detector.
const raceEnabled = false
