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
//
// A kernel with ep set also has a variant nameE that applies a layer's
// epilogue to the tile before storing it, in place of beta (C is never
// read):
//
//	func nameE(k int, a, b, c *float32, ldc int, alpha float32, first, last *float32, relu uint32)
//
//	C[i*ldc+j] = alpha*acc (+ first[j] when first is not nil) + last[j]
//	then, where bit j of relu is set, max(0, C) as VMAXPS computes it
//	(NaN and -0 kept: the value is the second source),
//
// each step rounded, as AddBias and AddBiasReLU's assembly would apply
// them to the stored tile: the same bits, without the second pass over C.
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
	ep     bool   // also emit the epilogue variant nameE (AVX-512, nv 2)
}

func (k kernel) r(i int) string { return fmt.Sprintf("%s%d", k.reg, i) }

// acc returns the accumulator register of tile row i, vector v.
func (k kernel) acc(i, v int) string { return k.r(i*k.nv + v) }

func (k kernel) emit(w *bytes.Buffer) {
	k.emitVariant(w, false)
	if k.ep {
		k.emitVariant(w, true)
	}
}

// emitVariant writes the kernel, or with ep its epilogue variant.
func (k kernel) emitVariant(w *bytes.Buffer, ep bool) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	nr := k.nv * k.vbytes / 4
	name := k.name
	if ep {
		name += "E"
		p("// func %s(k int, a, b, c *float32, ldc int, alpha float32, first, last *float32, relu uint32)", name)
	} else {
		p("// func %s(k int, a, b, c *float32, ldc int, alpha, beta float32)", name)
	}
	if k.dot {
		p("// %dx%d tile of bf16 pairs (VDPBF16PS), %d pair steps per iteration.", k.mr, nr, k.unroll)
	} else {
		p("// %dx%d tile, %d k steps per iteration.", k.mr, nr, k.unroll)
	}
	if ep {
		p("// The epilogue is applied to the tile before it is stored.")
		p("TEXT ·%s(SB), NOSPLIT, $0-68", name)
	} else {
		p("TEXT ·%s(SB), NOSPLIT, $0-48", name)
	}
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
		p("\tJLT %s_tail", name)
		p("%s_loop%d:", name, k.unroll)
		for s := 0; s < k.unroll; s++ {
			step(s)
		}
		p("\tADDQ $%d, AX", k.unroll*astep)
		p("\tADDQ $%d, BX", k.unroll*bstep)
		p("\tSUBQ $%d, CX", k.unroll)
		p("\tCMPQ CX, $%d", k.unroll)
		p("\tJGE %s_loop%d", name, k.unroll)
		p("%s_tail:", name)
	}
	p("\tTESTQ CX, CX")
	p("\tJZ %s_store", name)
	p("%s_loop1:", name)
	step(0)
	p("\tADDQ $%d, AX", astep)
	p("\tADDQ $%d, BX", bstep)
	p("\tDECQ CX")
	p("\tJNZ %s_loop1", name)
	p("%s_store:", name)
	if ep {
		k.emitEpilogueStore(p, name)
		return
	}
	alpha := k.r(k.bregs[0])
	beta := k.r(k.bcast[0])
	tmp := k.r(k.bcast[1])
	p("\tVBROADCASTSS alpha+40(FP), %s", alpha)
	p("\tMOVL beta+44(FP), R9")
	p("\tSHLL $1, R9") // drop the sign bit: ±0 compare equal to zero
	p("\tJZ %s_nobeta", name)
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
	p("%s_nobeta:", name)
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

// emitEpilogueStore writes the store of an epilogue variant: alpha*acc,
// plus first (if not nil) and last, ReLU on the columns whose bit of relu
// is set (K1 holds the first vector's 16 bits, K2 the second's).
func (k kernel) emitEpilogueStore(p func(string, ...any), name string) {
	if k.nv != 2 || k.reg != "Z" {
		log.Fatalf("%s: the epilogue variant needs an AVX-512 tile of two vectors", name)
	}
	alpha := k.r(k.bregs[0])
	zero := k.r(k.bcast[0])
	masks := []string{"K1", "K2"}
	p("\tVBROADCASTSS alpha+40(FP), %s", alpha)
	p("\tVPXORD %s, %s, %s", zero, zero, zero)
	p("\tMOVQ first+48(FP), R10")
	p("\tMOVQ last+56(FP), R11")
	p("\tMOVL relu+64(FP), R9")
	p("\tKMOVW R9, K1")
	p("\tSHRL $16, R9")
	p("\tKMOVW R9, K2")
	rows := func(first bool) {
		for i := 0; i < k.mr; i++ {
			for v := 0; v < k.nv; v++ {
				a := k.acc(i, v)
				p("\tVMULPS %s, %s, %s", alpha, a, a)
				if first {
					p("\tVADDPS %d(R10), %s, %s", v*k.vbytes, a, a)
				}
				p("\tVADDPS %d(R11), %s, %s", v*k.vbytes, a, a)
				// Intel's operand order: max(src1 = 0, src2 = a) is a
				// unless 0 > a, so NaN and -0 stay.
				p("\tVMAXPS %s, %s, %s, %s", a, zero, masks[v], a)
				p("\tVMOVUPS %s, %d(DI)", a, v*k.vbytes)
			}
			if i < k.mr-1 {
				p("\tADDQ DX, DI")
			}
		}
		p("\tVZEROUPPER")
		p("\tRET")
	}
	p("\tTESTQ R10, R10")
	p("\tJZ %s_nofirst", name)
	rows(true)
	p("%s_nofirst:", name)
	rows(false)
	p("")
}

var kernelList = []kernel{
	{name: "kernAVX2", reg: "Y", vbytes: 32, mr: 6, nv: 2, unroll: 4, bcast: []int{14, 15}, bregs: []int{12, 13}},
	{name: "kernAVX2x8", reg: "Y", vbytes: 32, mr: 12, nv: 1, unroll: 4, bcast: []int{13, 14}, bregs: []int{12}},
	{name: "kernAVX512", reg: "Z", vbytes: 64, mr: 14, nv: 2, unroll: 4, bcast: []int{30, 31}, bregs: []int{28, 29}, ep: true},
	// One-row variants of the wide kernels, for products of a single row of
	// A (a request's context share) that would waste the other rows of a
	// tile: same panels of B, same order of FMAs, so the same bits.
	{name: "kernAVX2x1", reg: "Y", vbytes: 32, mr: 1, nv: 2, unroll: 4, bcast: []int{14, 15}, bregs: []int{12, 13}},
	{name: "kernAVX512x1", reg: "Z", vbytes: 64, mr: 1, nv: 2, unroll: 4, bcast: []int{30, 31}, bregs: []int{28, 29}},
	// The bf16 kernels: the AVX-512 tile and its one-row variant, on
	// panels of bf16 pairs.
	{name: "kernBF16", reg: "Z", vbytes: 64, mr: 14, nv: 2, unroll: 4, bcast: []int{30, 31}, bregs: []int{28, 29}, dot: true, ep: true},
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
