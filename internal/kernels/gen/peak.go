package main

import (
	"bytes"
	"fmt"
)

// peak is a loop of independent arithmetic instructions, chains of them
// each accumulating into its own register, that runs at the CPU's peak
// rate for that instruction: enough chains to hide its latency, no memory
// operands.
type peak struct {
	name   string
	reg    string // "Y" or "Z"
	chains int
	dot    bool // VDPBF16PS instead of VFMADD231PS
}

// peakList: 12 FMA chains cover the 4-cycle latency of 2 FMAs a cycle.
// VDPBF16PS is slower to complete (12 chains reached 93% of 24 on the
// Zen 5 std host), so it gets 24.
var peakList = []peak{
	{name: "peakFMAZMM", reg: "Z", chains: 12},
	{name: "peakFMAYMM", reg: "Y", chains: 12},
	{name: "peakDPBF16ZMM", reg: "Z", chains: 24, dot: true},
}

func emitPeaks(w *bytes.Buffer) {
	for _, pk := range peakList {
		pk.emit(w)
	}
}

// emit writes func name(n int): n iterations of the chains.
func (pk peak) emit(w *bytes.Buffer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	r := func(i int) string { return fmt.Sprintf("%s%d", pk.reg, i) }
	x, y := r(pk.chains), r(pk.chains+1) // the constant operands
	op := "VFMADD231PS"
	if pk.dot {
		op = "VDPBF16PS"
	}
	p("// func %s(n int)", pk.name)
	p("// n iterations of %d independent %s chains (zero operands).", pk.chains, op)
	p("TEXT ·%s(SB), NOSPLIT, $0-8", pk.name)
	p("\tMOVQ n+0(FP), CX")
	zero := "VXORPS"
	if pk.reg == "Z" {
		zero = "VPXORD"
	}
	for i := 0; i < pk.chains+2; i++ {
		p("\t%s %s, %s, %s", zero, r(i), r(i), r(i))
	}
	p("\tTESTQ CX, CX")
	p("\tJZ %s_done", pk.name)
	p("%s_loop:", pk.name)
	for i := 0; i < pk.chains; i++ {
		if pk.dot {
			p("\t%s", instDPBF16PS.asm(x, y, r(i)))
		} else {
			p("\tVFMADD231PS %s, %s, %s", x, y, r(i))
		}
	}
	p("\tDECQ CX")
	p("\tJNZ %s_loop", pk.name)
	p("%s_done:", pk.name)
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}
