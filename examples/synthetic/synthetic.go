// Package synthetic generates the synthetic data of the MMoE paper (Ma,
// Zhao, Yi, Chen, Hong & Chi, "Modeling Task Relationships in Multi-task
// Learning with Multi-gate Mixture-of-Experts", KDD 2018, section 4): two
// regression tasks on the same inputs whose correlation is set by a
// parameter p.
//
// With two orthogonal unit vectors u1, u2 in R^d and a scale c,
//
//	w1 = c·u1,  w2 = c·(p·u1 + sqrt(1−p²)·u2)
//	y_i = w_iᵀx + Σ_{j=1..m} sin(α_j·w_iᵀx + β_j) + ε_i
//
// with x ~ N(0, I_d), ε_i ~ N(0, Noise²) and the same α_j, β_j ~ N(0, 1)
// for both tasks. The cosine of w1 and w2 is p; the Pearson correlation
// of the labels falls with p (it is not exactly p because of the sines).
package synthetic

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// Config describes one data set. A zero field takes its default.
type Config struct {
	// Dir receives train.parquet, valid.parquet and spec.yaml. Required.
	Dir string
	// Corr is p, the cosine between the tasks' weight vectors, in [-1, 1].
	Corr float64
	// Dim is d, the number of inputs. Default: 100 (the paper's).
	Dim int
	// Sines is m, the number of sine terms. Default: 10.
	Sines int
	// Scale is c. Default: 1.
	Scale float64
	// Noise is the standard deviation of ε. Default: 0.1 (variance 0.01,
	// the paper's).
	Noise float64
	// TrainRows and ValidRows. Defaults: 20000 and 5000.
	TrainRows, ValidRows int
	// Seed seeds u1, u2, α, β (the task pair) and, with +1, the rows.
	Seed uint64
}

func (c Config) withDefaults() Config {
	if c.Dim == 0 {
		c.Dim = 100
	}
	if c.Sines == 0 {
		c.Sines = 10
	}
	if c.Scale == 0 {
		c.Scale = 1
	}
	if c.Noise == 0 {
		c.Noise = 0.1
	}
	if c.TrainRows == 0 {
		c.TrainRows = 20000
	}
	if c.ValidRows == 0 {
		c.ValidRows = 5000
	}
	return c
}

// Validate checks the configuration after defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Dir == "":
		return fmt.Errorf("synthetic: no output directory")
	case !(c.Corr >= -1 && c.Corr <= 1):
		return fmt.Errorf("synthetic: correlation %v: want [-1, 1]", c.Corr)
	case c.Dim < 2:
		return fmt.Errorf("synthetic: dim %d: want at least 2 (two orthogonal vectors)", c.Dim)
	case c.Sines < 0:
		return fmt.Errorf("synthetic: sines %d < 0", c.Sines)
	case c.Noise < 0 || c.Scale <= 0:
		return fmt.Errorf("synthetic: noise %v must be >= 0 and scale %v > 0", c.Noise, c.Scale)
	case c.TrainRows < 1 || c.ValidRows < 1:
		return fmt.Errorf("synthetic: rows %d/%d: want at least 1 each", c.TrainRows, c.ValidRows)
	}
	return nil
}

// Tasks are the generated tasks' parameters.
type Tasks struct {
	W1, W2       []float64
	Alpha, Beta  []float64
	Noise        float64
	LabelCorr    float64 // Pearson correlation of y1 and y2 on the training rows
	TrainRows    int
	ValidRows    int
	Dim, Sines   int
	Corr, Cosine float64 // p as asked, and the cosine of w1 and w2 as built
}

// NewTasks draws u1, u2 (Gram-Schmidt on two Gaussian vectors), α and β.
func NewTasks(cfg Config) (*Tasks, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5eed))
	d := cfg.Dim
	u1, u2 := make([]float64, d), make([]float64, d)
	for i := range d {
		u1[i], u2[i] = rng.NormFloat64(), rng.NormFloat64()
	}
	normalize(u1)
	dot := dotf(u1, u2)
	for i := range u2 {
		u2[i] -= dot * u1[i]
	}
	normalize(u2)
	p := cfg.Corr
	q := math.Sqrt(1 - p*p)
	t := &Tasks{W1: make([]float64, d), W2: make([]float64, d), Noise: cfg.Noise, Dim: d, Sines: cfg.Sines, Corr: p,
		TrainRows: cfg.TrainRows, ValidRows: cfg.ValidRows}
	for i := range d {
		t.W1[i] = cfg.Scale * u1[i]
		t.W2[i] = cfg.Scale * (p*u1[i] + q*u2[i])
	}
	t.Cosine = dotf(t.W1, t.W2) / math.Sqrt(dotf(t.W1, t.W1)*dotf(t.W2, t.W2))
	for range cfg.Sines {
		t.Alpha = append(t.Alpha, rng.NormFloat64())
		t.Beta = append(t.Beta, rng.NormFloat64())
	}
	return t, nil
}

func dotf(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func normalize(v []float64) {
	n := math.Sqrt(dotf(v, v))
	for i := range v {
		v[i] /= n
	}
}

// Label returns y for weight vector w and input x, with noise e.
func (t *Tasks) Label(w, x []float64, e float64) float64 {
	z := dotf(w, x)
	y := z + e
	for j := range t.Alpha {
		y += math.Sin(t.Alpha[j]*z + t.Beta[j])
	}
	return y
}

// Generate writes cfg.Dir/train.parquet, valid.parquet (columns x0..x{d-1},
// y1, y2, all double) and spec.yaml, and returns the tasks.
func Generate(cfg Config) (*Tasks, error) {
	t, err := NewTasks(cfg)
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("synthetic: %w", err)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed+1, cfg.Seed^0xda7a))
	var y1s, y2s []float64
	for _, part := range []struct {
		name string
		rows int
	}{{"train.parquet", cfg.TrainRows}, {"valid.parquet", cfg.ValidRows}} {
		a, b, err := t.write(filepath.Join(cfg.Dir, part.name), part.rows, rng)
		if err != nil {
			return nil, err
		}
		if y1s == nil {
			y1s, y2s = a, b
		}
	}
	t.LabelCorr = pearson(y1s, y2s)
	if err := os.WriteFile(filepath.Join(cfg.Dir, "spec.yaml"), []byte(Spec(cfg.Dim)), 0o644); err != nil {
		return nil, fmt.Errorf("synthetic: %w", err)
	}
	return t, nil
}

func (t *Tasks) write(path string, rows int, rng *rand.Rand) (y1s, y2s []float64, err error) {
	d := t.Dim
	fields := make([]arrow.Field, 0, d+2)
	for i := range d {
		fields = append(fields, arrow.Field{Name: fmt.Sprintf("x%d", i), Type: arrow.PrimitiveTypes.Float64})
	}
	fields = append(fields, arrow.Field{Name: "y1", Type: arrow.PrimitiveTypes.Float64}, arrow.Field{Name: "y2", Type: arrow.PrimitiveTypes.Float64})
	schema := arrow.NewSchema(fields, nil)
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, fmt.Errorf("synthetic: %w", err)
	}
	defer f.Close()
	w, err := pqarrow.NewFileWriter(schema, f, parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Zstd)), pqarrow.DefaultWriterProps())
	if err != nil {
		return nil, nil, fmt.Errorf("synthetic: %s: %w", path, err)
	}
	bld := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer bld.Release()
	const chunk = 8192
	x := make([]float64, d)
	for lo := 0; lo < rows; lo += chunk {
		n := min(chunk, rows-lo)
		for range n {
			for i := range x {
				x[i] = rng.NormFloat64()
				bld.Field(i).(*array.Float64Builder).Append(x[i])
			}
			y1 := t.Label(t.W1, x, t.Noise*rng.NormFloat64())
			y2 := t.Label(t.W2, x, t.Noise*rng.NormFloat64())
			bld.Field(d).(*array.Float64Builder).Append(y1)
			bld.Field(d + 1).(*array.Float64Builder).Append(y2)
			y1s, y2s = append(y1s, y1), append(y2s, y2)
		}
		rec := bld.NewRecordBatch()
		err := w.Write(rec)
		rec.Release()
		if err != nil {
			w.Close()
			return nil, nil, fmt.Errorf("synthetic: %s: %w", path, err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, nil, fmt.Errorf("synthetic: %s: %w", path, err)
	}
	return y1s, y2s, nil
}

func pearson(a, b []float64) float64 {
	n := float64(len(a))
	var ma, mb float64
	for i := range a {
		ma += a[i]
		mb += b[i]
	}
	ma /= n
	mb /= n
	var sab, saa, sbb float64
	for i := range a {
		sab += (a[i] - ma) * (b[i] - mb)
		saa += (a[i] - ma) * (a[i] - ma)
		sbb += (b[i] - mb) * (b[i] - mb)
	}
	return sab / math.Sqrt(saa*sbb)
}

// Spec returns the feature spec of a data set with d inputs: the inputs
// as numeric fields (already standard normal: no transform), two
// regression tasks, and the example's model and train sections (MMoE with
// 8 experts of 16 units and towers of 8; 20 epochs of Adam at 0.002).
func Spec(d int) string {
	s := "# Synthetic data of the MMoE paper (examples/synthetic).\nfields:\n"
	for i := range d {
		s += fmt.Sprintf("  - {name: x%d, kind: numeric, missing_indicator: false}\n", i)
	}
	s += `tasks:
  - {name: t1, kind: regression, label: y1}
  - {name: t2, kind: regression, label: y2}
model:
  arch: mmoe
  experts: 8
  expert_hidden: [16]
  tower: [8]
  embedding_dim: 1
train:
  batch_size: 128
  epochs: 20
  dense: {lr: 0.002}
`
	return s
}
