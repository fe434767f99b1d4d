package main

import (
	"bytes"
	"fmt"
	"strings"
)

// emitConvert writes the AVX-512 conversions from float32 to bf16 pairs
// (needs AVX512F, AVX512BW and AVX512_BF16). A bf16 pair is one 32-bit
// word: the lower half the bf16 of the first float, the upper half the
// second. Both handle any n, masking the last partial vector (masked
// loads do not fault on the elements they skip), so the Go callers have no
// tails.
func emitConvert(w *bytes.Buffer) {
	// The word permutation that interleaves the two halves of a
	// VCVTNE2PS2BF16 result: word 2i <- i, word 2i+1 <- 16+i.
	var idx [32]uint16
	for i := range 16 {
		idx[2*i], idx[2*i+1] = uint16(i), uint16(16+i)
	}
	w.WriteString("// Word indices for VPERMW: word 2i <- word i, word 2i+1 <- word 16+i.\n")
	for q := range 8 {
		v := uint64(idx[4*q]) | uint64(idx[4*q+1])<<16 | uint64(idx[4*q+2])<<32 | uint64(idx[4*q+3])<<48
		fmt.Fprintf(w, "DATA interleaveWords<>+%d(SB)/8, $0x%016x\n", 8*q, v)
	}
	w.WriteString("GLOBL interleaveWords<>(SB), RODATA|NOPTR, $64\n\n")

	// CVT, CVT01: Z2 = bf16 of Z0 in its lower half, of Z1 in its upper
	// half; CVT67: Z8 from Z6 and Z7; CVTNr: Yr = bf16 of Z(16+r).
	pairs := []string{"CVT01", instCVTNE2PS2BF16.asm("Z0", "Z1", "Z2"), "CVT67", instCVTNE2PS2BF16.asm("Z6", "Z7", "Z8")}
	for r := range 8 {
		pairs = append(pairs, fmt.Sprintf("CVTN%d", r), instCVTNEPS2BF16.asm2(fmt.Sprintf("Z%d", 16+r), fmt.Sprintf("Y%d", r)))
	}
	pairs = append(pairs, "CVT", instCVTNE2PS2BF16.asm("Z0", "Z1", "Z2"))
	r := strings.NewReplacer(pairs...)
	r.WriteString(w, `// func cvtPairsBF16(dst, src *float32, n int)
// dst[q] = bf16(src[2q]) | bf16(src[2q+1])<<16 for q < (n+1)/2, with
// src[n] read as zero when n is odd: a row of n floats as (n+1)/2 pairs.
TEXT ·cvtPairsBF16(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	CMPQ CX, $32
	JLT pairs_tail
pairs_loop:
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	CVT
	VMOVUPS Z2, (DI)
	ADDQ $128, SI
	ADDQ $64, DI
	SUBQ $32, CX
	CMPQ CX, $32
	JGE pairs_loop
pairs_tail:
	TESTQ CX, CX
	JZ pairs_done
	// K1, K2: floats 0-15 and 16-31 of the last n < 32; K3: its (n+1)/2 words.
	MOVL $1, R8
	SHLL CX, R8
	DECL R8
	KMOVW R8, K1
	SHRL $16, R8
	KMOVW R8, K2
	INCL CX
	SHRL $1, CX
	MOVL $1, R9
	SHLL CX, R9
	DECL R9
	KMOVW R9, K3
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z 64(SI), K2, Z1
	CVT
	VMOVUPS Z2, K3, (DI)
pairs_done:
	VZEROUPPER
	RET

// func cvtInterleavePanelBF16(dst *float32, ldd int, src *float32, lds, n, w, pairs int)
// For q < pairs: dst[q*ldd+i] = bf16(src[2q*lds+i]) | bf16(src[(2q+1)*lds+i])<<16
// for i < n, and 0 for n <= i < w (n <= w <= 32): the panel of w pairs per
// k pair that two rows of a k-major matrix make.
TEXT ·cvtInterleavePanelBF16(SB), NOSPLIT, $0-56
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), DX
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), BX
	MOVQ n+32(FP), CX
	MOVQ w+40(FP), R11
	MOVQ pairs+48(FP), R12
	SHLQ $2, DX
	SHLQ $2, BX
	VMOVDQU64 interleaveWords<>(SB), Z5
	// K1, K2: the n loaded columns in each 16-column half; K3, K4: the w
	// stored ones.
	MOVL $1, R8
	SHLQ CX, R8
	DECQ R8
	KMOVW R8, K1
	SHRQ $16, R8
	KMOVW R8, K2
	MOVQ R11, CX
	MOVL $1, R8
	SHLQ CX, R8
	DECQ R8
	KMOVW R8, K3
	SHRQ $16, R8
	KMOVW R8, K4
	TESTQ R12, R12
	JZ ipanel_done
	CMPQ R11, $16
	JGT ipanel_loop32
ipanel_loop16:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (SI)(BX*1), K1, Z1
	CVT01
	VPERMW Z2, Z5, Z3
	VMOVUPS Z3, K3, (DI)
	LEAQ (SI)(BX*2), SI
	ADDQ DX, DI
	DECQ R12
	JNZ ipanel_loop16
	JMP ipanel_done
ipanel_loop32:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (SI)(BX*1), K1, Z1
	VMOVUPS.Z 64(SI), K2, Z6
	VMOVUPS.Z 64(SI)(BX*1), K2, Z7
	CVT01
	CVT67
	VPERMW Z2, Z5, Z3
	VPERMW Z8, Z5, Z9
	VMOVUPS Z3, K3, (DI)
	VMOVUPS Z9, K4, 64(DI)
	LEAQ (SI)(BX*2), SI
	ADDQ DX, DI
	DECQ R12
	JNZ ipanel_loop32
ipanel_done:
	VZEROUPPER
	RET

// func cvtTranspose8BF16(dst *float32, ldd int, src *float32, lds, kb int)
// For r < 8 and q < (kb+1)/2: dst[q*ldd+r] = bf16(src[r*lds+2q]) |
// bf16(src[r*lds+2q+1])<<16, src[r*lds+kb] read as zero when kb is odd:
// eight rows of kb floats become (kb+1)/2 rows of eight pairs, 8x8 blocks
// of pairs at a time (converted, then transposed as transpose8AVX2 does).
TEXT ·cvtTranspose8BF16(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), DX
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), BX
	MOVQ kb+32(FP), CX
	SHLQ $2, DX
	SHLQ $2, BX
	LEAQ (BX)(BX*2), R8 // 3*lds bytes
	LEAQ (DX)(DX*2), R9 // 3*ldd bytes
	KXNORW K1, K1, K1
ct_loop:
	CMPQ CX, $16
	JLT ct_tail
	MOVQ SI, R10
	VMOVUPS.Z (R10), K1, Z16
	VMOVUPS.Z (R10)(BX*1), K1, Z17
	VMOVUPS.Z (R10)(BX*2), K1, Z18
	VMOVUPS.Z (R10)(R8*1), K1, Z19
	LEAQ (R10)(BX*4), R10
	VMOVUPS.Z (R10), K1, Z20
	VMOVUPS.Z (R10)(BX*1), K1, Z21
	VMOVUPS.Z (R10)(BX*2), K1, Z22
	VMOVUPS.Z (R10)(R8*1), K1, Z23
	CVTN0
	CVTN1
	CVTN2
	CVTN3
	CVTN4
	CVTN5
	CVTN6
	CVTN7
	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15
	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7
	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15
	MOVQ DI, R11
	VMOVUPS Y8, (R11)
	VMOVUPS Y9, (R11)(DX*1)
	VMOVUPS Y10, (R11)(DX*2)
	VMOVUPS Y11, (R11)(R9*1)
	LEAQ (R11)(DX*4), R11
	VMOVUPS Y12, (R11)
	VMOVUPS Y13, (R11)(DX*1)
	VMOVUPS Y14, (R11)(DX*2)
	VMOVUPS Y15, (R11)(R9*1)
	ADDQ $64, SI
	LEAQ (DI)(DX*8), DI
	SUBQ $16, CX
	JMP ct_loop
ct_tail:
	TESTQ CX, CX
	JZ ct_done
	MOVL $1, R10
	SHLQ CX, R10
	DECQ R10
	KMOVW R10, K1
	MOVQ SI, R10
	VMOVUPS.Z (R10), K1, Z16
	VMOVUPS.Z (R10)(BX*1), K1, Z17
	VMOVUPS.Z (R10)(BX*2), K1, Z18
	VMOVUPS.Z (R10)(R8*1), K1, Z19
	LEAQ (R10)(BX*4), R10
	VMOVUPS.Z (R10), K1, Z20
	VMOVUPS.Z (R10)(BX*1), K1, Z21
	VMOVUPS.Z (R10)(BX*2), K1, Z22
	VMOVUPS.Z (R10)(R8*1), K1, Z23
	CVTN0
	CVTN1
	CVTN2
	CVTN3
	CVTN4
	CVTN5
	CVTN6
	CVTN7
	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15
	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7
	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15
	MOVQ DI, R11
	INCQ CX
	SHRQ $1, CX
	VMOVUPS Y8, (R11)
	CMPQ CX, $1
	JEQ ct_done
	VMOVUPS Y9, (R11)(DX*1)
	CMPQ CX, $2
	JEQ ct_done
	VMOVUPS Y10, (R11)(DX*2)
	CMPQ CX, $3
	JEQ ct_done
	VMOVUPS Y11, (R11)(R9*1)
	CMPQ CX, $4
	JEQ ct_done
	LEAQ (R11)(DX*4), R11
	VMOVUPS Y12, (R11)
	CMPQ CX, $5
	JEQ ct_done
	VMOVUPS Y13, (R11)(DX*1)
	CMPQ CX, $6
	JEQ ct_done
	VMOVUPS Y14, (R11)(DX*2)
	CMPQ CX, $7
	JEQ ct_done
	VMOVUPS Y15, (R11)(R9*1)
ct_done:
	VZEROUPPER
	RET
`)
}
