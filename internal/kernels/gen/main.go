// Command gen writes the generated Go assembly of package kernels:
//
//   - kernel_amd64.s, the GEMM micro-kernels;
//   - bf16_amd64.s, the float32 to bf16 conversions the bf16 GEMM packs with;
//   - peak_amd64.s, the loops that measure the CPU's arithmetic ceiling.
//
// Run it with `go generate ./internal/kernels/` (see gemm_amd64.go); the
// output is checked in and regenerating it must leave no diff. Go's
// assembler lacks the AVX512_BF16 instructions, so they are written as BYTE
// sequences (evex.go).
//
// Each micro-kernel computes an mr x nr tile of C from packed panels:
//
//	acc = sum over p < k of a[p*mr+i] * b[p*nr+j]
//	C[i*ldc+j] = alpha*acc + beta*C[i*ldc+j]   (C is not read when beta == ±0)
//
// where acc is accumulated with FMAs in order of p, and alpha*acc and
// beta*C are each rounded to float32 before the sum. The bf16 kernels
// (dot set) are the same loop with VDPBF16PS in place of VFMADD231PS: each
// 32-bit element of a panel holds two bf16 values of consecutive k (the
// lower half the even one), k counts those pairs, and each step adds the
// odd product, then the even one, to acc.
//
// Every kernel has the Go signature
//
//	func name(k int, a, b, c *float32, ldc int, alpha, beta float32)
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
)

// kernel describes one register-tiled micro-kernel.
type kernel struct {
	name   string
	reg    string // "Y" (AVX2, 8 lanes) or "Z" (AVX-512, 16 lanes)
	vbytes int    // bytes per vector register
	mr     int    // rows of the tile: broadcast elements of A per k step
	nv     int    // vectors per row: nr = nv * lanes
	unroll int    // k steps per loop iteration
	bcast  []int  // registers used for the broadcast of A, alternating
	bregs  []int  // registers holding the row of B
	dot    bool   // bf16 pairs and VDPBF16PS instead of float32 and FMA
}

func (k kernel) r(i int) string { return fmt.Sprintf("%s%d", k.reg, i) }

// acc returns the accumulator register of tile row i, vector v.
func (k kernel) acc(i, v int) string { return k.r(i*k.nv + v) }

func (k kernel) emit(w *bytes.Buffer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	nr := k.nv * k.vbytes / 4
	p("// func %s(k int, a, b, c *float32, ldc int, alpha, beta float32)", k.name)
	if k.dot {
		p("// %dx%d tile of bf16 pairs (VDPBF16PS), %d pair steps per iteration.", k.mr, nr, k.unroll)
	} else {
		p("// %dx%d tile, %d k steps per iteration.", k.mr, nr, k.unroll)
	}
	p("TEXT ·%s(SB), NOSPLIT, $0-48", k.name)
	p("\tMOVQ k+0(FP), CX")
	p("\tMOVQ a+8(FP), AX")
	p("\tMOVQ b+16(FP), BX")
	p("\tMOVQ c+24(FP), DI")
	p("\tMOVQ ldc+32(FP), DX")
	p("\tSHLQ $2, DX")
	zero := "VXORPS"
	if k.reg == "Z" {
		zero = "VPXORD" // VXORPS on zmm needs AVX512DQ; VPXORD is AVX512F
	}
	for i := 0; i < k.mr*k.nv; i++ {
		p("\t%s %s, %s, %s", zero, k.r(i), k.r(i), k.r(i))
	}
	astep := k.mr * 4
	bstep := nr * 4
	step := func(s int) {
		for v := 0; v < k.nv; v++ {
			p("\tVMOVUPS %d(BX), %s", s*bstep+v*k.vbytes, k.r(k.bregs[v]))
		}
		for i := 0; i < k.mr; i++ {
			br := k.r(k.bcast[i%len(k.bcast)])
			p("\tVBROADCASTSS %d(AX), %s", s*astep+i*4, br)
			for v := 0; v < k.nv; v++ {
				if k.dot {
					p("\t%s", instDPBF16PS.asm(br, k.r(k.bregs[v]), k.acc(i, v)))
					continue
				}
				p("\tVFMADD231PS %s, %s, %s", k.r(k.bregs[v]), br, k.acc(i, v))
			}
		}
	}
	if k.unroll > 1 {
		p("\tCMPQ CX, $%d", k.unroll)
		p("\tJLT %s_tail", k.name)
		p("%s_loop%d:", k.name, k.unroll)
		for s := 0; s < k.unroll; s++ {
			step(s)
		}
		p("\tADDQ $%d, AX", k.unroll*astep)
		p("\tADDQ $%d, BX", k.unroll*bstep)
		p("\tSUBQ $%d, CX", k.unroll)
		p("\tCMPQ CX, $%d", k.unroll)
		p("\tJGE %s_loop%d", k.name, k.unroll)
		p("%s_tail:", k.name)
	}
	p("\tTESTQ CX, CX")
	p("\tJZ %s_store", k.name)
	p("%s_loop1:", k.name)
	step(0)
	p("\tADDQ $%d, AX", astep)
	p("\tADDQ $%d, BX", bstep)
	p("\tDECQ CX")
	p("\tJNZ %s_loop1", k.name)
	p("%s_store:", k.name)
	alpha := k.r(k.bregs[0])
	beta := k.r(k.bcast[0])
	tmp := k.r(k.bcast[1])
	p("\tVBROADCASTSS alpha+40(FP), %s", alpha)
	p("\tMOVL beta+44(FP), R9")
	p("\tSHLL $1, R9") // drop the sign bit: ±0 compare equal to zero
	p("\tJZ %s_nobeta", k.name)
	p("\tVBROADCASTSS beta+44(FP), %s", beta)
	for i := 0; i < k.mr; i++ {
		for v := 0; v < k.nv; v++ {
			p("\tVMULPS %s, %s, %s", alpha, k.acc(i, v), k.acc(i, v))
			// alpha*acc and beta*C are rounded separately, not fused, so
			// that an edge tile (merged in Go) gives the same bits.
			p("\tVMULPS %d(DI), %s, %s", v*k.vbytes, beta, tmp)
			p("\tVADDPS %s, %s, %s", tmp, k.acc(i, v), k.acc(i, v))
			p("\tVMOVUPS %s, %d(DI)", k.acc(i, v), v*k.vbytes)
		}
		if i < k.mr-1 {
			p("\tADDQ DX, DI")
		}
	}
	p("\tVZEROUPPER")
	p("\tRET")
	p("%s_nobeta:", k.name)
	for i := 0; i < k.mr; i++ {
		for v := 0; v < k.nv; v++ {
			p("\tVMULPS %s, %s, %s", alpha, k.acc(i, v), k.acc(i, v))
			p("\tVMOVUPS %s, %d(DI)", k.acc(i, v), v*k.vbytes)
		}
		if i < k.mr-1 {
			p("\tADDQ DX, DI")
		}
	}
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

var kernelList = []kernel{
	{name: "kernAVX2", reg: "Y", vbytes: 32, mr: 6, nv: 2, unroll: 4, bcast: []int{14, 15}, bregs: []int{12, 13}},
	{name: "kernAVX2x8", reg: "Y", vbytes: 32, mr: 12, nv: 1, unroll: 4, bcast: []int{13, 14}, bregs: []int{12}},
	{name: "kernAVX512", reg: "Z", vbytes: 64, mr: 14, nv: 2, unroll: 4, bcast: []int{30, 31}, bregs: []int{28, 29}},
	// One-row variants of the wide kernels, for products of a single row of
	// A (a request's context share) that would waste the other rows of a
	// tile: same panels of B, same order of FMAs, so the same bits.
	{name: "kernAVX2x1", reg: "Y", vbytes: 32, mr: 1, nv: 2, unroll: 4, bcast: []int{14, 15}, bregs: []int{12, 13}},
	{name: "kernAVX512x1", reg: "Z", vbytes: 64, mr: 1, nv: 2, unroll: 4, bcast: []int{30, 31}, bregs: []int{28, 29}},
	// The bf16 kernels: the AVX-512 tile and its one-row variant, on
	// panels of bf16 pairs.
	{name: "kernBF16", reg: "Z", vbytes: 64, mr: 14, nv: 2, unroll: 4, bcast: []int{30, 31}, bregs: []int{28, 29}, dot: true},
	{name: "kernBF16x1", reg: "Z", vbytes: 64, mr: 1, nv: 2, unroll: 4, bcast: []int{30, 31}, bregs: []int{28, 29}, dot: true},
	// The bf16 kernel for products of at most 16 columns (the std gates'
	// 8): one vector of B per step and 28 rows.
	{name: "kernBF16x16", reg: "Z", vbytes: 64, mr: 28, nv: 1, unroll: 4, bcast: []int{29, 30}, bregs: []int{28}, dot: true},
}

func main() {
	dir := flag.String("dir", ".", "directory to write the .s files in")
	flag.Parse()
	var w bytes.Buffer
	header(&w)
	for _, k := range kernelList {
		k.emit(&w)
	}
	write(filepath.Join(*dir, "kernel_amd64.s"), &w)
	w.Reset()
	header(&w)
	emitConvert(&w)
	write(filepath.Join(*dir, "bf16_amd64.s"), &w)
	w.Reset()
	header(&w)
	emitPeaks(&w)
	write(filepath.Join(*dir, "peak_amd64.s"), &w)
}

func header(w *bytes.Buffer) {
	w.WriteString("// Code generated by internal/kernels/gen; DO NOT EDIT.\n\n")
	w.WriteString("//go:build !noasm\n\n")
	w.WriteString("#include \"textflag.h\"\n\n")
}

func write(name string, w *bytes.Buffer) {
	if err := os.WriteFile(name, w.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
}
