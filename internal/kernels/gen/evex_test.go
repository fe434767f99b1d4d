package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestEncode checks the encoder against GNU as 2.40 (`as` on the Intel
// syntax in each case's comment, disassembled with objdump), covering every
// operand field's high bits and each vector length.
func TestEncode(t *testing.T) {
	for _, c := range []struct {
		in              evexInst
		bits, d, s1, s2 int
		want            []byte
	}{
		{instDPBF16PS, 512, 3, 2, 1, []byte{0x62, 0xf2, 0x6e, 0x48, 0x52, 0xd9}},         // vdpbf16ps zmm3,zmm2,zmm1
		{instDPBF16PS, 512, 27, 28, 30, []byte{0x62, 0x02, 0x1e, 0x40, 0x52, 0xde}},      // vdpbf16ps zmm27,zmm28,zmm30
		{instDPBF16PS, 512, 0, 17, 9, []byte{0x62, 0xd2, 0x76, 0x40, 0x52, 0xc1}},        // vdpbf16ps zmm0,zmm17,zmm9
		{instDPBF16PS, 512, 15, 16, 8, []byte{0x62, 0x52, 0x7e, 0x40, 0x52, 0xf8}},       // vdpbf16ps zmm15,zmm16,zmm8
		{instDPBF16PS, 512, 31, 31, 31, []byte{0x62, 0x02, 0x06, 0x40, 0x52, 0xff}},      // vdpbf16ps zmm31,zmm31,zmm31
		{instDPBF16PS, 256, 3, 2, 1, []byte{0x62, 0xf2, 0x6e, 0x28, 0x52, 0xd9}},         // vdpbf16ps ymm3,ymm2,ymm1
		{instCVTNE2PS2BF16, 512, 3, 2, 1, []byte{0x62, 0xf2, 0x6f, 0x48, 0x72, 0xd9}},    // vcvtne2ps2bf16 zmm3,zmm2,zmm1
		{instCVTNE2PS2BF16, 512, 20, 12, 25, []byte{0x62, 0x82, 0x1f, 0x48, 0x72, 0xe1}}, // vcvtne2ps2bf16 zmm20,zmm12,zmm25
		{instCVTNE2PS2BF16, 256, 3, 18, 9, []byte{0x62, 0xd2, 0x6f, 0x20, 0x72, 0xd9}},   // vcvtne2ps2bf16 ymm3,ymm18,ymm9
		{instCVTNE2PS2BF16, 128, 7, 8, 31, []byte{0x62, 0x92, 0x3f, 0x08, 0x72, 0xff}},   // vcvtne2ps2bf16 xmm7,xmm8,xmm31
	} {
		if got := c.in.encode(c.bits, c.d, c.s1, c.s2); !bytes.Equal(got, c.want) {
			t.Errorf("%s %d-bit %d, %d, %d = % x, want % x", c.in.name, c.bits, c.d, c.s1, c.s2, got, c.want)
		}
	}
}

func TestAsmOperandOrder(t *testing.T) {
	// Go order src2, src1, dst: "Z1, Z2, Z3" is Intel's zmm3, zmm2, zmm1.
	got := instDPBF16PS.asm("Z1", "Z2", "Z3")
	want := "BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x48; BYTE $0x52; BYTE $0xd9 // VDPBF16PS Z1, Z2, Z3"
	if got != want {
		t.Errorf("asm = %q, want %q", got, want)
	}
	got = instCVTNEPS2BF16.asm2("Z23", "Y7")
	want = "BYTE $0x62; BYTE $0xb2; BYTE $0x7e; BYTE $0x48; BYTE $0x72; BYTE $0xff // VCVTNEPS2BF16 Z23, Y7"
	if got != want {
		t.Errorf("asm2 = %q, want %q", got, want)
	}
	for _, bad := range [][3]string{{"Z1", "Y2", "Z3"}, {"Z1", "Z2", "Z32"}, {"K1", "Z2", "Z3"}} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "VDPBF16PS") {
					t.Errorf("asm(%v): panic %v, want one naming the instruction", bad, r)
				}
			}()
			instDPBF16PS.asm(bad[0], bad[1], bad[2])
		}()
	}
}
