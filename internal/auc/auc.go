// Package auc computes the exact area under the ROC curve of scores
// against labels: the weighted probability that a positive scores above a
// negative, ties counting one half (the Mann-Whitney U statistic), and the
// group AUC. It is onestone's one AUC: the evaluation metrics (package mtl)
// and the ceiling AUC of generated data (internal/gen) both come from it,
// so that the demo's "share of the ceiling" divides like by like.
//
// A row of weight w and label y in [0, 1] counts w·y as positive and
// w·(1−y) as negative, the usual AUC for 0/1 labels. Scores are sorted by
// an LSD radix sort on their bits (O(n)); -0 and +0 tie. Scores must not
// be NaN; labels and weights are not checked (mtl checks them).
//
// Sums are accumulated in float64.
package auc

import "math"

// Score is the type of the scores: float32 (model predictions) or float64
// (true probabilities).
type Score interface{ float32 | float64 }

// Scratch holds the buffers of the sorts, reused from call to call: with a
// Scratch that has seen n rows, AUC and AUCAndGAUC of up to n rows allocate
// nothing. The zero value is ready to use. A Scratch is for one goroutine
// at a time.
type Scratch struct {
	idx, tidx []uint32
	k32, t32  []uint32
	k64, t64  []uint64
}

// AUC returns the exact weighted ROC AUC of scores against labels, or NaN
// when either class has no weight. weights may be nil (all 1); s may be
// nil (a fresh Scratch). The slices must have equal lengths (it panics
// otherwise, as a shape bug).
func AUC[S Score](s *Scratch, scores []S, labels, weights []float32) float64 {
	checkLens(len(scores), labels, weights, nil)
	if s == nil {
		s = new(Scratch)
	}
	return sorted(scores, labels, weights, sortByScore(s, scores))
}

// AUCAndGAUC returns AUC(s, scores, labels, weights) and the group AUC:
// the AUCs of the groups (rows of equal groups[i]) that have weight in
// both classes, averaged with the groups' weight sums as weights, and the
// number of groups that entered it. The GAUC is NaN when no group has both
// classes or groups is nil. The scores are sorted once for both.
func AUCAndGAUC[S Score](s *Scratch, scores []S, labels, weights []float32, groups []uint64) (auc, gauc float64, used int) {
	checkLens(len(scores), labels, weights, groups)
	if s == nil {
		s = new(Scratch)
	}
	idx := sortByScore(s, scores)
	auc = sorted(scores, labels, weights, idx)
	if groups == nil {
		return auc, math.NaN(), 0
	}
	idx = sortByGroup(s, groups)
	var sum, wsum float64
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && groups[idx[j]] == groups[idx[i]] {
			j++
		}
		if a := sorted(scores, labels, weights, idx[i:j]); !math.IsNaN(a) {
			var wg float64
			for _, r := range idx[i:j] {
				wg += weight(weights, r)
			}
			sum += wg * a
			wsum += wg
			used++
		}
		i = j
	}
	if used == 0 || wsum == 0 {
		return auc, math.NaN(), used
	}
	return auc, sum / wsum, used
}

func checkLens(n int, labels, weights []float32, groups []uint64) {
	if len(labels) != n || (weights != nil && len(weights) != n) || (groups != nil && len(groups) != n) {
		panic("auc: scores, labels, weights and groups of different lengths")
	}
}

func weight(w []float32, r uint32) float64 {
	if w == nil {
		return 1
	}
	return float64(w[r])
}

// sorted returns the weighted AUC of the rows idx, in ascending score
// order: each run of tied scores adds its positive weight times the
// negative weight below it plus half its own negative weight.
func sorted[S Score](p []S, y, w []float32, idx []uint32) float64 {
	var area, P, N float64 // N: negative weight of strictly lower scores so far
	for i := 0; i < len(idx); {
		s := p[idx[i]]
		var pg, ng float64
		for ; i < len(idx) && p[idx[i]] == s; i++ {
			r := idx[i]
			wr, yr := weight(w, r), float64(y[r])
			pg += wr * yr
			ng += wr * (1 - yr)
		}
		area += pg * (N + ng/2)
		P += pg
		N += ng
	}
	if P == 0 || N == 0 {
		return math.NaN()
	}
	return area / (P * N)
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n, n+n/4)
	}
	return s[:n]
}

// sortByScore returns the row indices in ascending score order (ties in
// row order).
func sortByScore[S Score](s *Scratch, p []S) []uint32 {
	n := len(p)
	s.idx, s.tidx = grow(s.idx, n), grow(s.tidx, n)
	for i := range s.idx {
		s.idx[i] = uint32(i)
	}
	switch p := any(p).(type) {
	case []float32:
		s.k32, s.t32 = grow(s.k32, n), grow(s.t32, n)
		for i, x := range p {
			b := math.Float32bits(x + 0) // +0 turns -0 into +0 so that they tie
			if b&(1<<31) != 0 {
				b = ^b
			} else {
				b |= 1 << 31
			}
			s.k32[i] = b
		}
		radixPairs(s.k32, s.idx, s.t32, s.tidx, 4)
	case []float64:
		s.k64, s.t64 = grow(s.k64, n), grow(s.t64, n)
		for i, x := range p {
			b := math.Float64bits(x + 0)
			if b&(1<<63) != 0 {
				b = ^b
			} else {
				b |= 1 << 63
			}
			s.k64[i] = b
		}
		radixPairs(s.k64, s.idx, s.t64, s.tidx, 8)
	}
	return s.idx
}

// sortByGroup stably reorders the last sortByScore result by group key, so
// that rows end up ordered by group, then score.
func sortByGroup(s *Scratch, g []uint64) []uint32 {
	n := len(s.idx)
	s.k64, s.t64 = grow(s.k64, n), grow(s.t64, n)
	for i, r := range s.idx {
		s.k64[i] = g[r]
	}
	radixPairs(s.k64, s.idx, s.t64, s.tidx, 8)
	return s.idx
}

// radixPairs sorts keys ascending, moving vals along, by LSD radix sort on
// the low `bytes` bytes (stable). tk and tv are scratch of the same length.
// Passes where every key has the same digit are skipped.
func radixPairs[K uint32 | uint64](keys []K, vals []uint32, tk []K, tv []uint32, bytes int) {
	if len(keys) == 0 {
		return
	}
	var count [256]int
	for b := range bytes {
		shift := uint(8 * b)
		clear(count[:])
		for _, k := range keys {
			count[byte(k>>shift)]++
		}
		if count[byte(keys[0]>>shift)] == len(keys) {
			continue
		}
		pos := 0
		for d := range count {
			c := count[d]
			count[d] = pos
			pos += c
		}
		for i, k := range keys {
			d := byte(k >> shift)
			tk[count[d]] = k
			tv[count[d]] = vals[i]
			count[d]++
		}
		copy(keys, tk)
		copy(vals, tv)
	}
}
