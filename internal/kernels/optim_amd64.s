//go:build !noasm

#include "textflag.h"

// func adamAVX2(p, m, v, g0, g1 *float32, n int, k *adamConsts)
// One Adam step on n elements (n a multiple of 8), g = g0 + g1 (g0 alone
// when g1 is nil), each operation rounded as adamGo rounds it:
//	m = b1*m + c1*g;  v = b2*v + (c2*g)*g
//	p = p*decay - (step*m) / (sqrt(v) + eps)
TEXT ·adamAVX2(SB), NOSPLIT, $0-56
	MOVQ         p+0(FP), DI
	MOVQ         m+8(FP), SI
	MOVQ         v+16(FP), DX
	MOVQ         g0+24(FP), R8
	MOVQ         g1+32(FP), R9
	MOVQ         n+40(FP), CX
	MOVQ         k+48(FP), AX
	VBROADCASTSS 0(AX), Y8   // b1
	VBROADCASTSS 4(AX), Y9   // b2
	VBROADCASTSS 8(AX), Y10  // c1
	VBROADCASTSS 12(AX), Y11 // c2
	VBROADCASTSS 16(AX), Y12 // step
	VBROADCASTSS 20(AX), Y13 // eps
	VBROADCASTSS 24(AX), Y14 // decay
	TESTQ        CX, CX
	JZ           adamdone
	TESTQ        R9, R9
	JZ           adamone
adamtwo:
	VMOVUPS (R8), Y0
	VADDPS  (R9), Y0, Y0     // g = g0 + g1
	VMULPS  (SI), Y8, Y1     // b1*m
	VMULPS  Y0, Y10, Y2      // c1*g
	VADDPS  Y2, Y1, Y1       // m
	VMULPS  (DX), Y9, Y3     // b2*v
	VMULPS  Y0, Y11, Y4      // c2*g
	VMULPS  Y0, Y4, Y4       // (c2*g)*g
	VADDPS  Y4, Y3, Y3       // v
	VMOVUPS Y1, (SI)
	VMOVUPS Y3, (DX)
	VSQRTPS Y3, Y5
	VADDPS  Y13, Y5, Y5      // sqrt(v) + eps
	VMULPS  Y12, Y1, Y6      // step*m
	VDIVPS  Y5, Y6, Y6       // (step*m) / (sqrt(v) + eps)
	VMULPS  (DI), Y14, Y7    // p*decay
	VSUBPS  Y6, Y7, Y7
	VMOVUPS Y7, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, R8
	ADDQ    $32, R9
	SUBQ    $8, CX
	JNZ     adamtwo
	JMP     adamdone
adamone:
	VMOVUPS (R8), Y0
	VMULPS  (SI), Y8, Y1
	VMULPS  Y0, Y10, Y2
	VADDPS  Y2, Y1, Y1
	VMULPS  (DX), Y9, Y3
	VMULPS  Y0, Y11, Y4
	VMULPS  Y0, Y4, Y4
	VADDPS  Y4, Y3, Y3
	VMOVUPS Y1, (SI)
	VMOVUPS Y3, (DX)
	VSQRTPS Y3, Y5
	VADDPS  Y13, Y5, Y5
	VMULPS  Y12, Y1, Y6
	VDIVPS  Y5, Y6, Y6
	VMULPS  (DI), Y14, Y7
	VSUBPS  Y6, Y7, Y7
	VMOVUPS Y7, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, R8
	SUBQ    $8, CX
	JNZ     adamone
adamdone:
	VZEROUPPER
	RET

// func prefetchRowsAsm(base *float32, stride int, rows *int32, n int)
// Prefetches the first and last bytes of the rows at base + rows[i]*stride,
// i < n, into all cache levels.
TEXT ·prefetchRowsAsm(SB), NOSPLIT, $0-32
	MOVQ  base+0(FP), DI
	MOVQ  stride+8(FP), DX
	LEAQ  -1(DX), R8
	MOVQ  rows+16(FP), SI
	MOVQ  n+24(FP), CX
	TESTQ CX, CX
	JZ    pfdone
pfloop:
	MOVLQSX    (SI), AX
	IMULQ      DX, AX
	PREFETCHT0 (DI)(AX*1)
	ADDQ       R8, AX
	PREFETCHT0 (DI)(AX*1)
	ADDQ       $4, SI
	DECQ       CX
	JNZ        pfloop
pfdone:
	RET
