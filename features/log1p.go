package features

import "math"

// The log1p transform (TransformLog1p) is computed here, by both the
// batch path (TransformTo) and the row path (serving, the Checker), so
// that online and offline values stay bit-identical. It is not
// math.Log1p: that one is exact to the last bit of a float64 but costs a
// tenth of the Parquet-to-batch path, and the result is rounded to a
// float32 anyway.
//
// Accuracy: for every finite x, |log1p(x) - log(1+x)| is at most
// 6e-11 |log(1+x)| (the series below is cut after s^11, which leaves at
// most 5.2e-11, and a few float64 roundings). A float32 has 24 bits
// (relative 6e-8), so float32(log1p(x)) is the correctly rounded float32
// of log(1+x) or one of its neighbours, and equals float32(math.Log1p(x))
// for all but about one value in a thousand (the test measures it).
//
// The result depends on IEEE float64 arithmetic only: every product that
// is added is rounded by an explicit conversion, which forbids the
// compiler to fuse it into an FMA (the Go spec), so amd64 at any GOAMD64
// level and arm64 compute the same bits.

// signedLog1p returns sign(x)*log1p(|x|).
func signedLog1p(x float64) float64 {
	var y [1]float64
	signedLog1pTo(y[:], []float64{x})
	return y[0]
}

const (
	ln2 = 0.693147180559945309417232121458176568
	// 1/(2k+1), the coefficients of 2 atanh(s) = 2s (1 + s²/3 + s⁴/5 + ...).
	atanh3  = 1.0 / 3
	atanh5  = 1.0 / 5
	atanh7  = 1.0 / 7
	atanh9  = 1.0 / 9
	atanh11 = 1.0 / 11
)

// signedLog1pTo sets dst[i] = sign(x)*log1p(|x|) for each x = src[i]: the
// one implementation, a loop so that the batch path pays no call per
// value. NaN, infinities and zeros go to math.Log1p (a NaN stays NaN, an
// infinity keeps its sign, -0 stays -0).
func signedLog1pTo(dst, src []float64) {
	dst = dst[:len(src)]
	for i, v := range src {
		x := math.Abs(v)
		if !(x > 0 && x <= math.MaxFloat64) {
			dst[i] = math.Copysign(math.Log1p(x), v)
			continue
		}
		u := 1 + x
		// 1+x rounds: log(1+x) = log(u) + log(1+c/u) with c = x-(u-1),
		// exact for u in [1, 2^53], and |c/u| < 2^-53, so log(1+c/u) =
		// c/u to within 2^-106.
		c := (x - (u - 1)) / u
		// u = 2^k m with m in [sqrt(2)/2, sqrt(2)): the high word's
		// offset makes the exponent step at the mantissa sqrt(2) (as
		// fdlibm's log).
		b := math.Float64bits(u)
		hi := b>>32 + (0x3ff00000 - 0x3fe6a09e)
		k := int64(hi>>20) - 0x3ff
		hi = hi&0x000fffff + 0x3fe6a09e
		m := math.Float64frombits(hi<<32 | b&0xffffffff)
		// log(m) = 2 atanh(s) with s = (m-1)/(m+1), |s| <= 0.1716.
		f := m - 1
		s := f / (2 + f)
		z := s * s
		q := atanh3 + float64(z*(atanh5+float64(z*(atanh7+float64(z*(atanh9+float64(z*atanh11)))))))
		s2 := s + s
		logm := s2 + float64(float64(s2*z)*q)
		dst[i] = math.Copysign(float64(float64(k)*ln2)+(logm+c), v)
	}
}
