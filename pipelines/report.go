package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette/moreland"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// ReportConfig configures a training report.
type ReportConfig struct {
	// Dir receives index.html, the PNG plots and report.json. Required.
	Dir string
	// Valid are the Parquet files the gate sample is read from (the first
	// SampleRows rows); without them the gate and expert sections are
	// left out.
	Valid []string
	// SampleRows is the size of the gate sample. Default: 2048.
	SampleRows int
	// Title heads the page. Default: "onestone training report".
	Title string
	// MaxPoints caps the points of the loss curves (steps are averaged in
	// buckets beyond it). Default: 1000.
	MaxPoints int
}

// Report is a training Observer that records each task's loss and task
// weight over steps and the validation metrics over evaluations, analyses
// the gates and experts on a validation sample at every evaluation, and
// writes an HTML page with PNG plots (Write). It observes batch training
// and streams alike (a stream's evaluations are its progressive metrics at
// each checkpoint). It is not safe for concurrent use; a run calls it from
// its training goroutine.
type Report struct {
	cfg     ReportConfig
	tasks   []string
	kinds   []string
	steps   []int64
	losses  [][]float64 // [task][i]
	weights [][]float64
	evals   []reportEval
	gates   *GateAnalysis
	sample  *features.Batch
	arch    string
	ids     []features.IDTableStats // the exact tables at the last evaluation
}

type reportEval struct {
	Step    int64         `json:"step"`
	Metrics []mtl.Metrics `json:"metrics"`
}

var (
	_ StepObserver = (*Report)(nil)
	_ EvalObserver = (*Report)(nil)
)

// NewReport checks cfg and returns an empty report.
func NewReport(cfg ReportConfig) (*Report, error) {
	if cfg.Dir == "" {
		return nil, errors.New("pipelines: report: no directory")
	}
	if cfg.SampleRows == 0 {
		cfg.SampleRows = 2048
	}
	if cfg.SampleRows < 1 {
		return nil, fmt.Errorf("pipelines: report: sample rows %d < 1", cfg.SampleRows)
	}
	if cfg.MaxPoints == 0 {
		cfg.MaxPoints = 1000
	}
	if cfg.MaxPoints < 2 {
		return nil, fmt.Errorf("pipelines: report: max points %d < 2", cfg.MaxPoints)
	}
	if cfg.Title == "" {
		cfg.Title = "onestone training report"
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("pipelines: report: %w", err)
	}
	return &Report{cfg: cfg}, nil
}

// ObserveStep records the step's per-task losses and task weights.
func (r *Report) ObserveStep(step int64, losses, taskWeights []float64) {
	if r.losses == nil {
		r.losses = make([][]float64, len(losses))
		r.weights = make([][]float64, len(losses))
	}
	r.steps = append(r.steps, step)
	for t := range r.losses {
		r.losses[t] = append(r.losses[t], losses[t])
		w := 1.0
		if t < len(taskWeights) {
			w = taskWeights[t]
		}
		r.weights[t] = append(r.weights[t], w)
	}
}

// ObserveEval records the validation metrics and analyses the gates and
// experts on the validation sample (read on the first call).
func (r *Report) ObserveEval(ctx context.Context, step int64, res *EvalResult, m *mmoe.Model, s *Setup) error {
	r.tasks = m.Heads()
	r.arch = m.Config().Arch
	r.ids = s.Transformer.IDs().Stats()
	r.kinds = r.kinds[:0]
	for i := range r.tasks {
		r.kinds = append(r.kinds, s.Tasks.Task(i).Kind)
	}
	if res != nil {
		r.evals = append(r.evals, reportEval{Step: step, Metrics: append([]mtl.Metrics(nil), res.Metrics...)})
	}
	if len(r.cfg.Valid) == 0 {
		return nil
	}
	if r.sample == nil {
		b, err := readSample(ctx, s, r.cfg.Valid, r.cfg.SampleRows)
		if err != nil {
			return fmt.Errorf("pipelines: report: sample: %w", err)
		}
		r.sample = b
	}
	if r.sample.Rows == 0 {
		return nil
	}
	g, err := AnalyzeGates(m, r.sample)
	if err != nil {
		return err
	}
	g.Step = step
	r.gates = g
	return nil
}

// Gates returns the latest gate analysis (nil before the first
// evaluation with validation data).
func (r *Report) Gates() *GateAnalysis { return r.gates }

// readSample reads and transforms the first n rows of paths.
func readSample(ctx context.Context, s *Setup, paths []string, n int) (*features.Batch, error) {
	src, err := ingest.NewParquetSource(ctx, ingest.ParquetConfig{
		Paths: paths, Columns: s.Spec.Columns(true), BatchSize: n,
		Check: s.Transformer.Checker(), SkipBadRows: true, // a sample for analysis: leave bad rows out
	})
	if err != nil {
		return nil, err
	}
	defer src.Close()
	b := &features.Batch{}
	rec, err := src.Next(ctx)
	if errors.Is(err, io.EOF) {
		return b, nil
	}
	if err != nil {
		return nil, err
	}
	defer rec.Release()
	if err := s.Transformer.TransformTo(b, rec); err != nil {
		return nil, err
	}
	return b, nil
}

// Write writes Dir/index.html, its PNG plots and Dir/report.json (the
// recorded data).
func (r *Report) Write() error {
	page := reportPage{Title: r.cfg.Title, Arch: r.arch, Tasks: r.tasks, Steps: len(r.steps), Gates: r.gates, IDs: r.ids,
		Thresholds: []string{
			fmt.Sprintf("gate collapse: one expert gets ≥ %.0f%% of a gate's weight on ≥ %.0f%% of the sample's rows", 100*GateCollapseWeight, 100*GateCollapseShare),
			fmt.Sprintf("unused expert: mean weight over the tasks' gates < %.0f%% (mixtures of 3+ shared experts)", 100*UnusedExpertWeight),
			fmt.Sprintf("same function: linear CKA of two first-level experts' outputs ≥ %.2f", SameFunctionCKA),
			fmt.Sprintf("dead expert: total output variance < %.0e", DeadExpertVar),
		}}
	if n := len(r.evals); n > 0 {
		page.Final = FormatMetrics(r.evals[n-1].Metrics)
		page.FinalStep = r.evals[n-1].Step
	}
	type plotFn struct {
		file, caption string
		make          func() (*plot.Plot, vg.Length, vg.Length, error)
	}
	plots := []plotFn{
		{"loss.png", "Training loss per task (unweighted, bucket means over steps).", r.lossPlot},
		{"metric.png", "Validation metric per task at each evaluation (AUC for binary tasks, RMSE for regression).", r.metricPlot},
		{"weights.png", "Task weights of the loss over steps (fixed, uncertainty or GradNorm).", r.weightPlot},
	}
	if r.gates != nil {
		plots = append(plots,
			plotFn{"gates.png", fmt.Sprintf("Mean gate weight per task (row) and candidate expert (column) over %d validation rows at step %d.", r.gates.Rows, r.gates.Step), r.gatePlot},
			plotFn{"utilisation.png", "Expert utilisation: each shared expert's weight averaged over the tasks' gates (a uniform gate gives 1/experts each).", r.utilPlot},
			plotFn{"similarity.png", "Linear CKA between the first-level experts' outputs on the sample (1: the same function up to rotation and scale).", r.ckaPlot},
		)
	}
	for _, p := range plots {
		pl, w, h, err := p.make()
		if err != nil {
			return fmt.Errorf("pipelines: report: %s: %w", p.file, err)
		}
		if pl == nil {
			continue
		}
		if err := pl.Save(w, h, filepath.Join(r.cfg.Dir, p.file)); err != nil {
			return fmt.Errorf("pipelines: report: %s: %w", p.file, err)
		}
		page.Images = append(page.Images, reportImage{File: p.file, Caption: p.caption})
	}
	f, err := os.Create(filepath.Join(r.cfg.Dir, "index.html"))
	if err != nil {
		return fmt.Errorf("pipelines: report: %w", err)
	}
	if err := pageTemplate.Execute(f, page); err != nil {
		f.Close()
		return fmt.Errorf("pipelines: report: index.html: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pipelines: report: %w", err)
	}
	data, err := json.MarshalIndent(struct {
		Tasks       []string                `json:"tasks"`
		Evals       []reportEval            `json:"evals"`
		Gates       *GateAnalysis           `json:"gates,omitempty"`
		ExactTables []features.IDTableStats `json:"exact_tables,omitempty"`
	}{r.tasks, r.evals, r.gates, r.ids}, "", "  ")
	if err != nil {
		// NaN (for example an undefined CKA) cannot be JSON: skip the data file.
		return nil
	}
	return os.WriteFile(filepath.Join(r.cfg.Dir, "report.json"), data, 0o644)
}

type reportImage struct{ File, Caption string }

type reportPage struct {
	Title, Arch, Final string
	FinalStep          int64
	Tasks              []string
	Steps              int
	Gates              *GateAnalysis
	Images             []reportImage
	Thresholds         []string
	IDs                []features.IDTableStats
}

var pageTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"mb": func(b int64) float64 { return float64(b) / 1e6 },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body { font-family: sans-serif; margin: 2em; max-width: 1100px; color: #222; }
figure { display: inline-block; margin: 0 1em 1.5em 0; vertical-align: top; max-width: 520px; }
figure img { width: 500px; border: 1px solid #ddd; }
.alert { background: #fde8e8; border-left: 4px solid #c0392b; padding: .5em 1em; margin: .3em 0; }
.ok { background: #e8f6ea; border-left: 4px solid #27ae60; padding: .5em 1em; }
td, th { padding: 2px 8px; text-align: right; } th { background: #eee; }
</style></head><body>
<h1>{{.Title}}</h1>
<p>Architecture <b>{{.Arch}}</b>, tasks {{range $i, $t := .Tasks}}{{if $i}}, {{end}}<b>{{$t}}</b>{{end}}; {{.Steps}} steps recorded.</p>
{{if .Final}}<p>Last validation (step {{.FinalStep}}): <code>{{.Final}}</code></p>{{end}}
<h2>Experts and gates</h2>
{{with .Gates}}{{if .Alerts}}{{range .Alerts}}<div class="alert">⚠ {{.}}</div>{{end}}{{else}}<div class="ok">No expert collapse found on {{.Rows}} validation rows at step {{.Step}}.</div>{{end}}
<table><tr><th>task</th><th>most-used expert</th><th>share of rows with ≥ 90% on it</th></tr>
{{$c := .Candidates}}{{$e := .TopExpert}}{{range $i, $t := .Tasks}}<tr><td>{{$t}}</td><td>{{index $c (index $e $i)}}</td><td>{{printf "%.1f%%" (index $.Gates.TopSharePct $i)}}</td></tr>{{end}}</table>
{{else}}<p>No gate analysis (no validation data).</p>{{end}}
{{if .IDs}}<h2>Exact tables</h2>
<table><tr><th>field</th><th>rows in use</th><th>capacity</th><th>waiting</th><th>admissions</th><th>evictions</th><th>expired</th><th>refused</th><th>ids cut</th><th>map MB</th></tr>
{{range .IDs}}<tr><td>{{.Field}}</td><td>{{.Rows}}</td><td>{{.Capacity}}</td><td>{{.Waiting}}</td><td>{{.Admissions}}</td><td>{{.Evictions}}</td><td>{{.Expired}}</td><td>{{.Rejected}}</td><td>{{.Truncated}}</td><td>{{printf "%.1f" (mb .MapBytes)}}</td></tr>
{{end}}</table>{{end}}
<h2>Plots</h2>
{{range .Images}}<figure><img src="{{.File}}" alt="{{.Caption}}"><figcaption>{{.Caption}}</figcaption></figure>
{{end}}
<h2>Alert thresholds</h2><ul>{{range .Thresholds}}<li>{{.}}</li>{{end}}</ul>
</body></html>
`))

// TopSharePct is TopShare in percent (for the page).
func (g *GateAnalysis) TopSharePct() []float64 {
	out := make([]float64, len(g.TopShare))
	for i, v := range g.TopShare {
		out[i] = 100 * v
	}
	return out
}

// bucket averages ys (over xs) into at most n points.
func bucket(xs []int64, ys []float64, n int) plotter.XYs {
	per := (len(ys) + n - 1) / n
	per = max(per, 1)
	var pts plotter.XYs
	for i := 0; i < len(ys); i += per {
		j := min(i+per, len(ys))
		var sx, sy float64
		for k := i; k < j; k++ {
			sx += float64(xs[k])
			sy += ys[k]
		}
		pts = append(pts, plotter.XY{X: sx / float64(j-i), Y: sy / float64(j-i)})
	}
	return pts
}

func (r *Report) taskName(t int) string {
	if t < len(r.tasks) {
		return r.tasks[t]
	}
	return fmt.Sprintf("task %d", t)
}

func (r *Report) seriesPlot(title, ylabel string, series [][]float64) (*plot.Plot, vg.Length, vg.Length, error) {
	if len(r.steps) == 0 {
		return nil, 0, 0, nil
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "step"
	p.Y.Label.Text = ylabel
	var args []any
	for t, ys := range series {
		args = append(args, r.taskName(t), bucket(r.steps, ys, r.cfg.MaxPoints))
	}
	if err := plotutil.AddLines(p, args...); err != nil {
		return nil, 0, 0, err
	}
	p.Legend.Top = true
	return p, 16 * vg.Centimeter, 10 * vg.Centimeter, nil
}

func (r *Report) lossPlot() (*plot.Plot, vg.Length, vg.Length, error) {
	return r.seriesPlot("Training loss", "loss", r.losses)
}

func (r *Report) weightPlot() (*plot.Plot, vg.Length, vg.Length, error) {
	return r.seriesPlot("Task weights", "weight", r.weights)
}

func (r *Report) metricPlot() (*plot.Plot, vg.Length, vg.Length, error) {
	if len(r.evals) == 0 {
		return nil, 0, 0, nil
	}
	p := plot.New()
	p.Title.Text = "Validation"
	p.X.Label.Text = "step"
	p.Y.Label.Text = "AUC (binary) / RMSE (regression)"
	var args []any
	for t := range r.evals[0].Metrics {
		var pts plotter.XYs
		name := r.evals[0].Metrics[t].Objective
		for _, e := range r.evals {
			if t >= len(e.Metrics) {
				continue
			}
			m := e.Metrics[t]
			v := m.AUC
			if m.Kind == mtl.KindRegression {
				v = m.RMSE
				name = m.Objective + " rmse"
			}
			if !math.IsNaN(v) {
				pts = append(pts, plotter.XY{X: float64(e.Step), Y: v})
			}
		}
		if len(pts) > 0 {
			args = append(args, name, pts)
		}
	}
	if len(args) == 0 {
		return nil, 0, 0, nil
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return nil, 0, 0, err
	}
	p.Legend.Top = true
	p.Legend.Left = true
	return p, 16 * vg.Centimeter, 10 * vg.Centimeter, nil
}

// grid is a heat map's values, [row][col], rows drawn top to bottom.
type grid struct {
	z        [][]float64
	min, max float64
}

func (g grid) Dims() (c, r int)   { return len(g.z[0]), len(g.z) }
func (g grid) Z(c, r int) float64 { return g.z[len(g.z)-1-r][c] }
func (g grid) X(c int) float64    { return float64(c) }
func (g grid) Y(r int) float64    { return float64(r) }
func (g grid) Min() float64       { return g.min }
func (g grid) Max() float64       { return g.max }

// heat draws z with its values written in the cells.
func heat(title string, z [][]float64, rowNames, colNames []string, lo, hi float64) (*plot.Plot, vg.Length, vg.Length, error) {
	if len(z) == 0 || len(z[0]) == 0 {
		return nil, 0, 0, nil
	}
	pal := moreland.SmoothBlueRed()
	pal.SetMin(lo)
	pal.SetMax(hi)
	hm := plotter.NewHeatMap(grid{z: z, min: lo, max: hi}, pal.Palette(64))
	hm.NaN = color.Gray{Y: 230}
	p := plot.New()
	p.Title.Text = title
	p.Add(hm)
	var labels plotter.XYLabels
	for r, row := range z {
		for c, v := range row {
			if math.IsNaN(v) {
				continue
			}
			labels.XYs = append(labels.XYs, plotter.XY{X: float64(c), Y: float64(len(z) - 1 - r)})
			labels.Labels = append(labels.Labels, fmt.Sprintf("%.2f", v))
		}
	}
	if len(labels.XYs) <= 200 {
		l, err := plotter.NewLabels(labels)
		if err != nil {
			return nil, 0, 0, err
		}
		for i := range l.TextStyle {
			l.TextStyle[i].XAlign = -0.5
			l.TextStyle[i].YAlign = -0.5
		}
		p.Add(l)
	}
	var xt, yt []plot.Tick
	for c, n := range colNames {
		xt = append(xt, plot.Tick{Value: float64(c), Label: n})
	}
	for r, n := range rowNames {
		yt = append(yt, plot.Tick{Value: float64(len(z) - 1 - r), Label: n})
	}
	p.X.Tick.Marker = plot.ConstantTicks(xt)
	p.Y.Tick.Marker = plot.ConstantTicks(yt)
	p.X.Tick.Label.Rotation = math.Pi / 4
	p.X.Tick.Label.XAlign = -1
	w := vg.Length(max(10, 2+1.6*float64(len(colNames)))) * vg.Centimeter
	h := vg.Length(max(6, 3+1.2*float64(len(rowNames)))) * vg.Centimeter
	return p, w, h, nil
}

func (r *Report) gatePlot() (*plot.Plot, vg.Length, vg.Length, error) {
	g := r.gates
	return heat("Mean gate weight (task × expert)", g.Weights, g.Tasks, g.Candidates, 0, 1)
}

func (r *Report) ckaPlot() (*plot.Plot, vg.Length, vg.Length, error) {
	g := r.gates
	if len(g.Experts) < 2 {
		return nil, 0, 0, nil
	}
	return heat("Expert similarity (linear CKA)", g.CKA, g.Experts, g.Experts, 0, 1)
}

func (r *Report) utilPlot() (*plot.Plot, vg.Length, vg.Length, error) {
	g := r.gates
	if len(g.Utilisation) < 2 {
		return nil, 0, 0, nil
	}
	p := plot.New()
	p.Title.Text = "Expert utilisation"
	p.Y.Label.Text = "mean gate weight"
	bars, err := plotter.NewBarChart(plotter.Values(g.Utilisation), vg.Points(18))
	if err != nil {
		return nil, 0, 0, err
	}
	bars.Color = color.RGBA{R: 52, G: 101, B: 164, A: 255}
	p.Add(bars)
	uniform := 1 / float64(len(g.Utilisation))
	line, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: uniform}, {X: float64(len(g.Utilisation)) - 0.5, Y: uniform}})
	if err != nil {
		return nil, 0, 0, err
	}
	line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(line)
	p.Legend.Add("uniform 1/experts", line)
	p.Legend.Top = true
	p.Legend.Left = true
	var names []string
	for k := range g.Utilisation {
		names = append(names, fmt.Sprintf("expert %d", k))
	}
	p.NominalX(names...)
	return p, vg.Length(max(10, 2+1.5*float64(len(names)))) * vg.Centimeter, 9 * vg.Centimeter, nil
}
