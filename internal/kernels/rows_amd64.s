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
