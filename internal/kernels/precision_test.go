package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestParsePrecision(t *testing.T) {
	for s, want := range map[string]Precision{"": FP32, "fp32": FP32, "bf16": BF16} {
		p, err := ParsePrecision(s)
		if err != nil || p != want {
			t.Errorf("ParsePrecision(%q) = %v, %v; want %v", s, p, err, want)
		}
		if s != "" && p.String() != s {
			t.Errorf("%v.String() = %q, want %q", p, p.String(), s)
		}
	}
	for _, s := range []string{"fp16", "BF16", "float32"} {
		if _, err := ParsePrecision(s); err == nil {
			t.Errorf("ParsePrecision(%q) accepted", s)
		}
	}
}

// TestPrecisionEffective checks the run-time choice: bf16 where the CPU
// has it, float32 otherwise, and that switching the instructions off
// (SetNativeBF16) makes bf16 fall back to float32.
func TestPrecisionEffective(t *testing.T) {
	if FP32.Effective() != FP32 {
		t.Fatal("FP32.Effective() is not FP32")
	}
	want := FP32
	if hasBF16 {
		want = BF16
	}
	if got := BF16.Effective(); got != want {
		t.Fatalf("BF16.Effective() = %v on a CPU with AVX512_BF16 %v", got, hasBF16)
	}
	was := SetNativeBF16(false)
	defer SetNativeBF16(was)
	if was != hasBF16 {
		t.Fatalf("SetNativeBF16 reported %v before, the CPU has %v", was, hasBF16)
	}
	if NativeBF16() || BF16.Effective() != FP32 || ImplBF16() != "gobf16" {
		t.Fatalf("off: NativeBF16 %v, BF16.Effective() %v, ImplBF16 %q", NativeBF16(), BF16.Effective(), ImplBF16())
	}
	SetNativeBF16(true)
	if NativeBF16() != hasBF16 {
		t.Fatalf("on again: NativeBF16 %v, the CPU has %v", NativeBF16(), hasBF16)
	}
}

// TestPrecisionProducts checks that a Precision's products are those of
// the functions it stands for, bit for bit, with the emulated bf16 kernel
// too.
func TestPrecisionProducts(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const rows, in, out = 37, 45, 70
	x, w, bias := randMat(rng, rows*in), randMat(rng, out*in), randMat(rng, out)
	for _, native := range []bool{true, false} {
		was := SetNativeBF16(native)
		for _, p := range []Precision{FP32, BF16} {
			gemm := Sgemm
			if p == BF16 {
				gemm = GemmBF16
			}
			got, want := make([]float32, rows*out), make([]float32, rows*out)
			p.Gemm(false, true, rows, out, in, 1, x, in, w, in, 0, got, out)
			gemm(false, true, rows, out, in, 1, x, in, w, in, 0, want, out)
			sameBits(t, p.String()+" Gemm", got, want)
			for _, act := range []Activation{ActNone, ActReLU} {
				p.LinearTo(act, got, out, x, in, rows, in, out, w, bias)
				if act == ActReLU {
					AddBiasReLU(want, out, rows, bias)
				} else {
					AddBias(want, out, rows, bias)
				}
				sameBits(t, p.String()+" LinearTo", got, want)
				gemm(false, true, rows, out, in, 1, x, in, w, in, 0, want, out)
			}
			pb := p.PackB(true, out, in, w, in)
			if pb.BF16() != (p == BF16) {
				t.Fatalf("%v.PackB: BF16() = %v", p, pb.BF16())
			}
			SgemmPacked(false, rows, 1, x, in, pb, 0, got, out)
			sameBits(t, p.String()+" PackB", got, want)
		}
		SetNativeBF16(was)
	}
}

func randMat(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = rng.Float32()*2 - 1
	}
	return slices.Clip(x)
}

// TestGemmReLUBack checks the fused mask against the product followed by
// ReLUBackward, bit for bit, in both precisions, on shapes with edge
// tiles, several k blocks and several n blocks, with strided views and
// a mask holding zeros and NaN.
func TestGemmReLUBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	rnd := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = rng.Float32()*2 - 1
		}
		return x
	}
	for _, p := range []Precision{FP32, BF16} {
		for _, s := range []struct {
			transA, transB bool
			m, n, k        int
		}{{false, false, 1, 1, 1}, {false, false, 37, 70, 19}, {true, false, 29, 33, 600}, {false, true, 15, 2400, 9}, {false, false, 512, 256, 128}} {
			a, b := rnd(s.m*s.k), rnd(s.k*s.n)
			lda, ldb := s.k, s.n
			if s.transA {
				lda = s.m
			}
			if s.transB {
				ldb = s.k
			}
			ldc, ldy := s.n+3, s.n+5
			y := rnd(s.m * ldy)
			y[0], y[len(y)/2] = 0, float32(math.NaN())
			got := rnd(s.m * ldc)
			want := slices.Clone(got)
			p.GemmReLUBack(s.transA, s.transB, s.m, s.n, s.k, a, lda, b, ldb, got, ldc, y, ldy)
			p.Gemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, want, ldc)
			ReLUBackward(want, ldc, y, ldy, s.m, s.n)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%v %+v: element %d = %v, want %v", p, s, i, got[i], want[i])
				}
			}
		}
	}
}
