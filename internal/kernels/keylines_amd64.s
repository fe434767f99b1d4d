//go:build !noasm

#include "textflag.h"

// func probeKeyLinesAVX512(dst *int32, table *uint64, lines uint64, keys *uint64, n int)
// For i < n: the home line of keys[i] is the high word of keys[i] × lines;
// its five keys are compared with keys[i] at once (the three words of
// values after them are masked off), and the lowest matching slot's value
// goes to dst[i]. No match selects slot 5, the zero half word at byte 60
// of the line, so there is no branch on the data.
TEXT ·probeKeyLinesAVX512(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ table+8(FP), SI
	MOVQ lines+16(FP), R9
	MOVQ keys+24(FP), R10
	MOVQ n+32(FP), CX
	TESTQ CX, CX
	JZ    pkdone
pkloop:
	MOVQ         (R10), AX
	VPBROADCASTQ AX, Z0
	MULQ         R9
	SHLQ         $6, DX
	ADDQ         SI, DX
	VPCMPEQQ     (DX), Z0, K1
	KMOVW        K1, BX
	ANDL         $0x1f, BX
	ORL          $0x20, BX
	BSFL         BX, BX
	MOVL         40(DX)(BX*4), AX
	MOVL         AX, (DI)
	ADDQ         $8, R10
	ADDQ         $4, DI
	DECQ         CX
	JNZ          pkloop
pkdone:
	VZEROUPPER
	RET

// func prefetchKeyLinesAsm(table *uint64, lines uint64, keys *uint64, n int)
// Prefetches the home line (high word of keys[i] × lines) of each key,
// i < n, into all cache levels.
TEXT ·prefetchKeyLinesAsm(SB), NOSPLIT, $0-32
	MOVQ  table+0(FP), SI
	MOVQ  lines+8(FP), R9
	MOVQ  keys+16(FP), R10
	MOVQ  n+24(FP), CX
	TESTQ CX, CX
	JZ    pfkdone
pfkloop:
	MOVQ       (R10), AX
	MULQ       R9
	SHLQ       $6, DX
	PREFETCHT0 (SI)(DX*1)
	ADDQ       $8, R10
	DECQ       CX
	JNZ        pfkloop
pfkdone:
	RET
