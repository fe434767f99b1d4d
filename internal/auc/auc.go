// Package auc computes the exact area under the ROC curve of scores against
// binary labels: the probability that a random positive scores above a
// random negative, ties counting one half (the Mann-Whitney U statistic).
package auc

import (
	"errors"
	"fmt"
	"slices"
)

// ErrOneClass is returned when the labels hold only positives or only
// negatives, for which the AUC is undefined.
var ErrOneClass = errors.New("auc: labels hold only one class")

// AUC returns the exact ROC AUC of scores against labels. It sorts a copy of
// the indices (O(n log n)); tied scores share the average rank. Scores must
// not be NaN.
func AUC(scores []float64, labels []bool) (float64, error) {
	return AUCTo(nil, scores, labels)
}

// AUCTo is AUC with a caller's scratch buffer of indices (nil allocates; a
// buffer of capacity len(scores) is reused without allocating).
func AUCTo(scratch []int32, scores []float64, labels []bool) (float64, error) {
	n := len(scores)
	if len(labels) != n {
		return 0, fmt.Errorf("auc: %d scores but %d labels", n, len(labels))
	}
	var npos int
	for i, s := range scores {
		if s != s {
			return 0, fmt.Errorf("auc: score %d is NaN", i)
		}
		if labels[i] {
			npos++
		}
	}
	nneg := n - npos
	if npos == 0 || nneg == 0 {
		return 0, fmt.Errorf("%w (%d positives, %d negatives)", ErrOneClass, npos, nneg)
	}
	idx := scratch[:0]
	if cap(idx) < n {
		idx = make([]int32, 0, n)
	}
	for i := range n {
		idx = append(idx, int32(i))
	}
	slices.SortFunc(idx, func(a, b int32) int {
		sa, sb := scores[a], scores[b]
		switch {
		case sa < sb:
			return -1
		case sa > sb:
			return 1
		}
		return 0
	})
	// Sum of the (1-based, tie-averaged) ranks of the positives.
	var rankSum float64
	for i := 0; i < n; {
		j := i + 1
		for j < n && scores[idx[j]] == scores[idx[i]] {
			j++
		}
		// Ranks i+1..j share their mean (i+1+j)/2.
		var pos int
		for _, k := range idx[i:j] {
			if labels[k] {
				pos++
			}
		}
		rankSum += float64(pos) * float64(i+1+j) / 2
		i = j
	}
	u := rankSum - float64(npos)*float64(npos+1)/2
	return u / (float64(npos) * float64(nneg)), nil
}
