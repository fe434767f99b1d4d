package jsontext

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"unicode/utf8"
)

// TestAppendString: every string, whatever its bytes, is written as valid
// JSON that encoding/json and String read back as the string (invalid
// UTF-8 as encoding/json's own U+FFFD replacement).
func TestAppendString(t *testing.T) {
	ins := []string{
		"", "plain", `a"b\c/d`, "\x00\x01\a\b\f\n\r\t\v\x1f\x7f", "é😀\u2028\u2029<>&",
		"\xff", "a\xc3", "\xed\xa0\x80", "ok\xf0\x9f\x98",
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		ins = append(ins, string(b))
	}
	for _, s := range ins {
		checkAppendString(t, s)
	}
	if got := string(AppendString(nil, "a\x01\"")); got != `"a\u0001\""` {
		t.Errorf("control character: %s", got)
	}
}

func checkAppendString(t *testing.T, s string) {
	t.Helper()
	out := AppendString([]byte("prefix"), s)[len("prefix"):]
	if !json.Valid(out) {
		t.Fatalf("%q: invalid JSON %s", s, out)
	}
	var back string
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	want := s
	if !utf8.ValidString(s) {
		m, _ := json.Marshal(s) // encoding/json's replacement of bad bytes
		if err := json.Unmarshal(m, &want); err != nil {
			t.Fatal(err)
		}
	}
	if back != want {
		t.Fatalf("%q: wrote %s, encoding/json reads %q, want %q", s, out, back, want)
	}
	var sc Scanner
	got, end, err := sc.String(out, 0)
	if err != nil || end != len(out) || string(got) != want {
		t.Fatalf("%q: String reads %q (end %d, %v)", s, got, end, err)
	}
}

// TestAppendFloat: finite values are the shortest text that parses back to
// the same bits, as valid JSON; NaN and infinities are null.
func TestAppendFloat(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	vals := []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1e21, 1e-7, 123456789, math.MaxFloat64,
		math.SmallestNonzeroFloat64, math.MaxFloat32, math.SmallestNonzeroFloat32}
	for range 2000 {
		vals = append(vals, math.Float64frombits(r.Uint64()), float64(math.Float32frombits(r.Uint32())))
	}
	for _, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		out := AppendFloat(nil, v, 64)
		if !json.Valid(out) {
			t.Fatalf("%v: invalid JSON %s", v, out)
		}
		if back, err := strconv.ParseFloat(string(out), 64); err != nil || math.Float64bits(back) != math.Float64bits(v) {
			t.Fatalf("%v: %s reads back as %v (%v)", v, out, back, err)
		}
		f32 := float32(v)
		if math.IsInf(float64(f32), 0) {
			continue
		}
		out = AppendFloat(nil, float64(f32), 32)
		if !json.Valid(out) {
			t.Fatalf("%v: invalid JSON %s", f32, out)
		}
		if back, err := strconv.ParseFloat(string(out), 32); err != nil || math.Float32bits(float32(back)) != math.Float32bits(f32) {
			t.Fatalf("float32 %v: %s reads back as %v (%v)", f32, out, back, err)
		}
		if len(out) > len(strconv.FormatFloat(float64(f32), 'g', -1, 64)) {
			t.Fatalf("float32 %v: %s is longer than its float64 text: not the float32 shortest form", f32, out)
		}
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		for _, bits := range []int{32, 64} {
			if got := string(AppendFloat([]byte("x"), v, bits)); got != "xnull" {
				t.Errorf("%v/%d: %s, want null", v, bits, got)
			}
		}
	}
}
