//go:build !race

package pipelines

const raceEnabled = false
