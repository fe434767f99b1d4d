package kernels

import (
	"testing"
	"time"
)

func TestMeasureGemm(t *testing.T) {
	for _, s := range StdShapes() {
		if s.M <= 0 || s.N <= 0 || s.K <= 0 || s.Flops() != 2*float64(s.M*s.N*s.K) {
			t.Errorf("%s: bad shape %+v", s.Name, s)
		}
	}
	g := MeasureGemm(33, 65, 17, true, true, 2, 5*time.Millisecond)
	if !(g > 0) || g > 1e5 {
		t.Errorf("MeasureGemm = %g GFLOP/s, want a positive plausible figure", g)
	}
}
