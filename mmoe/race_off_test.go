//go:build !race

package mmoe

const raceEnabled = false
