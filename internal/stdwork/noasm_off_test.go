//go:build !noasm

package stdwork

const noasm = false
