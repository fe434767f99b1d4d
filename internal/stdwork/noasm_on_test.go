//go:build noasm

package stdwork

// noasm: the build forces the portable kernel (make test's second run).
const noasm = true
