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
// value. NaN, infinities, zeros and magnitudes below 2^-1000 (where s
// would lose bits as a subnormal) go to math.Log1p (a NaN stays NaN, an
// infinity keeps its sign, -0 stays -0).
func signedLog1pTo(dst, src []float64) {
	dst = dst[:len(src)]
	for i, v := range src {
		x := math.Abs(v)
		if !(x >= 0x1p-1000 && x <= math.MaxFloat64) {
			dst[i] = math.Copysign(math.Log1p(x), v)
			continue
		}
		u := 1 + x
		// 1+x rounds: 1+x = u+c, with c exact for u below 2^53 (u-1 is
		// exact, and so is x-(u-1) by Sterbenz's lemma); above, c is
		// within an ulp of u, below 2^-52 of the result.
		c := x - (u - 1)
		// u = 2^k m with m in [sqrt(2)/2, sqrt(2)): the high word's
		// offset makes the exponent step at the mantissa sqrt(2) (as
		// fdlibm's log). Then 1+x = 2^k (m + c 2^-k), so c joins the
		// reduced argument f and log1p needs one division, not two
		// (2^-k is 0 for k >= 1023, where c 2^-k is below 2^-970).
		b := math.Float64bits(u)
		hi := b>>32 + (0x3ff00000 - 0x3fe6a09e)
		k := int64(hi>>20) - 0x3ff
		hi = hi&0x000fffff + 0x3fe6a09e
		m := math.Float64frombits(hi<<32 | b&0xffffffff)
		f := (m - 1) + float64(c*math.Float64frombits(uint64(max(0x3ff-k, 0))<<52))
		// log(1+f) = 2 atanh(s) with s = f/(2+f), |s| <= 0.1716.
		s := f / (2 + f)
		z := s * s
		q := atanh3 + float64(z*(atanh5+float64(z*(atanh7+float64(z*(atanh9+float64(z*atanh11)))))))
		s2 := s + s
		log := s2 + float64(float64(s2*z)*q)
		dst[i] = math.Copysign(float64(float64(k)*ln2)+log, v)
	}
}
