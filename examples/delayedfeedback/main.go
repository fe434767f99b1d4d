// Command delayedfeedback measures the delayed-feedback corrections of the
// three-topic stream (docs/streaming.md, "Delayed conversions") on the
// generated streams.
//
// For each seed it draws the three streams of internal/gen and replays them,
// in log order and in one pass, through ingest/join into the spec's
// features.Transformer and the mtl trainer, as `onestone stream` does. The
// evaluation is progressive (test, then train): every impression of the
// last -eval share of the stream is scored by the model as it is when the
// impression arrives, before the model learns from anything after it, and
// compared with the generator's truth (a click counts within the click
// window, a conversion within the conversion window). Those impressions
// are the held-out slice: no model has seen their labels when it scores
// them, and their scores come from many successive model states, so the
// slice measures the stream's calibration rather than that of one
// snapshot. Four arms train a fresh model each on the same messages:
//
//   - oracle: emit: label, the final labels, late (a clicked impression is
//     trained when it converts or its conversion window closes);
//   - naive: emit: click, every row taken as a final label (no
//     delayed_feedback: the click of a re-sent row counts twice, the fake
//     negatives stay);
//   - resend: emit: click, correction: none (delayed_feedback: resend, the
//     re-sent rows train only the conversion task);
//   - fnw: emit: click, correction: fnw (fake-negative weighting).
//
// It prints, per arm, the medians over the seeds of the CVR AUC on the
// clicked rows of the slice, the CTCVR AUC on all of them, and the
// calibration (mean prediction / mean label) of pCVR on the clicked rows
// and of pCTR and pCTCVR on all rows.
//
//	go run ./examples/delayedfeedback -seeds 5
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest/join"
	"github.com/onestone/onestone/internal/auc"
	"github.com/onestone/onestone/internal/gen"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
	"github.com/onestone/onestone/pipelines"
)

// arm is one way of training on the joined stream.
type arm struct {
	name       string
	emit       string
	correction string
	mode       string // the conversion task's delayed_feedback
}

var arms = []arm{
	{"oracle", join.EmitLabel, join.CorrectionNone, ""},
	{"naive", join.EmitClick, join.CorrectionNone, ""},
	{"resend", join.EmitClick, join.CorrectionNone, mtl.DelayedResend},
	{"fnw", join.EmitClick, join.CorrectionFNW, mtl.DelayedFNW},
}

// result is what one arm reached on one seed's held-out slice.
type result struct {
	Arm       string  `json:"arm"`
	Seed      uint64  `json:"seed"`
	Trained   int64   `json:"trained_rows"`
	CVRAUC    float64 `json:"cvr_auc"` // clicked rows
	CTCVRAUC  float64 `json:"ctcvr_auc"`
	CVRCal    float64 `json:"cvr_calibration"` // mean pCVR / mean conversion, clicked rows
	CTRCal    float64 `json:"ctr_calibration"`
	CTCVRCal  float64 `json:"ctcvr_calibration"`
	HeldOut   int     `json:"held_out"`
	HeldClick int     `json:"held_out_clicks"`
	HeldConv  int     `json:"held_out_conversions"`
}

type options struct {
	impressions    int64
	seeds          int
	users, items   int
	scale, rate    float64
	convWindow     time.Duration
	eval           float64
	workers        int
	armNames       []string
	jsonOut        bool
	stdout, stderr io.Writer
}

func main() {
	o := options{stdout: os.Stdout, stderr: os.Stderr}
	flag.Int64Var(&o.impressions, "impressions", 400_000, "impressions per seed")
	flag.IntVar(&o.seeds, "seeds", 3, "seeds 1..N: each its own world, streams and model initialisation")
	flag.IntVar(&o.users, "users", 5000, "users of the generated world")
	flag.IntVar(&o.items, "items", 5000, "items of the generated world")
	flag.Float64Var(&o.scale, "time-scale", 0.001, "factor on every generated delay and on the windows (the 3 h mean conversion delay becomes 10.8 s)")
	flag.Float64Var(&o.rate, "rate", 250, "impressions per second of event time")
	flag.DurationVar(&o.convWindow, "conversion-window", 24*time.Hour, "the conversion window before -time-scale")
	flag.Float64Var(&o.eval, "eval", 0.5, "share of the impressions (the last ones) scored before training, the held-out slice")
	flag.IntVar(&o.workers, "workers", 0, "trainer goroutines (0: the spec's default)")
	armList := flag.String("arms", "oracle,naive,resend,fnw", "arms to run")
	flag.BoolVar(&o.jsonOut, "json", false, "print every run as JSON lines too")
	flag.Parse()
	o.armNames = strings.Split(*armList, ",")
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "delayedfeedback:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if o.impressions <= 0 || o.seeds <= 0 || !(o.eval > 0 && o.eval <= 1) || !(o.scale > 0) || !(o.rate > 0) || o.convWindow <= 0 {
		return errors.New("want positive -impressions, -seeds, -time-scale, -rate and -conversion-window, and -eval in (0, 1]")
	}
	var todo []arm
	for _, n := range o.armNames {
		i := slices.IndexFunc(arms, func(a arm) bool { return a.name == n })
		if i < 0 {
			return fmt.Errorf("unknown arm %q (want oracle, naive, resend, fnw)", n)
		}
		todo = append(todo, arms[i])
	}
	dir, err := os.MkdirTemp("", "delayedfeedback-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var all []result
	start := time.Now()
	for seed := uint64(1); seed <= uint64(o.seeds); seed++ {
		d, err := draw(o, seed)
		if err != nil {
			return err
		}
		specPath := filepath.Join(dir, fmt.Sprintf("spec-%d.yaml", seed))
		if err := os.WriteFile(specPath, []byte(gen.SpecYAML(o.users, o.items)), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(o.stderr, "seed %d: %d messages, %d held-out impressions (%d clicks, %d conversions)\n",
			seed, len(d.msgs), d.held, d.heldClicks, d.heldConvs)
		for _, a := range todo {
			r, err := d.runArm(ctx, o, a, specPath, seed)
			if err != nil {
				return fmt.Errorf("seed %d, %s: %w", seed, a.name, err)
			}
			fmt.Fprintf(o.stderr, "  %-6s trained %7d rows  cvr auc %.4f  ctcvr auc %.4f  calibration cvr %.3f ctr %.3f ctcvr %.3f  (%v)\n",
				a.name, r.Trained, r.CVRAUC, r.CTCVRAUC, r.CVRCal, r.CTRCal, r.CTCVRCal, time.Since(start).Round(time.Second))
			if o.jsonOut {
				b, _ := json.Marshal(r)
				fmt.Fprintln(o.stdout, string(b))
			}
			all = append(all, *r)
		}
	}
	printTable(o.stdout, o, todo, all)
	return nil
}

// drawn is one seed's streams: the messages in log order, and the true
// labels of the held-out impressions.
type drawn struct {
	msgs []join.Message
	// label is, per message, -1, or for the first copy of a held-out
	// impression its true labels: click + 2 × conversion.
	label                       []int8
	held, heldClicks, heldConvs int
	clickW, convW               time.Duration
}

func scaled(d time.Duration, scale float64) time.Duration {
	return time.Duration(math.Ceil(d.Seconds()*scale*1000)) * time.Millisecond
}

func draw(o options, seed uint64) (*drawn, error) {
	s, err := gen.NewStreams(gen.StreamsConfig{
		Impressions: o.impressions, Users: o.users, Items: o.items, Seed: seed, TaskCorr: 0.5,
		Rate: o.rate, TimeScale: o.scale,
	})
	if err != nil {
		return nil, err
	}
	var evs []gen.StreamEvent
	for {
		ev, ok := s.Next()
		if !ok {
			break
		}
		evs = append(evs, ev)
	}
	truth := s.DrainTruth(nil)
	from := truth[min(len(truth)-1, int(float64(len(truth))*(1-o.eval)))].Time
	d := &drawn{clickW: scaled(gen.MaxClickDelay, o.scale), convW: scaled(o.convWindow, o.scale)}
	labels := map[string]int8{}
	for _, t := range truth {
		if t.Time < from {
			continue
		}
		click := t.Click && t.ClickTime-t.Time <= d.clickW.Milliseconds()
		conv := click && t.Conversion && t.ConversionTime-t.ClickTime <= d.convW.Milliseconds()
		labels[t.ImpressionID] = int8(b2i(click) + 2*b2i(conv))
	}
	var off [3]int64
	var sc struct {
		ID string `json:"impression_id"`
	}
	for _, ev := range evs {
		t := join.Topic(ev.Topic)
		d.msgs = append(d.msgs, join.Message{Topic: t, Partition: 0, Offset: off[t], Key: ev.Key, Value: ev.Value})
		off[t]++
		l := int8(-1)
		if ev.Topic == gen.TopicImpressions && !ev.Duplicate {
			if err := json.Unmarshal(ev.Value, &sc); err != nil {
				return nil, err
			}
			if v, ok := labels[sc.ID]; ok {
				l = v
				d.held++
				d.heldClicks += int(v & 1)
				d.heldConvs += int(v >> 1)
			}
		}
		d.label = append(d.label, l)
	}
	return d, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// runArm trains a fresh model on d.train joined as a says and scores the
// held-out slice.
func (d *drawn) runArm(ctx context.Context, o options, a arm, specPath string, seed uint64) (*result, error) {
	s, err := pipelines.LoadSetup(specPath, func(spec *features.Spec) (*features.Stats, error) { return d.fit(spec) })
	if err != nil {
		return nil, err
	}
	jc := join.Config{ClickWindow: d.clickW, ConversionWindow: d.convW, Emit: a.emit, Correction: a.correction}
	if err := s.SetDelayedFeedback(jc, a.mode); err != nil {
		return nil, err
	}
	s.Model.Seed = seed
	if o.workers > 0 {
		s.Train.Workers = o.workers
	}
	model, err := s.NewModel()
	if err != nil {
		return nil, err
	}
	tr, err := mtl.NewTrainer(model, s.Tasks, s.Train)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	j, err := join.New(jc)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	for t := range 3 {
		if err := j.Assign(join.Topic(t), []int{0}); err != nil {
			return nil, err
		}
	}
	dec, err := features.NewJSONDecoder(s.Spec.Schema(true), features.JSONConfig{})
	if err != nil {
		return nil, err
	}
	defer dec.Release()
	// A fixed processing time: no partition turns idle, so the run is
	// deterministic.
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var out join.Output
	var b, chunk features.Batch
	bs := tr.Config().BatchSize
	res := &result{Arm: a.name, Seed: seed}
	ev, err := newEvaluator(s, model)
	if err != nil {
		return nil, err
	}
	defer ev.dec.Release()
	for lo := 0; lo < len(d.msgs); lo += 4096 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+4096, len(d.msgs))
		// Test: the held-out impressions of these messages, scored before
		// the model learns from anything they bring.
		for i := lo; i < hi; i++ {
			if l := d.label[i]; l >= 0 {
				if err := ev.add(d.msgs[i].Value, l&1, l>>1); err != nil {
					return nil, err
				}
			}
		}
		if err := ev.flush(); err != nil {
			return nil, err
		}
		// Then train on what the join emits.
		out.Reset()
		if err := j.Add(&out, d.msgs[lo:hi], now); err != nil {
			return nil, err
		}
		if len(out.Examples) == 0 {
			continue
		}
		for _, ex := range out.Examples {
			if err := dec.Append(ex.Value); err != nil {
				return nil, fmt.Errorf("joined example %s: %w", ex.Value, err)
			}
		}
		rec := dec.NewRecordBatch()
		err := s.Transformer.TransformTo(&b, rec)
		rec.Release()
		if err != nil {
			return nil, err
		}
		for r := 0; r < b.Rows; r += bs {
			b.SliceTo(&chunk, r, min(r+bs, b.Rows))
			if _, err := tr.Step(&chunk); err != nil {
				return nil, err
			}
		}
		res.Trained += int64(b.Rows)
	}
	return res, ev.result(res)
}

// fit fits the spec's statistics on the impressions before the held-out
// slice (no labels: every arm gets the same statistics).
func (d *drawn) fit(spec *features.Spec) (*features.Stats, error) {
	ft, err := features.NewFitter(spec, features.FitConfig{})
	if err != nil {
		return nil, err
	}
	dec, err := features.NewJSONDecoder(spec.Schema(false), features.JSONConfig{})
	if err != nil {
		return nil, err
	}
	defer dec.Release()
	flush := func() error {
		rec := dec.NewRecordBatch()
		defer rec.Release()
		return ft.Add(rec)
	}
	for i, m := range d.msgs {
		if m.Topic != join.Impressions || d.label[i] >= 0 {
			continue
		}
		if err := dec.Append(m.Value); err != nil {
			return nil, err
		}
		if dec.Len() == 8192 {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return ft.Finish()
}

// evaluator scores held-out impressions with the model as it is and keeps
// the predictions and the true labels.
type evaluator struct {
	s                                 *pipelines.Setup
	model                             *mmoe.Model
	dec                               *features.JSONDecoder
	ws                                *mmoe.Workspace
	b, chunk                          features.Batch
	view, scores                      [][]float32
	ctr, cvr, ctcvr, li, ci           int
	row                               []byte
	pCTR, pCVR, pCTCVR, yClick, yConv []float32
}

func newEvaluator(s *pipelines.Setup, model *mmoe.Model) (*evaluator, error) {
	e := &evaluator{s: s, model: model, ws: model.NewWorkspace(4096), view: make([][]float32, s.Tasks.Len())}
	objs := s.Tasks.Objectives()
	e.ctr, e.cvr, e.ctcvr = slices.Index(objs, "ctr"), slices.Index(objs, "cvr"), slices.Index(objs, "ctcvr")
	if e.ctr < 0 || e.cvr < 0 || e.ctcvr < 0 {
		return nil, fmt.Errorf("the spec's objectives %v lack ctr, cvr or ctcvr", objs)
	}
	labels := s.Transformer.Layout().Labels
	e.li, e.ci = slices.Index(labels, "click"), slices.Index(labels, "conversion")
	if e.li < 0 || e.ci < 0 {
		return nil, fmt.Errorf("the spec's labels %v lack click or conversion", labels)
	}
	var err error
	e.dec, err = features.NewJSONDecoder(s.Spec.Schema(true), features.JSONConfig{})
	return e, err
}

// add queues an impression message with its true labels.
func (e *evaluator) add(v []byte, click, conv int8) error {
	e.row = fmt.Appendf(append(e.row[:0], v[:len(v)-1]...), `,"click":%d,"conversion":%d}`, click, conv)
	if err := e.dec.Append(e.row); err != nil {
		return fmt.Errorf("held-out row %s: %w", e.row, err)
	}
	return nil
}

// flush scores the queued impressions with the model as it is.
func (e *evaluator) flush() error {
	if e.dec.Len() == 0 {
		return nil
	}
	rec := e.dec.NewRecordBatch()
	err := e.s.Transformer.TransformTo(&e.b, rec)
	rec.Release()
	if err != nil {
		return err
	}
	for lo := 0; lo < e.b.Rows; lo += 4096 {
		hi := min(lo+4096, e.b.Rows)
		e.b.SliceTo(&e.chunk, lo, hi)
		if err := e.model.Forward(e.ws, &e.chunk); err != nil {
			return err
		}
		for h := range e.view {
			e.view[h] = e.ws.Logits[h][:hi-lo]
		}
		if e.scores, err = e.s.Tasks.PredictTo(nil, e.view); err != nil {
			return err
		}
		e.pCTR = append(e.pCTR, e.scores[e.ctr]...)
		e.pCVR = append(e.pCVR, e.scores[e.cvr]...)
		e.pCTCVR = append(e.pCTCVR, e.scores[e.ctcvr]...)
		e.yClick = append(e.yClick, e.chunk.Labels[e.li]...)
		e.yConv = append(e.yConv, e.chunk.Labels[e.ci]...)
	}
	return nil
}

// result fills res's metrics.
func (e *evaluator) result(res *result) error {
	var cvrP, cvrY []float32
	for r := range e.yClick {
		if e.yClick[r] == 1 {
			cvrP = append(cvrP, e.pCVR[r])
			cvrY = append(cvrY, e.yConv[r])
		}
	}
	var sc auc.Scratch
	res.CVRAUC = auc.AUC(&sc, cvrP, cvrY, nil)
	res.CTCVRAUC = auc.AUC(&sc, e.pCTCVR, e.yConv, nil)
	res.CVRCal = mean(cvrP) / mean(cvrY)
	res.CTRCal = mean(e.pCTR) / mean(e.yClick)
	res.CTCVRCal = mean(e.pCTCVR) / mean(e.yConv)
	res.HeldOut, res.HeldClick, res.HeldConv = len(e.yClick), len(cvrY), int(mean(e.yConv)*float64(len(e.yConv))+0.5)
	return nil
}

func mean(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v)
	}
	return s / float64(len(x))
}

func median(x []float64) float64 {
	x = slices.Clone(x)
	slices.Sort(x)
	n := len(x)
	if n%2 == 1 {
		return x[n/2]
	}
	return (x[n/2-1] + x[n/2]) / 2
}

// printTable prints the medians over the seeds per arm, as a Markdown table,
// and how much each correction reduces naive's calibration error.
func printTable(w io.Writer, o options, todo []arm, all []result) {
	fmt.Fprintf(w, "\n%d impressions per seed (the last %.0f%% scored before training), %d seeds, time scale %g, %g impressions/s, conversion window %v (%v scaled); medians over the seeds\n\n",
		o.impressions, o.eval*100, o.seeds, o.scale, o.rate, o.convWindow, scaled(o.convWindow, o.scale))
	fmt.Fprintln(w, "| arm | trained rows | CVR AUC (clicked) | CTCVR AUC | pCVR / CVR (clicked) | pCTR / CTR | pCTCVR / CTCVR |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	med := map[string]result{}
	for _, a := range todo {
		var tr, ca, cta, cc, rc, ctc []float64
		for _, r := range all {
			if r.Arm != a.name {
				continue
			}
			tr = append(tr, float64(r.Trained))
			ca = append(ca, r.CVRAUC)
			cta = append(cta, r.CTCVRAUC)
			cc = append(cc, r.CVRCal)
			rc = append(rc, r.CTRCal)
			ctc = append(ctc, r.CTCVRCal)
		}
		m := result{Arm: a.name, Trained: int64(median(tr)), CVRAUC: median(ca), CTCVRAUC: median(cta), CVRCal: median(cc), CTRCal: median(rc), CTCVRCal: median(ctc)}
		med[a.name] = m
		fmt.Fprintf(w, "| %s | %d | %.4f | %.4f | %.3f | %.3f | %.3f |\n", a.name, m.Trained, m.CVRAUC, m.CTCVRAUC, m.CVRCal, m.CTRCal, m.CTCVRCal)
	}
	naive, ok := med["naive"]
	if !ok {
		return
	}
	fmt.Fprintln(w)
	for _, a := range todo {
		if a.name == "naive" || a.name == "oracle" {
			continue
		}
		m := med[a.name]
		fmt.Fprintf(w, "%s vs naive: calibration error |pCVR/CVR - 1| %.3f -> %.3f (%+.0f%%), |pCTCVR/CTCVR - 1| %.3f -> %.3f (%+.0f%%)\n", a.name,
			math.Abs(naive.CVRCal-1), math.Abs(m.CVRCal-1), 100*(math.Abs(m.CVRCal-1)/math.Abs(naive.CVRCal-1)-1),
			math.Abs(naive.CTCVRCal-1), math.Abs(m.CTCVRCal-1), 100*(math.Abs(m.CTCVRCal-1)/math.Abs(naive.CTCVRCal-1)-1))
	}
}
