package main

import (
	"fmt"
	"strings"
)

// Go's assembler (as of Go 1.26) does not know the AVX512_BF16
// instructions, so the generator writes them as BYTE sequences. evexInst
// is one of them in its register-only form: EVEX-encoded, opcode map 0F38,
// W0, no masking, no broadcast.
type evexInst struct {
	name   string // Intel mnemonic
	pp     byte   // implied prefix: 1 = 66, 2 = F3, 3 = F2
	opcode byte
}

var (
	// VDPBF16PS dst, src1, src2 (Intel order): for each fp32 lane i,
	// dst[i] += src1.bf16[2i+1]*src2.bf16[2i+1], then
	// dst[i] += src1.bf16[2i]*src2.bf16[2i], each an FMA rounded to
	// nearest even with denormal inputs read as zero and denormal results
	// flushed to zero, whatever MXCSR says.
	instDPBF16PS = evexInst{name: "VDPBF16PS", pp: 2, opcode: 0x52}
	// VCVTNE2PS2BF16 dst, src1, src2 (Intel order): the low half of dst
	// is src2 converted to bf16 (round to nearest even, denormals to
	// signed zero), the high half src1.
	instCVTNE2PS2BF16 = evexInst{name: "VCVTNE2PS2BF16", pp: 3, opcode: 0x72}
	// VCVTNEPS2BF16 dst, src (Intel order): the 16 floats of the ZMM src
	// converted as VCVTNE2PS2BF16 does, into the YMM dst. Use asm2.
	instCVTNEPS2BF16 = evexInst{name: "VCVTNEPS2BF16", pp: 2, opcode: 0x72}
)

// encode returns the instruction's bytes for the Intel-order operands
// dst (ModRM.reg), src1 (EVEX.vvvv) and src2 (ModRM.rm), register numbers
// 0-31, at vector length bits (128, 256 or 512).
func (in evexInst) encode(bits, dst, src1, src2 int) []byte {
	for _, r := range []int{dst, src1, src2} {
		if r < 0 || r > 31 {
			panic(fmt.Sprintf("gen: %s: register %d out of range", in.name, r))
		}
	}
	var ll byte
	switch bits {
	case 128:
		ll = 0
	case 256:
		ll = 1
	case 512:
		ll = 2
	default:
		panic(fmt.Sprintf("gen: %s: vector length %d", in.name, bits))
	}
	inv := func(r, bit int) byte { return byte(^r>>bit) & 1 }
	// P0: R X B R' 0 0 m m   (map 0F38 = 2)
	p0 := inv(dst, 3)<<7 | inv(src2, 4)<<6 | inv(src2, 3)<<5 | inv(dst, 4)<<4 | 2
	// P1: W vvvv 1 pp        (W0)
	p1 := byte(^src1&15)<<3 | 1<<2 | in.pp
	// P2: z L'L b V' aaa      (no zeroing, no broadcast, no mask)
	p2 := ll<<5 | inv(src1, 4)<<3
	modrm := byte(0xc0 | (dst&7)<<3 | src2&7)
	return []byte{0x62, p0, p1, p2, in.opcode, modrm}
}

// asm2 returns a two-operand instruction whose source is a ZMM register
// and destination a YMM one (VCVTNEPS2BF16), in Go's order (src, dst), as
// a Go assembly line with the mnemonic in a comment.
func (in evexInst) asm2(src, dst string) string {
	var s, d int
	if _, err := fmt.Sscanf(src, "Z%d", &s); err != nil {
		panic(fmt.Sprintf("gen: %s: bad source %q", in.name, src))
	}
	if _, err := fmt.Sscanf(dst, "Y%d", &d); err != nil {
		panic(fmt.Sprintf("gen: %s: bad destination %q", in.name, dst))
	}
	return byteLine(in.encode(512, d, 0, s)) + fmt.Sprintf(" // %s %s, %s", in.name, src, dst)
}

func byteLine(code []byte) string {
	var s strings.Builder
	for i, b := range code {
		if i > 0 {
			s.WriteString("; ")
		}
		fmt.Fprintf(&s, "BYTE $0x%02x", b)
	}
	return s.String()
}

// asm returns the instruction as a Go assembly line (without indentation)
// for operands in Go's order (src2, src1, dst, as Go writes VFMADD231PS)
// on registers named like "Z3" or "Y12", with the mnemonic in a comment.
func (in evexInst) asm(src2, src1, dst string) string {
	bits, regs := 0, []int{0, 0, 0}
	for i, r := range []string{src2, src1, dst} {
		b := map[byte]int{'X': 128, 'Y': 256, 'Z': 512}[r[0]]
		if b == 0 || (bits != 0 && b != bits) {
			panic(fmt.Sprintf("gen: %s: bad operands %s, %s, %s", in.name, src2, src1, dst))
		}
		bits = b
		if _, err := fmt.Sscanf(r[1:], "%d", &regs[i]); err != nil {
			panic(fmt.Sprintf("gen: %s: bad register %q", in.name, r))
		}
	}
	return byteLine(in.encode(bits, regs[2], regs[1], regs[0])) + fmt.Sprintf(" // %s %s, %s, %s", in.name, src2, src1, dst)
}
