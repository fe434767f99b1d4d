package serving

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// ErrRank: the ranking formula does not parse or names nothing it can use.
var ErrRank = fmt.Errorf("serving: bad rank formula")

// A rank formula is a product of factors:
//
//	formula := factor { "*" factor }
//	factor  := operand [ "^" number ]
//	operand := name | number
//	name    := letter-or-'_' { letter | digit | '_' | '.' | '-' }
//	number  := an optionally signed decimal number ("0.5", "-1", "2e-3")
//
// Spaces are allowed between tokens. A name that is one of the model's
// objectives ("ctr", "cvr", "ctcvr") stands for that score; any other name
// is a numeric key of the candidate's raw JSON (falling back to the
// context's, like features do), for example a price or a bid. A candidate
// without a number for a named key is rejected with 400 naming the field.
// Examples: "ctcvr * price", "ctr^1 * cvr^0.5 * price", "ctr^0.8 * bid^1.2".
// The empty formula ranks by the model's first objective.
//
// NaN rank scores (a negative base to a fractional power) sort last.
type rankFormula struct {
	src     string
	factors []rankFactor
}

type rankFactor struct {
	name  string  // "" for a constant
	value float64 // the constant
	pow   float64
}

// parseRank parses a formula; it does not know the model yet.
func parseRank(src string) (*rankFormula, error) {
	f := &rankFormula{src: src}
	s := strings.TrimSpace(src)
	if s == "" {
		return f, nil
	}
	p := 0
	ws := func() {
		for p < len(s) && (s[p] == ' ' || s[p] == '\t') {
			p++
		}
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q at offset %d: %s", ErrRank, src, p, fmt.Sprintf(format, args...))
	}
	number := func() (float64, error) {
		start := p
		if p < len(s) && (s[p] == '-' || s[p] == '+') {
			p++
		}
		for p < len(s) && (s[p] >= '0' && s[p] <= '9' || s[p] == '.' || s[p] == 'e' || s[p] == 'E' ||
			(s[p] == '-' || s[p] == '+') && (s[p-1] == 'e' || s[p-1] == 'E')) {
			p++
		}
		x, err := strconv.ParseFloat(s[start:p], 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			p = start
			return 0, bad("want a finite number")
		}
		return x, nil
	}
	for {
		ws()
		var fc rankFactor
		fc.pow = 1
		switch {
		case p < len(s) && (isNameStart(s[p])):
			start := p
			for p < len(s) && isNameByte(s[p]) {
				p++
			}
			fc.name = s[start:p]
		case p < len(s) && (s[p] >= '0' && s[p] <= '9' || s[p] == '.' || s[p] == '-' || s[p] == '+'):
			x, err := number()
			if err != nil {
				return nil, err
			}
			fc.value = x
		default:
			return nil, bad("want an objective, a candidate field or a number")
		}
		ws()
		if p < len(s) && s[p] == '^' {
			p++
			ws()
			x, err := number()
			if err != nil {
				return nil, err
			}
			fc.pow = x
			ws()
		}
		f.factors = append(f.factors, fc)
		if p == len(s) {
			return f, nil
		}
		if s[p] != '*' {
			return nil, bad("want '*' or the end of the formula")
		}
		p++
	}
}

func isNameStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isNameByte(c byte) bool {
	return isNameStart(c) || c >= '0' && c <= '9' || c == '.' || c == '-'
}

// rankPlan is a formula bound to a model's objectives.
type rankPlan struct {
	constant float64
	objs     []rankTerm // objective index and power
	fields   []string   // candidate fields
	fpows    []float64
}

type rankTerm struct {
	obj int
	pow float64
}

// bind resolves the formula's names against the model's objectives.
func (f *rankFormula) bind(objectives []string) *rankPlan {
	p := &rankPlan{constant: 1}
	if len(f.factors) == 0 {
		p.objs = []rankTerm{{obj: 0, pow: 1}}
		return p
	}
	for _, fc := range f.factors {
		switch {
		case fc.name == "":
			p.constant *= math.Pow(fc.value, fc.pow)
		case slices.Contains(objectives, fc.name):
			p.objs = append(p.objs, rankTerm{obj: slices.Index(objectives, fc.name), pow: fc.pow})
		default:
			p.fields = append(p.fields, fc.name)
			p.fpows = append(p.fpows, fc.pow)
		}
	}
	return p
}

// pow is math.Pow with the common exponents done exactly and quickly.
func pow(x, y float64) float64 {
	switch y {
	case 1:
		return x
	case 0:
		return 1
	case 2:
		return x * x
	case -1:
		return 1 / x
	}
	return math.Pow(x, y)
}

// ranksBefore reports whether candidate a ranks before candidate b: the
// higher rank score first, NaN last, ties in request order.
func ranksBefore(rank []float64, a, b int) bool {
	ra, rb := rank[a], rank[b]
	switch {
	case ra > rb:
		return true
	case ra < rb:
		return false
	case ra == rb:
	case math.IsNaN(ra) != math.IsNaN(rb):
		return !math.IsNaN(ra)
	}
	return a < b
}

// rankOrder sets order to the indices of the k best-ranked candidates of
// rank (ranksBefore), best first, reusing order. For a small k of many
// candidates (a request's top_k) it keeps the k best in a heap, one
// comparison for most candidates, and sorts only those: the same order
// as sorting all of them and cutting at k, since ranksBefore is a total
// order.
func rankOrder(order []int, rank []float64, k int) []int {
	n := len(rank)
	k = min(k, n)
	order = order[:0]
	cmp := func(a, b int) int {
		if ranksBefore(rank, a, b) {
			return -1
		}
		if a == b {
			return 0
		}
		return 1
	}
	if 4*k > n {
		for i := range n {
			order = append(order, i)
		}
		slices.SortFunc(order, cmp)
		return order[:k]
	}
	// A heap of the k best so far, the worst of them at the root.
	for i := range k {
		order = append(order, i)
	}
	h := order[:k]
	for i := k/2 - 1; i >= 0; i-- {
		siftWorst(h, rank, i)
	}
	for c := k; c < n; c++ {
		if k > 0 && ranksBefore(rank, c, h[0]) {
			h[0] = c
			siftWorst(h, rank, 0)
		}
	}
	slices.SortFunc(h, cmp)
	return h
}

// siftWorst restores the heap h (each parent ranks after its children)
// below position i.
func siftWorst(h []int, rank []float64, i int) {
	for {
		w, l := i, 2*i+1
		if l < len(h) && ranksBefore(rank, h[w], h[l]) {
			w = l
		}
		if r := l + 1; r < len(h) && ranksBefore(rank, h[w], h[r]) {
			w = r
		}
		if w == i {
			return
		}
		h[i], h[w] = h[w], h[i]
		i = w
	}
}

// String returns the formula as given.
func (f *rankFormula) String() string { return f.src }
