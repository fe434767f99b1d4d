package mtl

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/onestone/onestone/internal/auc"
)

// Metrics are the evaluation figures of one objective over a set of rows.
// Figures that are undefined are NaN (AUC when all rows have one class,
// GAUC when no group has both classes, calibration when the mean label is
// 0, and the classification figures of a regression objective); JSON
// encodes NaN and infinities as null.
type Metrics struct {
	Objective string  `json:"objective"`
	Kind      string  `json:"kind"`       // KindBinary or KindRegression
	Count     int64   `json:"count"`      // rows
	WeightSum float64 `json:"weight_sum"` // Σ sample weights
	// AUC is the exact ROC AUC: the weighted probability that a positive
	// row scores above a negative one, ties counting one half.
	AUC float64 `json:"auc"`
	// GAUC is the mean of per-group AUCs weighted by the groups' weight
	// sums, over the groups that hold both classes.
	GAUC float64 `json:"gauc"`
	// GAUCGroups is the number of groups that entered GAUC.
	GAUCGroups int `json:"gauc_groups"`
	// LogLoss is the weighted mean logloss, predictions clamped to
	// [1e-7, 1 − 1e-7] (the resolution of float32 near 1).
	LogLoss        float64 `json:"logloss"`
	MeanPrediction float64 `json:"mean_prediction"`
	MeanLabel      float64 `json:"mean_label"`
	// Calibration is MeanPrediction / MeanLabel (1 is calibrated).
	Calibration float64 `json:"calibration"`
	// RMSE is the root of the weighted mean squared error.
	RMSE float64 `json:"rmse"`
}

// jsonFloat encodes NaN and ±Inf as null.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(f))
}

func (f *jsonFloat) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = jsonFloat(math.NaN())
		return nil
	}
	return json.Unmarshal(b, (*float64)(f))
}

type metricsJSON struct {
	Objective      string    `json:"objective"`
	Kind           string    `json:"kind"`
	Count          int64     `json:"count"`
	WeightSum      jsonFloat `json:"weight_sum"`
	AUC            jsonFloat `json:"auc"`
	GAUC           jsonFloat `json:"gauc"`
	GAUCGroups     int       `json:"gauc_groups"`
	LogLoss        jsonFloat `json:"logloss"`
	MeanPrediction jsonFloat `json:"mean_prediction"`
	MeanLabel      jsonFloat `json:"mean_label"`
	Calibration    jsonFloat `json:"calibration"`
	RMSE           jsonFloat `json:"rmse"`
}

// MarshalJSON encodes m with NaN and infinities as null.
func (m Metrics) MarshalJSON() ([]byte, error) {
	return json.Marshal(metricsJSON{m.Objective, m.Kind, m.Count, jsonFloat(m.WeightSum), jsonFloat(m.AUC), jsonFloat(m.GAUC), m.GAUCGroups,
		jsonFloat(m.LogLoss), jsonFloat(m.MeanPrediction), jsonFloat(m.MeanLabel), jsonFloat(m.Calibration), jsonFloat(m.RMSE)})
}

// UnmarshalJSON decodes m, null giving NaN.
func (m *Metrics) UnmarshalJSON(b []byte) error {
	var j metricsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("mtl: metrics: %w", err)
	}
	*m = Metrics{j.Objective, j.Kind, j.Count, float64(j.WeightSum), float64(j.AUC), float64(j.GAUC), j.GAUCGroups,
		float64(j.LogLoss), float64(j.MeanPrediction), float64(j.MeanLabel), float64(j.Calibration), float64(j.RMSE)}
	return nil
}

// AccumulatorConfig configures an Accumulator. A zero field takes its
// default.
type AccumulatorConfig struct {
	// Objective names the objective in the Metrics.
	Objective string
	// Kind is KindBinary (AUC, GAUC, logloss, calibration and RMSE of the
	// probabilities) or KindRegression (RMSE, means and calibration).
	// Default: "binary".
	Kind string
	// Capacity is the number of rows preallocated. Default: 4096 (the
	// window size when Window > 0).
	Capacity int
	// Window, when > 0, keeps only the last Window rows (progressive
	// test-then-train evaluation over a stream). Default: 0 (every row
	// since the last Reset, e.g. an epoch).
	Window int
}

// Validate checks the configuration.
func (c AccumulatorConfig) Validate() error {
	switch c.Kind {
	case "", KindBinary, KindRegression:
	default:
		return fmt.Errorf("mtl: accumulator %q: kind %q: want binary or regression: %w", c.Objective, c.Kind, ErrConfig)
	}
	if c.Capacity < 0 || c.Window < 0 {
		return fmt.Errorf("mtl: accumulator %q: capacity %d, window %d: want >= 0: %w", c.Objective, c.Capacity, c.Window, ErrConfig)
	}
	return nil
}

// Accumulator collects (prediction, label, group, weight) rows of one
// objective and computes its Metrics exactly, accumulating in float64. Its
// storage grows by doubling (or is a fixed ring of Window rows) and its sort
// scratch is reused, so steady-state Add, AddBatch and Compute allocate
// nothing. Memory: 20 bytes per stored row plus 32 bytes per row of sort
// scratch. An Accumulator is not safe for concurrent use.
type Accumulator struct {
	cfg       AccumulatorConfig
	preds     []float32
	labels    []float32
	weights   []float32
	groups    []uint64
	hasGroups bool
	next      int   // ring position when windowed
	total     int64 // rows ever added since Reset
	s         auc.Scratch
}

// NewAccumulator returns an empty accumulator.
func NewAccumulator(cfg AccumulatorConfig) (*Accumulator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Kind == "" {
		cfg.Kind = KindBinary
	}
	c := cfg.Capacity
	if cfg.Window > 0 {
		c = cfg.Window
	} else if c == 0 {
		c = 4096
	}
	return &Accumulator{cfg: cfg,
		preds: make([]float32, 0, c), labels: make([]float32, 0, c),
		weights: make([]float32, 0, c), groups: make([]uint64, 0, c)}, nil
}

// Len is the number of rows held (at most Window when windowed).
func (a *Accumulator) Len() int { return len(a.preds) }

// Reset forgets every row, keeping the storage.
func (a *Accumulator) Reset() {
	a.preds, a.labels, a.weights, a.groups = a.preds[:0], a.labels[:0], a.weights[:0], a.groups[:0]
	a.hasGroups, a.next, a.total = false, 0, 0
}

// Add records one row. weight is the sample weight (1 when the data has
// none); group is the GAUC group key. GAUC is computed only when some row
// had a non-zero group or an AddBatch call passed groups; otherwise it is
// NaN. When windowed and full, the oldest row is replaced.
func (a *Accumulator) Add(pred, label float32, group uint64, weight float32) {
	a.hasGroups = a.hasGroups || group != 0
	a.total++
	if w := a.cfg.Window; w > 0 && len(a.preds) == w {
		i := a.next
		a.preds[i], a.labels[i], a.groups[i], a.weights[i] = pred, label, group, weight
		a.next = (i + 1) % w
		return
	}
	a.preds = append(a.preds, pred)
	a.labels = append(a.labels, label)
	a.groups = append(a.groups, group)
	a.weights = append(a.weights, weight)
}

// AddBatch records the rows of a batch. mask, groups and weights may be
// nil (all rows, no groups, all weights 1); with a mask only the rows whose
// mask is >= 0.5 are recorded (for a conditional objective such as CVR,
// the mask is the click label).
func (a *Accumulator) AddBatch(preds, labels, mask []float32, groups []uint64, weights []float32) error {
	n := len(preds)
	if len(labels) != n || (mask != nil && len(mask) != n) || (groups != nil && len(groups) != n) || (weights != nil && len(weights) != n) {
		return fmt.Errorf("mtl: accumulator %q: %d predictions, %d labels, %d mask, %d groups, %d weights: %w", a.cfg.Objective, n, len(labels), len(mask), len(groups), len(weights), ErrShape)
	}
	for r := range n {
		if mask != nil && !(mask[r] >= 0.5) {
			continue
		}
		var g uint64
		if groups != nil {
			g = groups[r]
		}
		w := float32(1)
		if weights != nil {
			w = weights[r]
		}
		a.Add(preds[r], labels[r], g, w)
	}
	if groups != nil {
		a.hasGroups = true
	}
	return nil
}

// Compute returns the metrics of the rows held. It fails, naming the row
// (its slot in the accumulator's storage), on a non-finite prediction,
// a negative or non-finite weight, or for binary objectives a label outside
// [0, 1]. GAUC is NaN when no groups were given.
func (a *Accumulator) Compute() (Metrics, error) {
	m, err := computeMetrics(&a.s, a.cfg.Kind, a.preds, a.labels, a.weights, a.groupsOrNil())
	m.Objective = a.cfg.Objective
	if err != nil {
		return m, fmt.Errorf("mtl: objective %q: %w", a.cfg.Objective, err)
	}
	return m, nil
}

func (a *Accumulator) groupsOrNil() []uint64 {
	if !a.hasGroups {
		return nil
	}
	return a.groups
}

func computeMetrics(s *auc.Scratch, kind string, p, y, w []float32, g []uint64) (Metrics, error) {
	nan := math.NaN()
	m := Metrics{Kind: kind, Count: int64(len(p)), AUC: nan, GAUC: nan, LogLoss: nan, MeanPrediction: nan, MeanLabel: nan, Calibration: nan, RMSE: nan}
	var W, sp, sy, sll, sse float64
	for r := range p {
		pr, yr, wr := float64(p[r]), float64(y[r]), float64(w[r])
		if math.IsNaN(pr) || math.IsInf(pr, 0) {
			return m, fmt.Errorf("prediction %v at row %d: %w", pr, r, ErrNonFinite)
		}
		if !(wr >= 0) || math.IsInf(wr, 0) {
			return m, fmt.Errorf("weight %v at row %d: want finite and >= 0: %w", wr, r, ErrLabel)
		}
		if kind == KindBinary && !(yr >= 0 && yr <= 1) {
			return m, fmt.Errorf("label %v at row %d: want [0, 1]: %w", yr, r, ErrLabel)
		}
		if math.IsNaN(yr) || math.IsInf(yr, 0) {
			return m, fmt.Errorf("label %v at row %d: %w", yr, r, ErrLabel)
		}
		W += wr
		sp += wr * pr
		sy += wr * yr
		e := pr - yr
		sse += wr * e * e
		if kind == KindBinary {
			pc := min(max(pr, 1e-7), 1-1e-7)
			sll += wr * (-yr*math.Log(pc) - (1-yr)*math.Log1p(-pc))
		}
	}
	m.WeightSum = W
	if W == 0 {
		return m, nil
	}
	m.MeanPrediction, m.MeanLabel = sp/W, sy/W
	if sy != 0 {
		m.Calibration = sp / sy
	}
	m.RMSE = math.Sqrt(sse / W)
	if kind != KindBinary {
		return m, nil
	}
	m.LogLoss = sll / W
	m.AUC, m.GAUC, m.GAUCGroups = auc.AUCAndGAUC(s, p, y, w, g)
	return m, nil
}

// The functions below take slices of equal length (they panic otherwise,
// as a shape bug) and are safe for concurrent use.

// AUC returns the exact weighted ROC AUC of predictions against labels in
// [0, 1] (ties count one half), or NaN when all rows have one class.
// weights may be nil (all 1). It allocates its sort scratch; use an
// Accumulator to reuse it.
func AUC(preds, labels, weights []float32) float64 {
	return auc.AUC(nil, preds, labels, weights)
}

// GAUC returns the group AUC: per-group AUCs averaged with the groups'
// weight sums as weights, skipping groups with a single class, and the
// number of groups used. NaN when no group has both classes or groups is
// nil.
func GAUC(preds, labels []float32, groups []uint64, weights []float32) (float64, int) {
	_, gauc, used := auc.AUCAndGAUC(nil, preds, labels, weights, groups)
	return gauc, used
}

// LogLoss returns the weighted mean logloss of probabilities against
// labels, predictions clamped to [1e-7, 1 − 1e-7]. weights may be nil.
func LogLoss(preds, labels, weights []float32) float64 {
	w := ones(weights, len(preds))
	var sum, W float64
	for r, p := range preds {
		pc := min(max(float64(p), 1e-7), 1-1e-7)
		y := float64(labels[r])
		sum += float64(w[r]) * (-y*math.Log(pc) - (1-y)*math.Log1p(-pc))
		W += float64(w[r])
	}
	return sum / W
}

// RMSE returns the root of the weighted mean squared error.
func RMSE(preds, labels, weights []float32) float64 {
	w := ones(weights, len(preds))
	var sum, W float64
	for r, p := range preds {
		e := float64(p) - float64(labels[r])
		sum += float64(w[r]) * e * e
		W += float64(w[r])
	}
	return math.Sqrt(sum / W)
}

// Calibration returns the weighted mean prediction over the weighted mean
// label (1 is calibrated; NaN when the labels sum to 0).
func Calibration(preds, labels, weights []float32) float64 {
	w := ones(weights, len(preds))
	var sp, sy float64
	for r, p := range preds {
		sp += float64(w[r]) * float64(p)
		sy += float64(w[r]) * float64(labels[r])
	}
	if sy == 0 {
		return math.NaN()
	}
	return sp / sy
}

func ones(w []float32, n int) []float32 {
	if w != nil {
		return w
	}
	o := make([]float32, n)
	for i := range o {
		o[i] = 1
	}
	return o
}
