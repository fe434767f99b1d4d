//go:build !noasm

#include "textflag.h"

// Row kernels for the elementwise functions. Each handles n elements, n a
// multiple of 8; the Go callers do the tails.

// func addRowAVX2(dst, x *float32, n int)
// dst[i] += x[i]
TEXT ·addRowAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	CMPQ CX, $32
	JLT  add8
add32:
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	VADDPS  (SI), Y0, Y0
	VADDPS  32(SI), Y1, Y1
	VADDPS  64(SI), Y2, Y2
	VADDPS  96(SI), Y3, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ    $128, DI
	ADDQ    $128, SI
	SUBQ    $32, CX
	CMPQ    CX, $32
	JGE     add32
add8:
	TESTQ CX, CX
	JZ    adddone
add8loop:
	VMOVUPS (DI), Y0
	VADDPS  (SI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	SUBQ    $8, CX
	JNZ     add8loop
adddone:
	VZEROUPPER
	RET

// func addReLURowAVX2(dst, x *float32, n int)
// dst[i] = max(dst[i] + x[i], 0); NaN propagates (the sum is the second source).
TEXT ·addReLURowAVX2(SB), NOSPLIT, $0-24
	MOVQ   dst+0(FP), DI
	MOVQ   x+8(FP), SI
	MOVQ   n+16(FP), CX
	VXORPS Y15, Y15, Y15
	CMPQ   CX, $32
	JLT    relu8
relu32:
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	VADDPS  (SI), Y0, Y0
	VADDPS  32(SI), Y1, Y1
	VADDPS  64(SI), Y2, Y2
	VADDPS  96(SI), Y3, Y3
	VMAXPS  Y0, Y15, Y0
	VMAXPS  Y1, Y15, Y1
	VMAXPS  Y2, Y15, Y2
	VMAXPS  Y3, Y15, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ    $128, DI
	ADDQ    $128, SI
	SUBQ    $32, CX
	CMPQ    CX, $32
	JGE     relu32
relu8:
	TESTQ CX, CX
	JZ    reludone
relu8loop:
	VMOVUPS (DI), Y0
	VADDPS  (SI), Y0, Y0
	VMAXPS  Y0, Y15, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	SUBQ    $8, CX
	JNZ     relu8loop
reludone:
	VZEROUPPER
	RET

// func reluMaskRowAVX2(dy, y *float32, n int)
// dy[i] = 0 where !(y[i] > 0)
TEXT ·reluMaskRowAVX2(SB), NOSPLIT, $0-24
	MOVQ   dy+0(FP), DI
	MOVQ   y+8(FP), SI
	MOVQ   n+16(FP), CX
	VXORPS Y15, Y15, Y15
	TESTQ  CX, CX
	JZ     maskdone
maskloop:
	VMOVUPS (SI), Y0
	VCMPPS  $0x0e, Y15, Y0, Y1 // Y1 = Y0 > 0 (GT_OS)
	VANDPS  (DI), Y1, Y1
	VMOVUPS Y1, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	SUBQ    $8, CX
	JNZ     maskloop
maskdone:
	VZEROUPPER
	RET

// func transpose8AVX2(dst *float32, ldd int, src *float32, lds int, k int)
// For q < k (k a multiple of 8) and r < 8: dst[q*ldd+r] = src[r*lds+q].
// Eight rows of src become eight-float rows of dst, 8x8 blocks at a time.
TEXT ·transpose8AVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), DX
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), BX
	MOVQ k+32(FP), CX
	SHLQ $2, DX
	SHLQ $2, BX
	LEAQ (BX)(BX*2), R8 // 3*lds bytes
	LEAQ (DX)(DX*2), R9 // 3*ldd bytes
	TESTQ CX, CX
	JZ   tdone
tloop:
	MOVQ    SI, R10
	VMOVUPS (R10), Y0
	VMOVUPS (R10)(BX*1), Y1
	VMOVUPS (R10)(BX*2), Y2
	VMOVUPS (R10)(R8*1), Y3
	LEAQ    (R10)(BX*4), R10
	VMOVUPS (R10), Y4
	VMOVUPS (R10)(BX*1), Y5
	VMOVUPS (R10)(BX*2), Y6
	VMOVUPS (R10)(R8*1), Y7
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
	MOVQ    DI, R11
	VMOVUPS Y8, (R11)
	VMOVUPS Y9, (R11)(DX*1)
	VMOVUPS Y10, (R11)(DX*2)
	VMOVUPS Y11, (R11)(R9*1)
	LEAQ    (R11)(DX*4), R11
	VMOVUPS Y12, (R11)
	VMOVUPS Y13, (R11)(DX*1)
	VMOVUPS Y14, (R11)(DX*2)
	VMOVUPS Y15, (R11)(R9*1)
	ADDQ    $32, SI
	LEAQ    (DI)(DX*8), DI
	SUBQ    $8, CX
	JNZ     tloop
tdone:
	VZEROUPPER
	RET

// func addScaledRowAVX2(dst, x *float32, a float32, n int)
// dst[i] += a*x[i], the product rounded before the sum (no FMA), as the Go
// fallback computes it.
TEXT ·addScaledRowAVX2(SB), NOSPLIT, $0-32
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	VBROADCASTSS a+16(FP), Y15
	MOVQ         n+24(FP), CX
	CMPQ         CX, $32
	JLT          scaled8
scaled32:
	VMULPS  (SI), Y15, Y0
	VMULPS  32(SI), Y15, Y1
	VMULPS  64(SI), Y15, Y2
	VMULPS  96(SI), Y15, Y3
	VADDPS  (DI), Y0, Y0
	VADDPS  32(DI), Y1, Y1
	VADDPS  64(DI), Y2, Y2
	VADDPS  96(DI), Y3, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ    $128, DI
	ADDQ    $128, SI
	SUBQ    $32, CX
	CMPQ    CX, $32
	JGE     scaled32
scaled8:
	TESTQ CX, CX
	JZ    scaleddone
scaled8loop:
	VMULPS  (SI), Y15, Y0
	VADDPS  (DI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	SUBQ    $8, CX
	JNZ     scaled8loop
scaleddone:
	VZEROUPPER
	RET

// func mixRowAVX2(dst *float32, n int, w *float32, xs *unsafe.Pointer, m int)
// dst[i] = sum over j < m, in order, of w[j]*xs[j][i], for i < n (a multiple
// of 8), from zero, each product rounded before its sum (no FMA).
TEXT ·mixRowAVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ n+8(FP), CX
	MOVQ w+16(FP), SI
	MOVQ xs+24(FP), R8
	MOVQ m+32(FP), R9
	XORQ R10, R10 // byte offset of the current chunk
mix32:
	CMPQ CX, $32
	JLT  mix8
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	XORQ R11, R11
mix32j:
	CMPQ R11, R9
	JGE  mix32store
	VBROADCASTSS (SI)(R11*4), Y15
	MOVQ (R8)(R11*8), DX
	ADDQ R10, DX
	VMULPS (DX), Y15, Y4
	VMULPS 32(DX), Y15, Y5
	VMULPS 64(DX), Y15, Y6
	VMULPS 96(DX), Y15, Y7
	VADDPS Y4, Y0, Y0
	VADDPS Y5, Y1, Y1
	VADDPS Y6, Y2, Y2
	VADDPS Y7, Y3, Y3
	INCQ R11
	JMP  mix32j
mix32store:
	VMOVUPS Y0, (DI)(R10*1)
	VMOVUPS Y1, 32(DI)(R10*1)
	VMOVUPS Y2, 64(DI)(R10*1)
	VMOVUPS Y3, 96(DI)(R10*1)
	ADDQ $128, R10
	SUBQ $32, CX
	JMP  mix32
mix8:
	CMPQ CX, $8
	JLT  mixdone
	VXORPS Y0, Y0, Y0
	XORQ R11, R11
mix8j:
	CMPQ R11, R9
	JGE  mix8store
	VBROADCASTSS (SI)(R11*4), Y15
	MOVQ (R8)(R11*8), DX
	ADDQ R10, DX
	VMULPS (DX), Y15, Y4
	VADDPS Y4, Y0, Y0
	INCQ R11
	JMP  mix8j
mix8store:
	VMOVUPS Y0, (DI)(R10*1)
	ADDQ $32, R10
	SUBQ $8, CX
	JMP  mix8
mixdone:
	VZEROUPPER
	RET

// func packPanelsAVX512(dst *float32, pad, kb int, src *float32, lds, full, lastW, rows int)
// Packs rows of full*pad+lastW floats (src, row stride lds) into full+1
// panels of pad columns (1 <= lastW <= pad <= 32): column j of row r goes
// to dst[(j/pad)*pad*kb + r*pad + j%pad], and the last panel's columns
// past lastW are zeroed. Each row is read in order across all its
// panels, and the row 16 ahead is prefetched: the rows of a wide matrix
// are pages apart, a stride the hardware prefetchers do not follow.
// Loads are masked to the row's columns (no byte past them is read),
// stores to the panels' pad columns.
TEXT ·packPanelsAVX512(SB), NOSPLIT, $0-64
	MOVQ dst+0(FP), DI
	MOVQ pad+8(FP), DX
	MOVQ kb+16(FP), R10
	MOVQ src+24(FP), SI
	MOVQ lds+32(FP), BX
	MOVQ full+40(FP), R8
	MOVQ rows+56(FP), R9
	SHLQ $2, BX
	IMULQ DX, R10
	SHLQ $2, R10 // panel stride, bytes
	MOVQ BX, R13
	SHLQ $4, R13 // 16 rows of src, bytes
	// K1, K2: the pad columns' lanes, low and high half; K5, K6: the
	// last panel's lastW. Each is (1 << n) - 1, n in [0, 16].
	MOVQ DX, CX
	CMPQ CX, $16
	JLE  pk1
	MOVQ $16, CX
pk1:
	MOVL  $1, AX
	SHLL  CX, AX
	DECL  AX
	KMOVW AX, K1
	MOVQ  DX, CX
	SUBQ  $16, CX
	JGE   pk2
	XORQ  CX, CX
pk2:
	MOVL  $1, AX
	SHLL  CX, AX
	DECL  AX
	KMOVW AX, K2
	MOVQ  lastW+48(FP), R11
	MOVQ  R11, CX
	CMPQ  CX, $16
	JLE   pk5
	MOVQ  $16, CX
pk5:
	MOVL  $1, AX
	SHLL  CX, AX
	DECL  AX
	KMOVW AX, K5
	MOVQ  R11, CX
	SUBQ  $16, CX
	JGE   pk6
	XORQ  CX, CX
pk6:
	MOVL  $1, AX
	SHLL  CX, AX
	DECL  AX
	KMOVW AX, K6
	MOVQ  DX, R14
	SHLQ  $2, R14 // pad, bytes
	TESTQ R9, R9
	JZ    ppdone
	CMPQ  DX, $16
	JG    ppwide
pprow16:
	MOVQ SI, R11
	MOVQ DI, R12
	MOVQ R8, CX
	TESTQ CX, CX
	JZ   pplast16
ppfull16:
	PREFETCHT0 (R11)(R13*1)
	VMOVUPS.Z  (R11), K1, Z0
	VMOVUPS    Z0, K1, (R12)
	ADDQ       R14, R11
	ADDQ       R10, R12
	DECQ       CX
	JNZ        ppfull16
pplast16:
	PREFETCHT0 (R11)(R13*1)
	VMOVUPS.Z  (R11), K5, Z0
	VMOVUPS    Z0, K1, (R12)
	ADDQ       BX, SI
	ADDQ       R14, DI
	DECQ       R9
	JNZ        pprow16
	JMP        ppdone
ppwide:
	MOVQ SI, R11
	MOVQ DI, R12
	MOVQ R8, CX
	TESTQ CX, CX
	JZ   pplastw
ppfullw:
	PREFETCHT0 (R11)(R13*1)
	PREFETCHT0 64(R11)(R13*1)
	VMOVUPS.Z  (R11), K1, Z0
	VMOVUPS.Z  64(R11), K2, Z1
	VMOVUPS    Z0, K1, (R12)
	VMOVUPS    Z1, K2, 64(R12)
	ADDQ       R14, R11
	ADDQ       R10, R12
	DECQ       CX
	JNZ        ppfullw
pplastw:
	PREFETCHT0 (R11)(R13*1)
	PREFETCHT0 64(R11)(R13*1)
	VMOVUPS.Z  (R11), K5, Z0
	VMOVUPS.Z  64(R11), K6, Z1
	VMOVUPS    Z0, K1, (R12)
	VMOVUPS    Z1, K2, 64(R12)
	ADDQ       BX, SI
	ADDQ       R14, DI
	DECQ       R9
	JNZ        ppwide
ppdone:
	VZEROUPPER
	RET

// func dotAVX2(x, y *float32, n int) float32
// Σ x[i]·y[i] for i < n (n a multiple of 8): four 8-lane partial sums of
// fused multiply-adds over 32 elements at a time (the last 8-element
// blocks into the first), then added pairwise.
TEXT ·dotAVX2(SB), NOSPLIT, $0-28
	MOVQ   x+0(FP), SI
	MOVQ   y+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	CMPQ   CX, $32
	JLT    dot8
dot32:
	VMOVUPS     (SI), Y4
	VMOVUPS     32(SI), Y5
	VMOVUPS     64(SI), Y6
	VMOVUPS     96(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ        $128, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	CMPQ        CX, $32
	JGE         dot32
dot8:
	TESTQ CX, CX
	JZ    dotsum
dot8loop:
	VMOVUPS     (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JNZ         dot8loop
dotsum:
	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VMOVSS       X0, ret+24(FP)
	VZEROUPPER
	RET
