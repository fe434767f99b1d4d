package pipelines

import (
	"fmt"
	"math"
	"regexp"
	"strconv"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/kernels"
	"github.com/onestone/onestone/mmoe"
)

// Thresholds of the report's alerts.
const (
	// GateCollapseWeight and GateCollapseShare: a gate has collapsed when,
	// for at least GateCollapseShare of the sample's rows, one and the same
	// expert gets at least GateCollapseWeight of its weight.
	GateCollapseWeight = 0.9
	GateCollapseShare  = 0.95
	// UnusedExpertWeight: a shared expert whose mean weight, averaged over
	// every task's gate, is below this is reported as unused (only for
	// mixtures of 3 or more experts, where 1/experts is well above it).
	UnusedExpertWeight = 0.01
	// SameFunctionCKA: two experts whose outputs on the sample have a
	// linear CKA (centred kernel alignment, Kornblith et al. 2019: 1 for
	// outputs equal up to rotation and scale, invariant to the order of
	// the units) of at least this compute nearly the same function.
	SameFunctionCKA = 0.95
	// DeadExpertVar: an expert whose outputs have a total variance over
	// the sample below this outputs a constant (dead units).
	DeadExpertVar = 1e-8
)

// GateAnalysis is what a model's gates and experts do on a sample of
// validation rows.
type GateAnalysis struct {
	Step  int64    `json:"step"`
	Rows  int      `json:"rows"`
	Tasks []string `json:"tasks"`
	// Candidates are the column names of Weights: the last level's shared
	// experts ("expert k"), then, for cgc and ple, the task's own experts
	// ("own k", a different expert for each task).
	Candidates []string `json:"candidates"`
	// Weights[t][j] is the mean weight task t's gate gives candidate j
	// (NaN where the task's gate has fewer candidates).
	Weights [][]float64 `json:"weights"`
	// TopShare[t] is the share of rows where task t's most-used expert
	// (TopExpert[t]: the one most often given at least GateCollapseWeight,
	// or, when no row reaches it, the one with the largest mean weight)
	// gets at least GateCollapseWeight.
	TopShare  []float64 `json:"top_share"`
	TopExpert []int     `json:"top_expert"`
	// Utilisation[k] is shared expert k's weight averaged over the tasks.
	Utilisation []float64 `json:"utilisation"`
	// Experts are the first level's experts whose outputs were compared,
	// CKA[i][j] their linear CKA and Variance[i] their output variance.
	Experts  []string    `json:"experts"`
	CKA      [][]float64 `json:"cka"`
	Variance []float64   `json:"variance"`
	// Alerts are the problems found, one sentence each.
	Alerts []string `json:"alerts"`
}

// AnalyzeGates runs m on the sample batch b and analyses its gates and
// first-level experts.
func AnalyzeGates(m *mmoe.Model, b *features.Batch) (*GateAnalysis, error) {
	ws := m.NewWorkspace(b.Rows)
	if err := m.Forward(ws, b); err != nil {
		return nil, fmt.Errorf("pipelines: report: forward on the sample: %w", err)
	}
	cfg := m.Config()
	heads := m.Heads()
	a := &GateAnalysis{Rows: b.Rows, Tasks: heads}
	S := cfg.Experts
	maxC := 0
	for t := range heads {
		_, _, n := ws.GateWeights(t)
		maxC = max(maxC, n)
	}
	for j := range maxC {
		if j < S {
			a.Candidates = append(a.Candidates, "expert "+strconv.Itoa(j))
		} else {
			a.Candidates = append(a.Candidates, "own "+strconv.Itoa(j-S))
		}
	}
	if S > 0 {
		a.Utilisation = make([]float64, S)
	}
	for t, task := range heads {
		w, rows, n := ws.GateWeights(t)
		mean := make([]float64, maxC)
		for j := range mean {
			mean[j] = math.NaN()
		}
		counts := make([]int, n)
		for j := range n {
			var s float64
			for r := range rows {
				s += float64(w[r*n+j])
			}
			mean[j] = s / float64(max(rows, 1))
		}
		for r := range rows {
			best := 0
			for j := 1; j < n; j++ {
				if w[r*n+j] > w[r*n+best] {
					best = j
				}
			}
			if w[r*n+best] >= GateCollapseWeight {
				counts[best]++
			}
		}
		top := 0
		for j := range counts {
			if counts[j] > counts[top] {
				top = j
			}
		}
		if counts[top] == 0 { // no row reaches the threshold: the heaviest on average
			for j := range n {
				if mean[j] > mean[top] {
					top = j
				}
			}
		}
		share := float64(counts[top]) / float64(max(rows, 1))
		a.Weights = append(a.Weights, mean)
		a.TopExpert = append(a.TopExpert, top)
		a.TopShare = append(a.TopShare, share)
		for k := range min(S, n) {
			a.Utilisation[k] += mean[k] / float64(len(heads))
		}
		if n > 1 && share >= GateCollapseShare {
			a.Alerts = append(a.Alerts, fmt.Sprintf("gate collapse: task %s's gate gives %s at least %.0f%% of its weight on %.1f%% of the sample's rows (threshold %.0f%%): the task uses one expert", task, a.Candidates[top], 100*GateCollapseWeight, 100*share, 100*GateCollapseShare))
		}
	}
	if S >= 3 && (cfg.Arch == mmoe.ArchMMoE || cfg.Arch == mmoe.ArchOMoE || cfg.Arch == mmoe.ArchCGC || cfg.Arch == mmoe.ArchPLE) {
		for k, u := range a.Utilisation {
			if u < UnusedExpertWeight {
				a.Alerts = append(a.Alerts, fmt.Sprintf("unused expert: expert %d gets %.2f%% of the gates' weight on average (threshold %.0f%%)", k, 100*u, 100*UnusedExpertWeight))
			}
		}
	}
	x, rows, width := ws.Input()
	outs, names, err := firstLevelExperts(m, x, rows, width)
	if err != nil {
		return nil, err
	}
	a.Experts = names
	grams := make([][]float64, len(outs))
	norms := make([]float64, len(outs))
	for i, o := range outs {
		a.Variance = append(a.Variance, centre(o.y, rows, o.h))
		grams[i] = gram(o.y, rows, o.h)
		norms[i] = frob(grams[i])
		if a.Variance[i] < DeadExpertVar {
			a.Alerts = append(a.Alerts, fmt.Sprintf("dead expert: %s outputs a constant on the sample (output variance %.2g)", names[i], a.Variance[i]))
		}
	}
	a.CKA = make([][]float64, len(outs))
	for i := range outs {
		a.CKA[i] = make([]float64, len(outs))
		for j := range outs {
			if i == j {
				a.CKA[i][j] = 1
				continue
			}
			if j < i {
				a.CKA[i][j] = a.CKA[j][i]
				continue
			}
			a.CKA[i][j] = cka(outs[i], outs[j], rows, norms[i], norms[j])
			if a.CKA[i][j] >= SameFunctionCKA {
				a.Alerts = append(a.Alerts, fmt.Sprintf("same function: %s and %s have linear CKA %.3f on the sample (threshold %.2f)", names[i], names[j], a.CKA[i][j], SameFunctionCKA))
			}
		}
	}
	return a, nil
}

type expertOut struct {
	y []float32 // rows x h
	h int
}

var expertLayer = regexp.MustCompile(`^(?:levels\.0\.)?((?:experts\.\d+|task_experts\.[^.]+\.\d+))\.layers\.(\d+)\.(weight|bias)$`)

// firstLevelExperts computes the outputs of the first level's experts
// (they all read the input x) from the model's parameters.
func firstLevelExperts(m *mmoe.Model, x []float32, rows, width int) ([]expertOut, []string, error) {
	type lay struct{ w, b []float32 }
	layers := map[string][]lay{}
	var order []string
	for _, p := range m.Params() {
		mm := expertLayer.FindStringSubmatch(p.Name)
		if mm == nil {
			continue
		}
		name := mm[1]
		l, _ := strconv.Atoi(mm[2])
		if _, ok := layers[name]; !ok {
			order = append(order, name)
		}
		ls := layers[name]
		for len(ls) <= l {
			ls = append(ls, lay{})
		}
		if mm[3] == "weight" {
			ls[l].w = p.Data
		} else {
			ls[l].b = p.Data
		}
		layers[name] = ls
	}
	act := m.Config().Activation
	var outs []expertOut
	for _, name := range order {
		in, inW := x, width
		for li, l := range layers[name] {
			if l.w == nil || l.b == nil || len(l.w) != len(l.b)*inW {
				return nil, nil, fmt.Errorf("pipelines: report: expert %s layer %d: unexpected parameter shapes", name, li)
			}
			out := len(l.b)
			y := make([]float32, rows*out)
			if rows > 0 {
				kernels.Sgemm(false, true, rows, out, inW, 1, in, inW, l.w, inW, 0, y, out)
			}
			for r := range rows {
				row := y[r*out : (r+1)*out]
				for j := range row {
					row[j] = activate(act, row[j]+l.b[j])
				}
			}
			in, inW = y, out
		}
		outs = append(outs, expertOut{y: in, h: inW})
	}
	return outs, order, nil
}

func activate(act string, v float32) float32 {
	switch act {
	case mmoe.ActTanh:
		return float32(math.Tanh(float64(v)))
	case mmoe.ActGELU:
		return float32(0.5 * float64(v) * (1 + math.Erf(float64(v)/math.Sqrt2)))
	default:
		return max(v, 0)
	}
}

// centre subtracts each column's mean and returns the total variance.
func centre(y []float32, rows, h int) float64 {
	var total float64
	for j := range h {
		var s float64
		for r := range rows {
			s += float64(y[r*h+j])
		}
		mean := float32(s / float64(max(rows, 1)))
		var ss float64
		for r := range rows {
			y[r*h+j] -= mean
			ss += float64(y[r*h+j]) * float64(y[r*h+j])
		}
		total += ss / float64(max(rows, 1))
	}
	return total
}

// gram returns YᵀY (h x h).
func gram(y []float32, rows, h int) []float64 {
	g := make([]float64, h*h)
	for r := range rows {
		row := y[r*h : (r+1)*h]
		for i, a := range row {
			for j, b := range row {
				g[i*h+j] += float64(a) * float64(b)
			}
		}
	}
	return g
}

func frob(g []float64) float64 {
	var s float64
	for _, v := range g {
		s += v * v
	}
	return math.Sqrt(s)
}

// cka is linear CKA ‖YaᵀYb‖²_F / (‖YaᵀYa‖_F·‖YbᵀYb‖_F) of centred outputs;
// NaN when either is constant.
func cka(a, b expertOut, rows int, na, nb float64) float64 {
	if na == 0 || nb == 0 {
		return math.NaN()
	}
	c := make([]float64, a.h*b.h)
	for r := range rows {
		ra, rb := a.y[r*a.h:(r+1)*a.h], b.y[r*b.h:(r+1)*b.h]
		for i, x := range ra {
			for j, z := range rb {
				c[i*b.h+j] += float64(x) * float64(z)
			}
		}
	}
	f := frob(c)
	return f * f / (na * nb)
}
