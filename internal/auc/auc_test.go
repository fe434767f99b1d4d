package auc

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// pairwise is the O(n^2) definition: the share of (positive, negative)
// pairs ordered correctly, ties counting one half.
func pairwise(scores []float64, labels []bool) float64 {
	var num, den float64
	for i := range scores {
		if !labels[i] {
			continue
		}
		for j := range scores {
			if labels[j] {
				continue
			}
			den++
			switch {
			case scores[i] > scores[j]:
				num++
			case scores[i] == scores[j]:
				num += 0.5
			}
		}
	}
	return num / den
}

func TestAUCMatchesPairwise(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{2, 3, 7, 50, 333} {
		for _, levels := range []int{2, 5, 0} { // 0: continuous scores, else few distinct (ties)
			scores := make([]float64, n)
			labels := make([]bool, n)
			for i := range scores {
				if levels == 0 {
					scores[i] = r.NormFloat64()
				} else {
					scores[i] = float64(r.IntN(levels))
				}
				labels[i] = r.Float64() < 0.3+0.1*scores[i]/float64(max(levels, 1))
			}
			labels[0], labels[n-1] = true, false
			got, err := AUC(scores, labels)
			if err != nil {
				t.Fatal(err)
			}
			if want := pairwise(scores, labels); math.Abs(got-want) > 1e-12 {
				t.Errorf("n=%d levels=%d: AUC %v, pairwise %v", n, levels, got, want)
			}
		}
	}
}

func TestAUCKnown(t *testing.T) {
	cases := []struct {
		scores []float64
		labels []bool
		want   float64
	}{
		{[]float64{1, 2, 3, 4}, []bool{false, false, true, true}, 1},
		{[]float64{1, 2, 3, 4}, []bool{true, true, false, false}, 0},
		{[]float64{1, 1, 1, 1}, []bool{true, false, true, false}, 0.5},
		{[]float64{0.1, 0.4, 0.35, 0.8}, []bool{false, false, true, true}, 0.75},
	}
	for _, c := range cases {
		got, err := AUC(c.scores, c.labels)
		if err != nil || got != c.want {
			t.Errorf("AUC(%v, %v) = %v, %v; want %v", c.scores, c.labels, got, err, c.want)
		}
	}
}

func TestAUCErrors(t *testing.T) {
	if _, err := AUC([]float64{1, 2}, []bool{true, true}); !errors.Is(err, ErrOneClass) {
		t.Errorf("one class: %v", err)
	}
	if _, err := AUC([]float64{1, 2}, []bool{true}); err == nil {
		t.Error("length mismatch accepted")
	}
	if _, err := AUC([]float64{1, math.NaN()}, []bool{true, false}); err == nil {
		t.Error("NaN accepted")
	}
}

func TestAUCToReusesScratch(t *testing.T) {
	scores := []float64{0.3, 0.1, 0.9, 0.5}
	labels := []bool{false, false, true, true}
	scratch := make([]int32, 0, len(scores))
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := AUCTo(scratch, scores, labels); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("AUCTo with scratch allocates %v times", allocs)
	}
}
