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
// A bf16 kernel with pairs set also has nameEP, nameE that also stores
// each row's 32 results as 16 bf16 pairs at pairs + i*ldp (the operand of
// a next bf16 layer), and nameRE, nameE that reads its 14 rows of A in
// place, bf16 pairs row-major at a + i*lda, instead of a packed panel.
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
	// pairs: also emit nameEP (nameE that also stores the tile's bf16
	// pairs) and nameRE (nameE reading A row-major; mr 14).
	pairs bool
}

func (k kernel) r(i int) string { return fmt.Sprintf("%s%d", k.reg, i) }

// acc returns the accumulator register of tile row i, vector v.
func (k kernel) acc(i, v int) string { return k.r(i*k.nv + v) }

func (k kernel) emit(w *bytes.Buffer) {
	k.emitVariant(w, variant{})
	if k.ep {
		k.emitVariant(w, variant{suffix: "E", ep: true})
	}
	if k.pairs {
		k.emitVariant(w, variant{suffix: "EP", ep: true, pairs: true})
		k.emitVariant(w, variant{suffix: "RE", ep: true, rowA: true})
	}
}

// variant is one form of a kernel: its plain store, or the epilogue
// store, optionally also writing bf16 pairs, or the epilogue store with
// A read row-major.
type variant struct {
	suffix string
	ep     bool // the epilogue store (no beta)
	pairs  bool // ep, and the tile's bf16 pairs stored row-major too
	rowA   bool // ep, and A is read row-major (lda) rather than packed
}

// args returns the variant's Go signature's parameters and their frame
// offsets, and the size of its arguments.
func (v variant) args() (sig string, off map[string]int, size int) {
	switch {
	case v.rowA:
		return "k int, a *float32, lda int, b, c *float32, ldc int, alpha float32, first, last *float32, relu uint32",
			map[string]int{"k": 0, "a": 8, "lda": 16, "b": 24, "c": 32, "ldc": 40, "alpha": 48, "first": 56, "last": 64, "relu": 72}, 76
	case v.pairs:
		return "k int, a, b, c *float32, ldc int, alpha float32, first, last *float32, relu uint32, pairs *float32, ldp int",
			map[string]int{"k": 0, "a": 8, "b": 16, "c": 24, "ldc": 32, "alpha": 40, "first": 48, "last": 56, "relu": 64, "pairs": 72, "ldp": 80}, 88
	case v.ep:
		return "k int, a, b, c *float32, ldc int, alpha float32, first, last *float32, relu uint32",
			map[string]int{"k": 0, "a": 8, "b": 16, "c": 24, "ldc": 32, "alpha": 40, "first": 48, "last": 56, "relu": 64}, 68
	}
	return "k int, a, b, c *float32, ldc int, alpha, beta float32",
		map[string]int{"k": 0, "a": 8, "b": 16, "c": 24, "ldc": 32, "alpha": 40, "beta": 44}, 48
}

// rowAddr returns the address of step s of row i of A read row-major
// (variant rowA): rows 0-6 from AX, 7-13 from R12 = AX + 7*lda, with R8 =
// lda, R9 = 3*lda and R10 = 5*lda in bytes.
func rowAddr(i, s int) string {
	base := "AX"
	if i >= 7 {
		base, i = "R12", i-7
	}
	idx := []string{"", "(R8*1)", "(R8*2)", "(R9*1)", "(R8*4)", "(R10*1)", "(R9*2)"}[i]
	return fmt.Sprintf("%d(%s)%s", 4*s, base, idx)
}

// emitVariant writes one variant of the kernel.
func (k kernel) emitVariant(w *bytes.Buffer, vr variant) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	nr := k.nv * k.vbytes / 4
	name := k.name + vr.suffix
	sig, off, size := vr.args()
	p("// func %s(%s)", name, sig)
	if k.dot {
		p("// %dx%d tile of bf16 pairs (VDPBF16PS), %d pair steps per iteration.", k.mr, nr, k.unroll)
	} else {
		p("// %dx%d tile, %d k steps per iteration.", k.mr, nr, k.unroll)
	}
	switch {
	case vr.rowA:
		p("// A is read row-major (row i at a + i*lda); the epilogue is applied to the tile before it is stored.")
	case vr.pairs:
		p("// The epilogue is applied to the tile before it is stored, and its bf16 pairs are stored at pairs.")
	case vr.ep:
		p("// The epilogue is applied to the tile before it is stored.")
	}
	if vr.rowA && k.mr != 14 {
		log.Fatalf("%s: row-major A needs 14 rows", name)
	}
	p("TEXT ·%s(SB), NOSPLIT, $0-%d", name, size)
	p("\tMOVQ k+%d(FP), CX", off["k"])
	p("\tMOVQ a+%d(FP), AX", off["a"])
	p("\tMOVQ b+%d(FP), BX", off["b"])
	p("\tMOVQ c+%d(FP), DI", off["c"])
	p("\tMOVQ ldc+%d(FP), DX", off["ldc"])
	p("\tSHLQ $2, DX")
	if vr.rowA {
		p("\tMOVQ lda+%d(FP), R8", off["lda"])
		p("\tSHLQ $2, R8")
		p("\tLEAQ (R8)(R8*2), R9")
		p("\tLEAQ (R8)(R8*4), R10")
		p("\tLEAQ (R9)(R8*4), R12")
		p("\tADDQ AX, R12")
	}
	zero := "VXORPS"
	if k.reg == "Z" {
		zero = "VPXORD" // VXORPS on zmm needs AVX512DQ; VPXORD is AVX512F
	}
	for i := 0; i < k.mr*k.nv; i++ {
		p("\t%s %s, %s, %s", zero, k.r(i), k.r(i), k.r(i))
	}
	astep := k.mr * 4
	if vr.rowA {
		astep = 4 // one pair of each row per step
	}
	bstep := nr * 4
	step := func(s int) {
		for v := 0; v < k.nv; v++ {
			p("\tVMOVUPS %d(BX), %s", s*bstep+v*k.vbytes, k.r(k.bregs[v]))
		}
		for i := 0; i < k.mr; i++ {
			br := k.r(k.bcast[i%len(k.bcast)])
			if vr.rowA {
				p("\tVBROADCASTSS %s, %s", rowAddr(i, s), br)
			} else {
				p("\tVBROADCASTSS %d(AX), %s", s*astep+i*4, br)
			}
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
		if vr.rowA {
			p("\tADDQ $%d, R12", k.unroll*astep)
		}
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
	if vr.rowA {
		p("\tADDQ $%d, R12", astep)
	}
	p("\tADDQ $%d, BX", bstep)
	p("\tDECQ CX")
	p("\tJNZ %s_loop1", name)
	p("%s_store:", name)
	if vr.ep {
		k.emitEpilogueStore(p, name, vr, off)
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
// is set (K1 holds the first vector's 16 bits, K2 the second's); with
// vr.pairs, each row's 32 results also converted to 16 bf16 pairs
// (VCVTNE2PS2BF16) and stored at pairs + i*ldp.
func (k kernel) emitEpilogueStore(p func(string, ...any), name string, vr variant, off map[string]int) {
	if k.nv != 2 || k.reg != "Z" {
		log.Fatalf("%s: the epilogue variant needs an AVX-512 tile of two vectors", name)
	}
	alpha := k.r(k.bregs[0])
	zero := k.r(k.bcast[0])
	masks := []string{"K1", "K2"}
	cvt := k.r(k.bcast[1])
	p("\tVBROADCASTSS alpha+%d(FP), %s", off["alpha"], alpha)
	p("\tVPXORD %s, %s, %s", zero, zero, zero)
	p("\tMOVQ first+%d(FP), R10", off["first"])
	p("\tMOVQ last+%d(FP), R11", off["last"])
	if vr.pairs {
		p("\tMOVQ pairs+%d(FP), SI", off["pairs"])
		p("\tMOVQ ldp+%d(FP), R13", off["ldp"])
		p("\tSHLQ $2, R13")
	}
	p("\tMOVL relu+%d(FP), R9", off["relu"])
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
			if vr.pairs {
				// Pair q of the row is columns 2q, 2q+1: the low half
				// from the first vector.
				p("\t%s", instCVTNE2PS2BF16.asm(k.acc(i, 0), k.acc(i, 1), cvt))
				p("\tVMOVUPS %s, (SI)", cvt)
			}
			if i < k.mr-1 {
				p("\tADDQ DX, DI")
				if vr.pairs {
					p("\tADDQ R13, SI")
				}
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
	{name: "kernBF16", reg: "Z", vbytes: 64, mr: 14, nv: 2, unroll: 4, bcast: []int{30, 31}, bregs: []int{28, 29}, dot: true, ep: true, pairs: true},
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
