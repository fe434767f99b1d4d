package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
	"github.com/onestone/onestone/serving"
)

// ErrSpecMismatch is returned when resuming from a checkpoint whose spec or
// model configuration differs from the one given.
var ErrSpecMismatch = errors.New("pipelines: checkpoint was trained with another spec")

// ErrSpecColumns is wrapped when a task's label or mask column is not in
// the training data; the run is refused before it trains.
var ErrSpecColumns = errors.New("pipelines: a task's column is not in the data")

// TrainBatchConfig configures TrainBatch. Zero fields take the spec's
// train: section values or the documented defaults.
type TrainBatchConfig struct {
	SpecPath string   // feature spec (with model: and train: sections)
	Data     []string // training Parquet files or globs
	Valid    []string // validation Parquet files or globs (optional)
	// Out is the output root: bundles in Out/vNNNNNNNN, checkpoints in
	// Out/checkpoints. It may be an object store URL
	// (bundle.OpenStore): bundles are then published there, and the
	// checkpoints go to the local directory Checkpoints.
	Out string
	// Checkpoints is the local directory of the checkpoints. Default:
	// Out/checkpoints; required when Out is an object store URL.
	Checkpoints string
	Resume      bool // continue from the newest checkpoint

	Epochs    int   // overrides train.epochs
	BatchSize int   // overrides train.batch_size
	Workers   int   // overrides train.workers
	EvalEvery int   // overrides train.eval_every (steps)
	MaxSteps  int64 // stop after this many steps in all. Default: 0 (no limit)
	// EvalLimit caps the validation rows of the periodic evaluations (the
	// final evaluation uses all). Default: 0 (all).
	EvalLimit int64
	// KeepCheckpoints is how many checkpoints to keep. Default: 2.
	KeepCheckpoints int

	// InitFrom warm-starts every parameter whose name and shape match from
	// the bundle at this path (for example trained experts under a new
	// task head); the bundle must have the same feature fields.
	InitFrom string
	// FreezeShared keeps the warm-started shared part (embeddings, shared
	// experts and gates) fixed; it needs InitFrom.
	FreezeShared bool
	// SkipBadRows leaves out the rows training cannot use (a label outside
	// its domain, a bad weight, a value beyond float32: see
	// features.RowError) of the training and validation data, and of the
	// fit when the spec has no statistics; it counts them
	// (TrainResult.BadRows) and prints the first ones. Without it the first
	// such row stops the run with an error naming its file, row group, row
	// and column (an *ingest.BadRow). Default: false.
	SkipBadRows bool
	// Observers watch the run (see Observer): a Report, a Journal, or any
	// value implementing some of the hook interfaces.
	Observers []Observer
	// Limits bound the memory of the bundles and checkpoints read
	// (Resume, InitFrom). Default: bundle.DefaultMaxBytes().
	Limits bundle.Limits

	// Progress receives a progress line every ProgressEvery (nil: none).
	Progress      io.Writer
	ProgressEvery time.Duration // Default: 1s
	Allocator     memory.Allocator
}

// TrainResult summarises a training run.
type TrainResult struct {
	Bundle         string      `json:"bundle"` // the published best bundle
	Steps          int64       `json:"steps"`
	Examples       int64       `json:"examples"`
	Seconds        float64     `json:"seconds"`
	ExamplesPerSec float64     `json:"examples_per_sec"`
	Best           *EvalResult `json:"best,omitempty"`
	Final          *EvalResult `json:"final,omitempty"`
	// BadRows counts, by fault, the training rows SkipBadRows left out in
	// the first pass of this run over the data.
	BadRows map[string]int64 `json:"bad_rows,omitempty"`
	// ExactTables are the figures of the exact tables at the end (none
	// without exact fields).
	ExactTables []features.IDTableStats `json:"exact_tables,omitempty"`
}

// trainRun is the state of one TrainBatch call.
type trainRun struct {
	cfg      TrainBatchConfig
	out      bundle.Store // where bundles are published (cfg.Out)
	cks      *bundle.Dir  // where checkpoints go
	s        *Setup
	model    *mmoe.Model
	trainer  *mtl.Trainer
	epoch    int
	pos      ingest.Position
	examples int64
	bestKey  float64
	best     string
	bestRes  *EvalResult
	lastEval *EvalResult

	sampleEvents []json.RawMessage
	prog         *progress
	obs          observers
	badRows      map[string]int64
	firstEpoch   int // the epoch this run started in; bad rows are counted in it
	// ckFiles, when set, gives more files for each checkpoint (a
	// stream's join state), written with it.
	ckFiles func() []bundle.File
}

// TrainBatch trains the spec's model on Parquet data: epochs over the
// training files in order, a validation pass every EvalEvery steps and at
// the end of each epoch, a checkpoint at each evaluation (and when ctx is
// cancelled), and the best model by validation score published as a bundle
// under Out (with Out/latest pointing at it). Without validation data the
// last model is published. On cancellation it writes a checkpoint and
// returns ctx's error; Resume continues from it.
func TrainBatch(ctx context.Context, cfg TrainBatchConfig) (*TrainResult, error) {
	if cfg.Out == "" {
		return nil, errors.New("pipelines: train: no output directory")
	}
	if len(cfg.Data) == 0 {
		return nil, errors.New("pipelines: train: no training data")
	}
	out, cks, err := openOutput(ctx, cfg.Out, cfg.Checkpoints)
	if err != nil {
		return nil, err
	}
	defer closeStore(out)
	if cfg.ProgressEvery == 0 {
		cfg.ProgressEvery = time.Second
	}
	if cfg.KeepCheckpoints == 0 {
		cfg.KeepCheckpoints = 2
	}
	s, err := LoadSetup(cfg.SpecPath, fitForTraining(ctx, cfg.Data, cfg.Allocator, cfg.SkipBadRows, cfg.Progress))
	if err != nil {
		return nil, err
	}
	if err := checkTaskColumns(s.Spec, cfg.Data); err != nil {
		return nil, err
	}
	if cfg.Epochs > 0 {
		s.Train.Epochs = cfg.Epochs
	}
	if cfg.BatchSize > 0 {
		s.Train.BatchSize = cfg.BatchSize
	}
	if cfg.Workers > 0 {
		s.Train.Workers = cfg.Workers
	}
	if cfg.EvalEvery > 0 {
		s.Train.EvalEvery = cfg.EvalEvery
	}
	r := &trainRun{cfg: cfg, s: s, out: out, cks: cks, bestKey: math.Inf(-1), obs: cfg.Observers}
	if err := r.newModel(); err != nil {
		return nil, err
	}
	defer r.trainer.Close()
	if cfg.FreezeShared && cfg.InitFrom == "" {
		return nil, errors.New("pipelines: train: freezing the shared part needs --init-from")
	}
	start := Start{Time: time.Now()}
	if cfg.Resume {
		if start.Resumed, err = r.resume(); err != nil {
			return nil, err
		}
	} else if cfg.InitFrom != "" {
		if err := r.initFrom(cfg.InitFrom); err != nil {
			return nil, err
		}
	}
	start.Position, start.Steps, start.Examples = clonePosition(r.pos), r.trainer.Steps(), r.examples
	if err := r.obs.start(start); err != nil {
		return nil, err
	}
	return r.run(ctx)
}

// openOutput opens the output store at out (a local root or an object
// store URL) and the checkpoint directory (checkpoints, else
// out/checkpoints), and checks that both can be written: a local root is
// created, durably (the directory holding each new directory is
// fsynced), and a bucket listed, so that a run fails before it trains
// rather than at its first checkpoint. The caller closes the store
// (closeStore).
func openOutput(ctx context.Context, out, checkpoints string) (bundle.Store, *bundle.Dir, error) {
	var cks *bundle.Dir
	switch {
	case checkpoints != "":
		cks = bundle.NewDir(checkpoints)
	case bundle.IsURL(out):
		return nil, nil, fmt.Errorf("pipelines: output %s is an object store: the checkpoints need a local directory (--checkpoints)", out)
	default:
		cks = bundle.Checkpoints(out)
	}
	s, err := bundle.OpenStore(ctx, out)
	if err != nil {
		return nil, nil, fmt.Errorf("pipelines: output: %w", err)
	}
	switch s := s.(type) {
	case *bundle.Dir:
		err = s.Init()
	case *bundle.Bucket:
		err = s.Init(ctx)
	}
	if err == nil {
		err = cks.Init()
	}
	if err != nil {
		closeStore(s)
		return nil, nil, fmt.Errorf("pipelines: output: %w", err)
	}
	return s, cks, nil
}

// closeStore closes s when it holds resources (a Bucket).
func closeStore(s bundle.Store) {
	if c, ok := s.(interface{ Close() error }); ok {
		c.Close()
	}
}

// newModel builds the run's fresh model and its trainer, which admits the
// ids of the exact tables of the transform (mtl.Trainer.SetIDTables).
func (r *trainRun) newModel() error {
	var err error
	if r.model, err = r.s.NewModel(); err != nil {
		return err
	}
	if r.trainer, err = mtl.NewTrainer(r.model, r.s.Tasks, r.s.Train); err != nil {
		return err
	}
	if r.ids().Len() > 0 {
		if err := r.trainer.SetIDTables(r.ids()); err != nil {
			r.trainer.Close()
			return err
		}
	}
	return nil
}

// ids are the exact tables the run trains: the transform's.
func (r *trainRun) ids() *features.IDTables { return r.s.Transformer.IDs() }

func (r *trainRun) run(ctx context.Context) (*TrainResult, error) {
	s, tr := r.s, r.trainer
	start := time.Now()
	startExamples := r.examples
	prog := newProgress(r.cfg.Progress, r.cfg.ProgressEvery, s.Tasks, r.ids())
	r.prog = prog
	r.firstEpoch = r.epoch
	stopped := false
	for r.epoch < s.Train.Epochs {
		pf := newPrefetcher()
		src, err := ingest.NewParquetSource(ctx, ingest.ParquetConfig{
			Paths: r.cfg.Data, Columns: s.Spec.Columns(true), BatchSize: s.Train.BatchSize,
			Allocator: r.cfg.Allocator, Start: r.pos,
			Check: s.Transformer.Checker(), SkipBadRows: r.cfg.SkipBadRows, OnBadRow: pf.badRow,
			Dictionary:   true, // the transform hashes each string value once
			ReuseBuffers: true, // the transform copies what it reads
		})
		if err != nil {
			return nil, err
		}
		pf.start(ctx, src, s.Transformer)
		stopped, err = r.epochLoop(ctx, pf, prog)
		pf.close()
		src.Close()
		if err != nil {
			return nil, err
		}
		if stopped {
			break
		}
		r.epoch++
		r.pos = ingest.Position{}
		if r.epoch < s.Train.Epochs {
			// A checkpoint at each epoch's end, positioned at the next epoch.
			if err := r.evaluateAndCheckpoint(ctx, r.cfg.EvalLimit); err != nil {
				return nil, err
			}
		}
	}
	prog.done()
	if n := sumCounts(r.badRows); n > 0 && r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "left out %d bad training rows (%s)\n", n, formatCounts(r.badRows))
	}
	elapsed := time.Since(start).Seconds()
	res := &TrainResult{Steps: tr.Steps(), Examples: r.examples, Seconds: elapsed, BadRows: r.badRows}
	if elapsed > 0 {
		res.ExamplesPerSec = float64(r.examples-startExamples) / elapsed
	}
	// The final evaluation uses all the validation data.
	if err := r.evaluateAndCheckpoint(ctx, 0); err != nil {
		return nil, err
	}
	res.Final = r.lastEval
	res.Best = r.bestRes
	res.ExactTables = r.ids().Stats()
	res.Bundle = r.best
	return res, nil
}

// epochLoop trains on the batches of pf until its source is exhausted
// (false) or MaxSteps is reached (true). pf reads and transforms the next
// batch while the trainer steps on the current one.
func (r *trainRun) epochLoop(ctx context.Context, pf *prefetcher, prog *progress) (bool, error) {
	tr := r.trainer
	for {
		if r.cfg.MaxSteps > 0 && tr.Steps() >= r.cfg.MaxSteps {
			return true, nil
		}
		p := pf.next()
		for _, b := range p.bad {
			r.badRow(b)
		}
		if errors.Is(p.err, io.EOF) {
			return false, nil
		}
		if p.err != nil {
			if ctx.Err() != nil {
				return false, r.interrupted(ctx)
			}
			return false, p.err
		}
		err := r.step(p.b, p.to)
		pf.recycle(p.b)
		if err != nil {
			return false, err
		}
		prog.update(r.epoch, tr.Steps(), r.examples, tr.Times)
		if e := r.s.Train.EvalEvery; e > 0 && tr.Steps()%int64(e) == 0 {
			if err := r.evaluateAndCheckpoint(ctx, r.cfg.EvalLimit); err != nil {
				return false, err
			}
		}
		if ctx.Err() != nil {
			return false, r.interrupted(ctx)
		}
	}
}

// step trains on one transformed batch, which ends at position to.
func (r *trainRun) step(b *features.Batch, to ingest.Position) error {
	losses, err := r.trainer.Step(b)
	if err != nil {
		hint := ""
		if errors.Is(err, mtl.ErrNonFinite) {
			hint = "; the last good checkpoint is kept under " + r.cks.Root()
		}
		return fmt.Errorf("pipelines: epoch %d: %w%s", r.epoch+1, err, hint)
	}
	from := r.pos
	r.examples += int64(b.Rows)
	r.pos = to
	r.prog.observe(losses)
	r.obs.step(r.trainer.Steps(), losses, r.trainer.Weights())
	return r.obs.batch(TrainedBatch{
		From: from, To: clonePosition(r.pos), Rows: b.Rows,
		Steps: r.trainer.Steps(), Examples: r.examples, Time: time.Now(),
	})
}

// maxBadRowLines is how many bad rows a run prints, one line each.
const maxBadRowLines = 10

// badRow counts a row SkipBadRows left out (in the run's first epoch; the
// later ones read the same rows) and prints the first ones.
func (r *trainRun) badRow(b ingest.BadRow) {
	if r.epoch != r.firstEpoch {
		return
	}
	if r.badRows == nil {
		r.badRows = map[string]int64{}
	}
	r.badRows[b.Fault]++
	if n := sumCounts(r.badRows); n <= maxBadRowLines && r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "\nleft out: %v\n", &b)
		if n == maxBadRowLines {
			fmt.Fprintln(r.cfg.Progress, "(further bad rows are counted, not printed)")
		}
	}
}

func sumCounts(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// formatCounts renders counts by name: "bad_label=2 out_of_range=1".
func formatCounts(m map[string]int64) string {
	var sb strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%s=%d", k, m[k])
	}
	return sb.String()
}

// interrupted writes a checkpoint after cancellation and returns ctx's error.
func (r *trainRun) interrupted(ctx context.Context) error {
	if _, err := r.checkpoint(ctx, nil); err != nil {
		return fmt.Errorf("pipelines: interrupted, and the checkpoint failed: %w", err)
	}
	return fmt.Errorf("pipelines: interrupted at step %d (resume with --resume): %w", r.trainer.Steps(), ctx.Err())
}

// bestKey is the model-selection score of an evaluation: the mean AUC of
// its binary objectives (higher is better), or -RMSE when it has none.
func bestKey(res *EvalResult) float64 {
	var sum float64
	var n int
	var rmse float64
	for _, m := range res.Metrics {
		if m.Kind == mtl.KindBinary && !math.IsNaN(m.AUC) {
			sum += m.AUC
			n++
		} else if m.Kind == mtl.KindRegression && !math.IsNaN(m.RMSE) {
			rmse += m.RMSE
		}
	}
	if n == 0 {
		return -rmse
	}
	return sum / float64(n)
}

// evaluateAndCheckpoint evaluates on the validation data (limit rows, 0 =
// all), writes a checkpoint, and publishes the model as a bundle when it is
// the best so far (or, without validation data, always).
func (r *trainRun) evaluateAndCheckpoint(ctx context.Context, limit int64) error {
	var res *EvalResult
	key := float64(r.trainer.Steps()) // without validation: the newest is best
	if len(r.cfg.Valid) > 0 {
		var err error
		res, err = Evaluate(ctx, r.s, r.model, EvalConfig{Paths: r.cfg.Valid, Limit: limit, Allocator: r.cfg.Allocator, SkipBadRows: r.cfg.SkipBadRows})
		if err != nil {
			return fmt.Errorf("pipelines: validation: %w", err)
		}
		key = bestKey(res)
		if r.cfg.Progress != nil {
			fmt.Fprintf(r.cfg.Progress, "\nvalidation at step %d (%d rows): %s\n", r.trainer.Steps(), res.Rows, FormatMetrics(res.Metrics))
		}
	}
	r.lastEval = res
	if err := r.obs.eval(ctx, r.trainer.Steps(), res, r.model, r.s); err != nil {
		return err
	}
	improved := key > r.bestKey
	if improved {
		r.bestKey = key
		r.bestRes = res
		dir, err := r.publish(ctx, res)
		if err != nil {
			return err
		}
		r.best = dir
		p := Published{Version: filepath.Base(dir), Dir: dir, Position: clonePosition(r.pos), Steps: r.trainer.Steps(), Examples: r.examples, Time: time.Now()}
		if res != nil {
			p.Metrics = res.Metrics
		}
		if err := r.obs.publish(p); err != nil {
			return err
		}
	}
	_, err := r.checkpoint(ctx, res)
	return err
}

// manifest describes the current model.
func (r *trainRun) manifest(res *EvalResult) (*bundle.Manifest, error) {
	stats, err := json.Marshal(r.s.Stats)
	if err != nil {
		return nil, fmt.Errorf("pipelines: stats: %w", err)
	}
	m := &bundle.Manifest{
		Spec: string(r.s.SpecText), Stats: stats, Model: r.model.Config(),
		Tasks: r.s.TaskConfigs, Objectives: r.s.Tasks.Objectives(),
		Step: r.trainer.Steps(), Examples: r.examples,
		Precision: r.trainer.Precision().String(),
	}
	if res != nil {
		if m.Metrics, err = json.Marshal(res); err != nil {
			return nil, fmt.Errorf("pipelines: metrics: %w", err)
		}
	}
	if m.Position, err = json.Marshal(r.pos); err != nil {
		return nil, err
	}
	return m, nil
}

// publish writes the current model as a bundle under Out, with its
// sample scored through the serving path, and points Out/latest at it.
// The bundle holds the exact tables shrunk (features.IDTables.Shrunk).
func (r *trainRun) publish(ctx context.Context, res *EvalResult) (string, error) {
	m, err := r.manifest(res)
	if err != nil {
		return "", err
	}
	if m.Sample, err = r.sample(); err != nil {
		return "", err
	}
	ids, err := r.ids().Shrunk()
	if err != nil {
		return "", err
	}
	if len(m.Sample) > 0 {
		if err := serving.FillSampleScores(m, r.model, ids); err != nil {
			return "", err
		}
	}
	v, err := bundle.Publish(context.WithoutCancel(ctx), r.out, m, r.model, ids, r.cfg.KeepCheckpoints)
	if v == "" {
		return "", err
	}
	return r.out.Path(v), err
}

// checkpoint writes the model, the optimizer state and the data position
// under Out/checkpoints.
//
// Like publish, it finishes once begun (context.WithoutCancel): a stop
// writes its checkpoint after cancellation.
func (r *trainRun) checkpoint(ctx context.Context, res *EvalResult) (string, error) {
	m, err := r.manifest(res)
	if err != nil {
		return "", err
	}
	pos, err := json.Marshal(r.pos)
	if err != nil {
		return "", err
	}
	ck := &bundle.Checkpoint{
		State: r.trainer.State(), Epoch: r.epoch, Position: pos, Examples: r.examples,
		BestKey: r.bestKey, Best: r.best, Frozen: r.trainer.Frozen(),
	}
	if r.ckFiles != nil {
		ck.Files = r.ckFiles()
	}
	v, err := bundle.WriteCheckpoint(context.WithoutCancel(ctx), r.cks, m, r.model, r.ids(), ck, r.cfg.KeepCheckpoints)
	if v == "" {
		return "", err
	}
	dir := r.cks.Path(v)
	if err != nil {
		return dir, err
	}
	return dir, r.obs.checkpoint(Checkpoint{Dir: dir, Position: clonePosition(r.pos), Steps: r.trainer.Steps(), Examples: r.examples, Time: time.Now()})
}

// resume loads the newest checkpoint under Out into the run and returns
// its directory.
func (r *trainRun) resume() (string, error) {
	lm, err := LoadModelLimits(r.cks.Root(), r.cfg.Limits)
	if err != nil {
		return "", fmt.Errorf("pipelines: resume: %w", err)
	}
	if err := sameSetup(r.s, lm.Setup, r.model.Config(), lm.Model.Config()); err != nil {
		return "", fmt.Errorf("pipelines: resume from %s: %w", lm.Dir, err)
	}
	// The weights: copy the loaded model's tensors into ours, and its id
	// maps into our exact tables.
	if err := r.model.CopyFrom(lm.Model); err != nil {
		return "", fmt.Errorf("pipelines: resume from %s: %w", lm.Dir, err)
	}
	if err := r.ids().SetState(lm.IDs().State()); err != nil {
		return "", fmt.Errorf("pipelines: resume from %s: %w", lm.Dir, err)
	}
	ck, err := bundle.ReadCheckpoint(lm.Dir)
	if err != nil {
		return "", fmt.Errorf("pipelines: resume from %s: %w", lm.Dir, err)
	}
	var pos ingest.Position
	if err := json.Unmarshal(ck.Position, &pos); err != nil {
		return "", fmt.Errorf("pipelines: resume from %s: %s: position: %w", lm.Dir, bundle.TrainerFile, err)
	}
	if ck.Frozen || r.cfg.FreezeShared {
		if err := r.trainer.FreezeShared(); err != nil {
			return "", fmt.Errorf("pipelines: resume from %s: %w", lm.Dir, err)
		}
	}
	if err := r.trainer.SetState(ck.State); err != nil {
		return "", fmt.Errorf("pipelines: resume from %s: %w", lm.Dir, err)
	}
	r.epoch, r.pos, r.examples, r.bestKey, r.best = ck.Epoch, pos, ck.Examples, ck.BestKey, ck.Best
	return lm.Dir, nil
}

// sameSetup refuses a checkpoint made with another feature spec, fitted
// statistics, tasks or model configuration.
func sameSetup(a, b *Setup, ma, mb mmoe.Config) error {
	ja, _ := json.Marshal(a.Spec)
	jb, _ := json.Marshal(b.Spec)
	if string(ja) != string(jb) {
		return fmt.Errorf("%w: the feature spec differs", ErrSpecMismatch)
	}
	sa, _ := json.Marshal(a.Stats)
	sb, _ := json.Marshal(b.Stats)
	if string(sa) != string(sb) {
		return fmt.Errorf("%w: the fitted statistics differ (was the spec refitted?)", ErrSpecMismatch)
	}
	ca, _ := json.Marshal(ma)
	cb, _ := json.Marshal(mb)
	if string(ca) != string(cb) {
		return fmt.Errorf("%w: the model configuration differs (%s vs %s)", ErrSpecMismatch, ca, cb)
	}
	return nil
}

// FormatMetrics renders metrics on one line: "ctr auc=0.7812 gauc=... ".
func FormatMetrics(ms []mtl.Metrics) string {
	var sb strings.Builder
	for i, m := range ms {
		if i > 0 {
			sb.WriteString("  ")
		}
		if m.Kind == mtl.KindRegression {
			fmt.Fprintf(&sb, "%s rmse=%.4f", m.Objective, m.RMSE)
			continue
		}
		fmt.Fprintf(&sb, "%s auc=%.4f gauc=%.4f logloss=%.4f calib=%.3f", m.Objective, m.AUC, m.GAUC, m.LogLoss, m.Calibration)
	}
	return sb.String()
}

// initFrom warm-starts the model from another bundle's matching tensors.
func (r *trainRun) initFrom(path string) error {
	dir, _, cleanup, err := bundle.ResolveLocal(context.Background(), path, r.cfg.Limits)
	if err != nil {
		return fmt.Errorf("pipelines: --init-from: %w", err)
	}
	defer cleanup()
	lm, err := LoadModelLimits(dir, r.cfg.Limits)
	if err != nil {
		return fmt.Errorf("pipelines: --init-from: %w", err)
	}
	fa, _ := json.Marshal(r.s.Spec.Fields)
	fb, _ := json.Marshal(lm.Setup.Spec.Fields)
	if string(fa) != string(fb) {
		return fmt.Errorf("pipelines: --init-from %s: %w: its feature fields differ from %s's", lm.Dir, ErrSpecMismatch, r.cfg.SpecPath)
	}
	// From the loaded model, not the weights file: a delta version has
	// none (its weights are its chain's).
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(lm.Model.SaveSafetensors(pw)) }()
	loaded, _, err := r.model.LoadSafetensorsMatching(pr)
	pr.CloseWithError(io.ErrClosedPipe) // stops the writer on an early error
	if err != nil {
		return fmt.Errorf("pipelines: --init-from %s: %w", lm.Dir, err)
	}
	if len(loaded) == 0 {
		return fmt.Errorf("pipelines: --init-from %s: %w: no tensor matches this model", lm.Dir, ErrSpecMismatch)
	}
	// The rows of exact fields' embeddings are those of the bundle's ids:
	// its id maps come with them (the fields are the same).
	if err := r.ids().SetState(lm.IDs().State()); err != nil {
		return fmt.Errorf("pipelines: --init-from %s: %w", lm.Dir, err)
	}
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "warm-started %d tensors from %s\n", len(loaded), lm.Dir)
	}
	if r.cfg.FreezeShared {
		return r.trainer.FreezeShared()
	}
	return nil
}
