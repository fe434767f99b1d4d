package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/ingest/join"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
	"github.com/onestone/onestone/serving"
)

// Stream defaults.
const (
	DefaultCheckpointEvery  = 10 * time.Second
	DefaultCheckpointEvents = 100000
	DefaultStreamWindow     = 50000
	DefaultKeepBundles      = 5
	DefaultPublishTimeout   = 5 * time.Minute
	// DefaultSnapshotEvery is how often a stream publishes a full bundle;
	// the publishes between are deltas.
	DefaultSnapshotEvery = 10 * time.Minute
)

// ErrPositionMismatch is returned when the checkpoint a stream would resume
// from was not made by a stream of the same topic (for example a batch
// training checkpoint, or another topic's).
var ErrPositionMismatch = errors.New("pipelines: checkpoint position is not of this topic")

// StreamConfig configures StreamTrain. Zero fields take the documented
// defaults.
type StreamConfig struct {
	// Brokers are the Kafka bootstrap addresses (host:port). Required.
	Brokers []string
	// Topic is the topic of JSON events. Required unless Join is set; with
	// Join it is set to the three topics joined by "+".
	Topic string
	// Join, when set, makes the stream read three topics instead of one:
	// impressions, clicks and conversions (JoinTopics, in that order),
	// joined by ingest/join into examples (docs/streaming.md). Its state
	// is part of each checkpoint, and the conversion task's
	// delayed_feedback follows it (DelayedFeedbackMode). Default: nil, one
	// pre-joined topic.
	Join *join.Config
	// JoinTopics are the impression, click and conversion topics of Join.
	JoinTopics [3]string
	// MetricsAddr, when set, serves the stream's Prometheus metrics on
	// this address at /metrics (with Join, the join's: examples, pending
	// state, dead letters by reason, evictions, watermarks, state bytes and
	// label delays). Default: "" (none).
	MetricsAddr string
	// GroupID is the consumer group; offsets are committed to it. Required.
	GroupID string
	// InstanceID names this stream in its group across restarts (see
	// ingest.KafkaConfig.InstanceID): a restart removes the member a killed
	// run left behind, so the group rebalances at once instead of after the
	// session timeout, and the stream gets back its partitions. Each stream
	// process in a group needs its own. Default: the id stored in
	// Model/instance-id (InstanceFile), made on the first run from the host
	// name and random digits, so it belongs to the model root.
	InstanceID string
	// SpecPath is the feature spec (with its model: and train: sections)
	// whose fitted statistics lie beside it (features.StatsPath). When the
	// statistics file is missing, those of the checkpoint or of InitFrom
	// are used (and saved there). Required.
	SpecPath string
	// Model is the bundle root: published bundles go to Model/vNNNNNNNN
	// (with Model/latest naming the newest), checkpoints to
	// Model/checkpoints. When the checkpoint directory already holds
	// checkpoints the stream resumes from the newest one. Model may be an
	// object store URL (bundle.OpenStore): bundles are published there
	// and the checkpoints go to the local directory Checkpoints. Required.
	Model string
	// Checkpoints is the local directory of the checkpoints. Default:
	// Model/checkpoints; required when Model is an object store URL.
	Checkpoints string
	// PublishTimeout bounds one publish to an object store. A publish
	// that fails or times out there is not fatal: the position stays
	// uncommitted and the next checkpoint publishes again (a conflict
	// with another publisher, bundle.ErrConflict, is fatal). Default:
	// DefaultPublishTimeout (5m).
	PublishTimeout time.Duration
	// InitFrom warm-starts a new stream (one without checkpoints under
	// Model) from a batch-trained bundle (a bundle directory or root); its
	// feature fields must be the spec's. Default: "" (fresh weights).
	InitFrom string

	// CheckpointEvery is the longest time between checkpoints while events
	// arrive. Default: DefaultCheckpointEvery (10s).
	CheckpointEvery time.Duration
	// SnapshotEvery is how often a full bundle (a snapshot) is published;
	// every other publish is a delta of the version published before it
	// (bundle.WriteDelta): the embedding rows trained since, and the dense
	// parameters. A publish is also a snapshot when it is the first of a
	// run (after a start or a restart), or when over half of all the
	// embedding rows changed since the version before. Default:
	// DefaultSnapshotEvery (10m); negative: every publish is a snapshot.
	SnapshotEvery time.Duration
	// DeltaCodec is how the deltas' files are stored: bundle.CodecNone,
	// or bundle.CodecZstd (byte-shuffled and compressed: about 17% fewer
	// bytes on the std model, which servers of builds before it cannot
	// read). Default: bundle.CodecNone.
	DeltaCodec string
	// CheckpointEvents writes a checkpoint once this many events were
	// trained since the last one. Default: DefaultCheckpointEvents (100000).
	CheckpointEvents int64
	// MaxBatch is the most events per micro-batch read from Kafka; each is
	// trained in chunks of the spec's train.batch_size. Default: 4096.
	MaxBatch int
	// BatchWait is how long a micro-batch waits to fill once it holds one
	// event. Default: 500ms.
	BatchWait time.Duration
	// DeadLetters is where malformed events go (those that do not decode,
	// and those the training Transformer's Checker refuses: a label outside
	// its domain, a bad weight, a value beyond float32; see
	// features.RowError): "file:PATH", "topic:NAME"
	// (on the same brokers) or a bare path. Default: "" (logged only).
	DeadLetters string
	// MaxEventBytes sends longer events to the dead letters (reason
	// oversize). Default: features.DefaultMaxEventBytes (1 MiB).
	MaxEventBytes int
	// Window is how many of the latest events the progressive
	// (test-then-train) metrics cover. Default: DefaultStreamWindow (50000).
	Window int
	// KeepBundles is how many published bundles to keep under Model.
	// Default: DefaultKeepBundles (5).
	KeepBundles int
	// KeepCheckpoints is how many checkpoints to keep. Default: 2.
	KeepCheckpoints int
	// SessionTimeout is the consumer group session timeout: how long the
	// group waits for a member that died before moving its partitions (a
	// restart of the same instance does not wait: it removes the dead
	// member). Default: the ingest default (30s).
	SessionTimeout time.Duration

	// Observers watch the run (see Observer): each micro-batch trained,
	// checkpoint, published bundle and offset commit, and the progressive
	// metrics at each checkpoint. Default: none.
	Observers []Observer
	// Progress receives a status line every ProgressEvery and a line per
	// published bundle (nil: none).
	Progress io.Writer
	// ProgressEvery is the period of status lines. Default: 2s.
	ProgressEvery time.Duration
	// Allocator builds the Arrow records. Default: memory.DefaultAllocator.
	Allocator memory.Allocator
	// Logger receives Kafka client events and commit failures.
	// Default: slog.Default().
	Logger *slog.Logger

	// joinTap, in tests, sees every example the join emits.
	joinTap func([]join.Example)
}

// Validate reports whether the configuration is usable.
func (c StreamConfig) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("pipelines: stream: no brokers")
	case c.Topic == "" && c.Join == nil:
		return errors.New("pipelines: stream: no topic")
	case c.Join != nil && (c.JoinTopics[0] == "" || c.JoinTopics[1] == "" || c.JoinTopics[2] == "" ||
		c.JoinTopics[0] == c.JoinTopics[1] || c.JoinTopics[1] == c.JoinTopics[2] || c.JoinTopics[0] == c.JoinTopics[2]):
		return fmt.Errorf("pipelines: stream: join topics %q: want three distinct topics (impressions, clicks, conversions)", c.JoinTopics)
	case c.GroupID == "":
		return errors.New("pipelines: stream: no consumer group")
	case c.SpecPath == "":
		return errors.New("pipelines: stream: no spec")
	case c.Model == "":
		return errors.New("pipelines: stream: no model root (--model)")
	case c.CheckpointEvery < 0:
		return fmt.Errorf("pipelines: stream: checkpoint interval %v is negative", c.CheckpointEvery)
	case c.CheckpointEvents < 0:
		return fmt.Errorf("pipelines: stream: checkpoint events %d is negative", c.CheckpointEvents)
	case c.MaxBatch < 0 || c.Window < 0 || c.KeepBundles < 0 || c.KeepCheckpoints < 0 || c.MaxEventBytes < 0:
		return fmt.Errorf("pipelines: stream: negative size (max batch %d, window %d, keep bundles %d, keep checkpoints %d, max event bytes %d)",
			c.MaxBatch, c.Window, c.KeepBundles, c.KeepCheckpoints, c.MaxEventBytes)
	case c.BatchWait < 0 || c.SessionTimeout < 0 || c.ProgressEvery < 0 || c.PublishTimeout < 0:
		return errors.New("pipelines: stream: negative duration")
	}
	if err := ingest.ValidInstanceID(c.InstanceID); err != nil {
		return fmt.Errorf("pipelines: stream: %w", err)
	}
	if _, _, err := parseDeadLetters(c.DeadLetters); err != nil {
		return err
	}
	if err := bundle.CheckCodec(c.DeltaCodec); err != nil {
		return fmt.Errorf("pipelines: stream: %w", err)
	}
	if c.Join != nil {
		if err := c.Join.Validate(); err != nil {
			return fmt.Errorf("pipelines: stream: %w", err)
		}
	}
	return nil
}

func (c StreamConfig) withDefaults() StreamConfig {
	if c.Join != nil {
		c.Topic = joinTopicName(c.JoinTopics)
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = DefaultCheckpointEvery
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = DefaultSnapshotEvery
	}
	if c.CheckpointEvents == 0 {
		c.CheckpointEvents = DefaultCheckpointEvents
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 4096
	}
	if c.BatchWait == 0 {
		c.BatchWait = 500 * time.Millisecond
	}
	if c.Window == 0 {
		c.Window = DefaultStreamWindow
	}
	if c.KeepBundles == 0 {
		c.KeepBundles = DefaultKeepBundles
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.KeepCheckpoints == 0 {
		c.KeepCheckpoints = 2
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = 2 * time.Second
	}
	if c.Allocator == nil {
		c.Allocator = memory.DefaultAllocator
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// parseDeadLetters splits "file:PATH", "topic:NAME" or a bare path.
func parseDeadLetters(s string) (kind, target string, err error) {
	switch {
	case s == "":
		return "", "", nil
	case strings.HasPrefix(s, "file:"):
		kind, target = "file", s[len("file:"):]
	case strings.HasPrefix(s, "topic:"):
		kind, target = "topic", s[len("topic:"):]
	default:
		kind, target = "file", s
	}
	if target == "" {
		return "", "", fmt.Errorf("pipelines: stream: dead letters %q: empty %s name", s, kind)
	}
	return kind, target, nil
}

// streamRun is the state of one StreamTrain call. It builds on trainRun
// (the batch trainer's model, trainer, position and checkpoint writer and
// reader), with a Kafka source in place of the Parquet epochs.
type streamRun struct {
	cfg StreamConfig
	r   *trainRun
	src streamSource
	js  *joinSource // with Join: src
	dl  ingest.DeadLetterSink

	trained     atomic.Int64 // r.examples, for the metrics
	metricsAddr string       // where serveMetrics listens

	ev      *mtl.Evaluator
	scored  int64 // events scored before training (progressive metrics)
	ws      *mmoe.Workspace
	scores  [][]float32
	view    [][]float32
	b       features.Batch
	chunk   features.Batch
	serving []string // the spec's serving columns, for the bundle's sample events

	lastSave   time.Time
	dirty      int64           // events trained since the last checkpoint
	ckPos      ingest.Position // the newest checkpoint's position
	pending    bool            // ckPos is not known to be committed
	published  string
	commitErrs int64
	// publishErrs counts failed publishes to an object store;
	// unpublished: the last checkpoint's publish failed, so save again
	// when due.
	publishErrs int64
	unpublished bool
	// parent is the manifest of the version published last in this run
	// (nil before the first), which the next delta is a delta of;
	// snapshotAt when the last snapshot was published; touched the rows
	// trained since parent (nil when every publish is a snapshot).
	parent     *bundle.Manifest
	snapshotAt time.Time
	touched    *mtl.TouchedRows

	prog       *progress
	lastLine   time.Time
	lastEvents int64
	start      time.Time
	startEx    int64
}

// StreamTrain trains the spec's model continuously on JSON events from a
// Kafka topic, as a member of a consumer group.
//
// Each micro-batch is transformed with the same features.Transformer as
// batch training, scored with the current model for the progressive
// (windowed, test-then-train) metrics, and then trained on in chunks of
// train.batch_size. Every CheckpointEvery or CheckpointEvents it writes a
// checkpoint (weights, optimizer and trainer state, and the per-partition
// offsets after the trained events) durably under Model/checkpoints, then
// publishes the same weights as a new bundle version under Model (and
// points Model/latest at it, keeping KeepBundles), and only then commits the
// offsets to the group.
//
// On start it locks Model (ErrRootInUse when another stream runs there),
// removes from the group the member a killed run of the same InstanceID
// left, and resumes from the newest checkpoint under Model, reading each
// partition from the checkpoint's offset (events the checkpoint holds are
// skipped even when their commit did not happen), or else warm-starts from
// InitFrom. A checkpoint that a crash left unpublished is published first,
// and the checkpoint's offsets are committed where the group lags them.
// The guarantee is at-least-once training with the duplicates after a crash
// bounded by one checkpoint interval (plus one micro-batch), and each
// checkpoint published once.
//
// When ctx is cancelled it writes a final checkpoint, publishes and commits
// it, leaves the group and returns nil.
func StreamTrain(ctx context.Context, cfg StreamConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	out, ckDir, err := openOutput(ctx, cfg.Model, cfg.Checkpoints)
	if err != nil {
		return err
	}
	defer closeStore(out)
	// The lock and the instance id live in the local root: Model, or
	// the checkpoint directory when Model is an object store.
	local := cfg.Model
	if bundle.IsURL(cfg.Model) {
		local = ckDir.Root()
	}
	release, err := lockRoot(local)
	if err != nil {
		return err
	}
	defer release()
	if cfg.InstanceID, err = streamInstance(local, cfg.InstanceID); err != nil {
		return err
	}
	ckRoot := ckDir.Root()
	cks, err := ckDir.Versions(ctx)
	if err != nil {
		return fmt.Errorf("pipelines: stream: %w", err)
	}
	resume := len(cks) > 0
	s, err := LoadSetup(cfg.SpecPath, func(*features.Spec) (*features.Stats, error) {
		from := cfg.InitFrom
		if resume {
			from = ckRoot
		}
		if from == "" {
			return nil, fmt.Errorf("pipelines: stream: no fitted statistics, no checkpoint and no --init-from bundle to take them from: %w", os.ErrNotExist)
		}
		lm, err := LoadModel(from)
		if err != nil {
			return nil, err
		}
		return lm.Setup.Stats, nil
	})
	if err != nil {
		return err
	}
	if cfg.Join != nil {
		if err := s.SetDelayedFeedback(*cfg.Join, DelayedFeedbackMode(*cfg.Join)); err != nil {
			return err
		}
	}
	r := &trainRun{
		cfg: TrainBatchConfig{SpecPath: cfg.SpecPath, Out: cfg.Model, Checkpoints: cfg.Checkpoints, KeepCheckpoints: cfg.KeepCheckpoints, Progress: cfg.Progress},
		s:   s, out: out, cks: ckDir, bestKey: math.Inf(-1), obs: cfg.Observers,
	}
	if err := r.newModel(); err != nil {
		return err
	}
	defer r.trainer.Close()
	st := &streamRun{cfg: cfg, r: r, serving: s.Spec.Columns(false)}
	if cfg.SnapshotEvery > 0 {
		st.touched = r.trainer.TrackTouched()
	}
	var jm *joinMetrics
	if cfg.Join != nil {
		jm = newJoinMetrics(cfg.JoinTopics, func() *join.Join { return st.js.j })
		if st.js, err = newJoinSource(cfg, s, nil, jm); err != nil {
			return err
		}
		defer func() {
			if st.src == nil {
				st.js.Close()
			}
		}()
		r.ckFiles = func() []bundle.File { return []bundle.File{st.js.state()} }
	}
	start := Start{Time: time.Now(), Instance: cfg.InstanceID}
	if resume {
		if start.Resumed, err = r.resume(); err != nil {
			return err
		}
		if r.pos.File != "" || ((len(r.pos.Offsets) > 0 || cfg.Join != nil) && r.pos.Topic != cfg.Topic) {
			return fmt.Errorf("%w: the newest checkpoint under %s was trained on %s, not topic %q (use another --model root)",
				ErrPositionMismatch, ckRoot, describePosition(r.pos), cfg.Topic)
		}
		if st.js != nil {
			if err := st.js.restore(start.Resumed); err != nil {
				return err
			}
		}
		st.printf("stream: resumed from %s: step %d, %d examples, offsets %s\n", cks[len(cks)-1], r.trainer.Steps(), r.examples, formatPosition(r.pos))
	} else if cfg.InitFrom != "" {
		if err := r.initFrom(cfg.InitFrom); err != nil {
			return err
		}
	} else {
		st.printf("stream: fresh model (no checkpoint under %s, no --init-from)\n", cfg.Model)
	}
	r.pos.Topic = cfg.Topic
	// The group may lag the checkpoint (a crash between a checkpoint and
	// its commit): its offsets are committed once the source has joined.
	st.ckPos, st.pending = clonePosition(r.pos), resume
	st.loadSample(resume)
	if st.ev, err = mtl.NewEvaluator(s.Tasks, s.Transformer.Layout().Labels, cfg.Window); err != nil {
		return err
	}
	start.Position, start.Steps, start.Examples = clonePosition(r.pos), r.trainer.Steps(), r.examples
	st.trained.Store(r.examples)
	if err := r.obs.start(start); err != nil {
		return err
	}
	if cfg.MetricsAddr != "" {
		stop, err := st.serveMetrics(jm)
		if err != nil {
			return err
		}
		defer stop()
	}
	if err := st.open(ctx); err != nil {
		st.close()
		return err
	}
	err = st.run(ctx)
	if cerr := st.close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// open creates the dead-letter sink and the Kafka source, and publishes a
// checkpoint a crash left unpublished.
func (st *streamRun) open(ctx context.Context) error {
	cfg := st.cfg
	kind, target, _ := parseDeadLetters(cfg.DeadLetters)
	switch kind {
	case "file":
		f, err := ingest.NewFileDeadLetters(target)
		if err != nil {
			return err
		}
		st.dl = f
	case "topic":
		k, err := ingest.NewKafkaDeadLetters(ingest.KafkaDeadLettersConfig{Brokers: cfg.Brokers, Topic: target})
		if err != nil {
			return err
		}
		st.dl = k
	}
	if st.js != nil {
		st.js.dl = st.dl
		if st.js.dl == nil {
			st.js.dl = &ingest.LogDeadLetters{Logger: cfg.Logger}
		}
		if err := st.js.open(context.WithoutCancel(ctx)); err != nil {
			return err
		}
		st.src = st.js
	} else if err := st.openKafka(ctx); err != nil {
		return err
	}
	return st.started(ctx)
}

// openKafka opens the single topic's source.
func (st *streamRun) openKafka(ctx context.Context) error {
	cfg := st.cfg
	kc := ingest.KafkaConfig{
		Brokers: cfg.Brokers, Topic: cfg.Topic, GroupID: cfg.GroupID, InstanceID: cfg.InstanceID,
		Schema: st.r.s.Spec.Schema(true), Check: st.r.s.Transformer.Checker(), BatchSize: cfg.MaxBatch, BatchWait: cfg.BatchWait,
		MaxEventBytes: cfg.MaxEventBytes, Start: st.r.pos.Offsets, Allocator: cfg.Allocator, SessionTimeout: cfg.SessionTimeout,
		Logger: cfg.Logger,
	}
	if st.dl != nil {
		kc.DeadLetters = st.dl
	}
	// A stop signal during the set-up must not fail the run: the loop then
	// stops cleanly and commits what is pending. The set-up is bounded by
	// the Kafka client's own timeouts.
	src, err := ingest.NewKafkaSource(context.WithoutCancel(ctx), kc)
	if err != nil {
		return err
	}
	st.src = src
	return nil
}

// started finishes open once the source is there.
func (st *streamRun) started(ctx context.Context) error {
	cfg := st.cfg
	m := st.r.model
	bs := st.r.trainer.Config().BatchSize
	st.ws = m.NewWorkspace(bs)
	st.view = make([][]float32, len(st.r.s.Tasks.Heads()))
	st.lastSave = time.Now()
	st.start, st.lastLine, st.startEx = time.Now(), time.Now(), st.r.examples
	st.lastEvents = st.r.examples
	st.prog = newProgress(nil, 0, st.r.s.Tasks, nil)
	note := ""
	if n := st.src.Stats().StaleMembers; n > 0 {
		note = fmt.Sprintf("; removed %d member(s) a killed run left", n)
	}
	st.printf("stream: group %s, client id %s%s\n", cfg.GroupID, ingest.ClientID(cfg.InstanceID), note)
	if err := st.publishPending(ctx); err != nil {
		return err
	}
	if st.pending && !st.unpublished {
		// Bounded, so that a group that cannot be joined now does not hold
		// up the loop; save retries. (Unpublished: the store failed the
		// publish, and nothing is committed before it succeeds.)
		cctx, cancel := context.WithTimeout(ctx, cfg.CheckpointEvery)
		defer cancel()
		return st.commit(cctx)
	}
	return nil
}

// close releases the source and the dead-letter sink.
func (st *streamRun) close() error {
	var first error
	if st.src != nil {
		first = st.src.Close()
	}
	if c, ok := st.dl.(io.Closer); ok {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// run is the consume-score-train loop.
func (st *streamRun) run(ctx context.Context) error {
	for {
		// Wait for events no longer than until the next checkpoint is due
		// when trained events are not yet checkpointed, so a quiet topic
		// still gets its last events published (and always with a source
		// whose state moves without examples: see unsavedState).
		nctx, cancel := ctx, context.CancelFunc(func() {})
		if _, stateful := st.src.(unsavedSource); stateful || st.dirty > 0 || st.pending || st.unpublished {
			nctx, cancel = context.WithDeadline(ctx, st.lastSave.Add(st.cfg.CheckpointEvery))
		}
		rec, err := st.src.Next(nctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return st.shutdown(ctx)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				if err := st.save(ctx); err != nil {
					return err
				}
				continue
			}
			// The source failed for good: keep what was trained.
			if serr := st.save(context.WithoutCancel(ctx)); serr != nil {
				return errors.Join(err, serr)
			}
			return err
		}
		err = st.process(rec)
		rec.Release()
		if err != nil {
			return err
		}
		st.status(false)
		if st.dirty >= st.cfg.CheckpointEvents || time.Since(st.lastSave) >= st.cfg.CheckpointEvery {
			if err := st.save(ctx); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return st.shutdown(ctx)
		}
	}
}

// shutdown writes the final checkpoint after cancellation.
func (st *streamRun) shutdown(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := st.save(sctx); err != nil {
		return fmt.Errorf("pipelines: stream: stopping, and the final checkpoint failed: %w", err)
	}
	st.status(true)
	st.printf("stream: stopped at step %d, %d examples, offsets %s\n", st.r.trainer.Steps(), st.r.examples, formatPosition(st.r.pos))
	return nil
}

// process scores one micro-batch, feeds the progressive evaluator, trains
// on it and tells the observers.
func (st *streamRun) process(rec arrow.RecordBatch) error {
	r := st.r
	from := st.src.BatchStart()
	to := st.src.Position()
	if err := r.s.Transformer.TransformTo(&st.b, rec); err != nil {
		return fmt.Errorf("pipelines: stream: topic %s offsets %s..%s: %w", st.cfg.Topic, formatPosition(from), formatPosition(to), err)
	}
	if r.sampleEvents == nil {
		if err := st.takeSample(rec); err != nil {
			return err
		}
	}
	n := st.b.Rows
	bs := r.trainer.Config().BatchSize
	nobj := len(r.s.Tasks.Objectives())
	// Test: score every chunk with the model as it is before this batch.
	for lo := 0; lo < n; lo += bs {
		hi := min(lo+bs, n)
		st.b.SliceTo(&st.chunk, lo, hi)
		if err := r.model.Forward(st.ws, &st.chunk); err != nil {
			return fmt.Errorf("pipelines: stream: score: %w", err)
		}
		for h := range st.view {
			st.view[h] = st.ws.Logits[h][:hi-lo]
		}
		var err error
		if st.scores, err = r.s.Tasks.PredictTo(resize(st.scores, nobj, hi-lo), st.view); err != nil {
			return fmt.Errorf("pipelines: stream: score: %w", err)
		}
		if err := st.ev.AddBatch(st.scores, st.chunk.Labels, st.chunk.Groups, st.chunk.Weights); err != nil {
			return fmt.Errorf("pipelines: stream: progressive evaluation: %w", err)
		}
	}
	st.scored += int64(n)
	// Then train.
	for lo := 0; lo < n; lo += bs {
		hi := min(lo+bs, n)
		st.b.SliceTo(&st.chunk, lo, hi)
		losses, err := r.trainer.Step(&st.chunk)
		if err != nil {
			hint := ""
			if errors.Is(err, mtl.ErrNonFinite) {
				hint = "; the last good checkpoint is kept under " + st.r.cks.Root()
			}
			return fmt.Errorf("pipelines: stream: topic %s offsets %s..%s: %w%s", st.cfg.Topic, formatPosition(from), formatPosition(to), err, hint)
		}
		st.prog.observe(losses)
		r.obs.step(r.trainer.Steps(), losses, r.trainer.Weights())
	}
	r.pos = to
	r.examples += int64(n)
	st.trained.Store(r.examples)
	st.dirty += int64(n)
	return r.obs.batch(TrainedBatch{From: from, To: clonePosition(to), Rows: n, Steps: r.trainer.Steps(), Examples: r.examples, Time: time.Now()})
}

// windowResult is the progressive evaluation as an EvalResult (nil before
// any event was scored).
func (st *streamRun) windowResult() (*EvalResult, error) {
	if st.scored == 0 {
		return nil, nil
	}
	ms, err := st.ev.Compute()
	if err != nil {
		return nil, fmt.Errorf("pipelines: stream: progressive evaluation: %w", err)
	}
	return &EvalResult{Rows: min(st.scored, int64(st.cfg.Window)), Metrics: ms}, nil
}

// save writes a checkpoint, publishes it as a bundle and commits its
// offsets, in that order. When nothing was trained since the last save it
// writes a checkpoint only if the source's state moved (then commits it
// without a new bundle: the model is the one published), and otherwise
// only retries a commit that is pending.
func (st *streamRun) save(ctx context.Context) error {
	if st.dirty == 0 && !st.unpublished {
		st.lastSave = time.Now()
		if st.unsavedState() {
			if _, err := st.r.checkpoint(ctx, nil); err != nil {
				return fmt.Errorf("pipelines: stream: checkpoint: %w", err)
			}
			st.ckPos, st.pending = clonePosition(st.r.pos), true
		}
		if st.pending {
			return st.commit(ctx)
		}
		return nil
	}
	res, err := st.windowResult()
	if err != nil {
		return err
	}
	if err := st.r.obs.eval(ctx, st.r.trainer.Steps(), res, st.r.model, st.r.s); err != nil {
		return err
	}
	ck, err := st.r.checkpoint(ctx, res)
	if err != nil {
		return fmt.Errorf("pipelines: stream: checkpoint: %w", err)
	}
	st.ckPos, st.pending = clonePosition(st.r.pos), true
	st.dirty = 0
	st.lastSave = time.Now()
	return st.publishAndCommit(ctx, ck, res)
}

// unsavedState reports whether the source holds state a checkpoint must
// save although no event was trained since the last one (the three-topic
// join's consumed messages that emitted no example yet).
func (st *streamRun) unsavedState() bool {
	u, ok := st.src.(unsavedSource)
	return ok && u.Unsaved()
}

// unsavedSource is a streamSource whose state moves without returning
// events (*joinSource).
type unsavedSource interface{ Unsaved() bool }

// publishAndCommit publishes the current model (the state of checkpoint ck)
// as a bundle and then commits the position.
func (st *streamRun) publishAndCommit(ctx context.Context, ck string, res *EvalResult) error {
	r := st.r
	m, err := r.manifest(res)
	if err != nil {
		return err
	}
	for _, ev := range r.sampleEvents {
		m.Sample = append(m.Sample, bundle.SampleEvent{Event: ev})
	}
	ids, err := r.ids().Shrunk() // as trainRun.publish
	if err != nil {
		return fmt.Errorf("pipelines: stream: publish: %w", err)
	}
	if len(m.Sample) > 0 {
		if err := serving.FillSampleScores(m, r.model, ids); err != nil {
			return fmt.Errorf("pipelines: stream: publish: %w", err)
		}
	}
	// Once begun, the publish is finished (see trainRun.checkpoint), but
	// within PublishTimeout.
	out := r.out
	full := st.fullNext()
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), st.cfg.PublishTimeout)
	var v string
	if full {
		v, err = bundle.Publish(pctx, out, m, r.model, ids, st.cfg.KeepBundles)
	} else {
		rows := make([][]int32, st.touched.Tables())
		for f := range rows {
			rows[f] = st.touched.Rows(f, nil)
		}
		v, err = bundle.PublishDelta(pctx, out, m, r.model, ids, st.parent, rows, st.cfg.DeltaCodec, st.cfg.KeepBundles)
	}
	cancel()
	if err != nil {
		if _, remote := out.(*bundle.Bucket); remote && !errors.Is(err, bundle.ErrConflict) {
			// The store may come back: keep training, commit nothing,
			// and publish again at the next checkpoint.
			st.publishErrs++
			st.unpublished = true
			st.cfg.Logger.Warn("pipelines: stream: publish to the object store failed; the position stays uncommitted and the next checkpoint publishes again",
				"store", out.String(), "version", v, "failures", st.publishErrs, "err", err)
			return nil
		}
		return fmt.Errorf("pipelines: stream: publish: %w", err)
	}
	dir := out.Path(v)
	st.published = v
	st.unpublished = false
	parent := ""
	if m.Delta != nil {
		parent = m.Delta.Parent
	}
	st.parent = m
	if full {
		st.snapshotAt = time.Now()
	}
	if st.touched != nil {
		st.touched.Reset()
	}
	written := m.Sum().Size
	for _, f := range m.Files {
		written += f.Size
	}
	var ms []mtl.Metrics
	if res != nil {
		ms = res.Metrics
	}
	if err := r.obs.publish(Published{
		Version: st.published, Dir: dir, Checkpoint: ck, Position: clonePosition(r.pos),
		Steps: r.trainer.Steps(), Examples: r.examples, Metrics: ms, Time: time.Now(), Parent: parent, Bytes: written,
	}); err != nil {
		return err
	}
	kind := "snapshot"
	if parent != "" {
		kind = "delta of " + parent
	}
	st.printf("stream: published %s, %s, %s (step %d, %d examples, offsets %s)  %s\n", st.published, kind, formatSize(written), r.trainer.Steps(), r.examples,
		formatPosition(r.pos), formatWindow(ms))
	return st.commit(ctx)
}

// fullNext reports whether the next publish is a snapshot: deltas are
// off, nothing was published in this run (a restart does not know which
// rows changed since the last version published), the last snapshot is
// SnapshotEvery old, or over half of all the rows changed.
func (st *streamRun) fullNext() bool {
	if st.touched == nil || st.parent == nil || time.Since(st.snapshotAt) >= st.cfg.SnapshotEvery {
		return true
	}
	touched, rows := st.touched.Total()
	return 2*touched > rows
}

// formatSize renders n bytes as kB or MB.
func formatSize(n int64) string {
	if n < 1e6 {
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

// commit commits the newest checkpoint's offsets to the group (only those
// ahead of the group's) and tells the observers. A failure is logged and
// left pending: the checkpoint holds the offsets, so nothing is lost, and
// the next checkpoint interval retries.
func (st *streamRun) commit(ctx context.Context) error {
	err := st.src.Commit(ctx, st.ckPos)
	st.pending = err != nil
	if err != nil {
		st.commitErrs++
		st.cfg.Logger.Warn("pipelines: stream: commit failed; retried at the next checkpoint interval", "err", err)
		st.printf("stream: commit of offsets %s failed: %v\n", formatPosition(st.ckPos), err)
	}
	return st.r.obs.commit(Commit{Position: clonePosition(st.ckPos), Version: st.published, Err: err, Time: time.Now()})
}

// publishPending publishes the newest checkpoint when a crash came between
// its writing and its publishing (the latest bundle holds fewer steps). A
// stop signal during it does not stop it: the run then stops cleanly.
func (st *streamRun) publishPending(ctx context.Context) error {
	ckStore := st.r.cks
	cks, err := ckStore.Versions(context.WithoutCancel(ctx))
	if err != nil || len(cks) == 0 {
		return err
	}
	if m, err := st.newestPublished(ctx); err == nil && m.Step >= st.r.trainer.Steps() {
		st.published = m.Version
		return nil
	}
	ck := ckStore.Path(cks[len(cks)-1])
	var res *EvalResult
	if m, err := bundle.ReadManifest(ck); err == nil && len(m.Metrics) > 0 {
		res = new(EvalResult)
		if json.Unmarshal(m.Metrics, res) != nil {
			res = nil
		}
	}
	st.printf("stream: publishing checkpoint %s, which a stop left unpublished\n", filepath.Base(ck))
	return st.publishAndCommit(ctx, ck, res)
}

// newestPublished reads the manifest of the newest bundle published to
// the output store.
func (st *streamRun) newestPublished(ctx context.Context) (*bundle.Manifest, error) {
	v, err := bundle.Newest(ctx, st.r.out)
	if err != nil {
		return nil, err
	}
	return bundle.ReadStoreManifest(ctx, st.r.out, v, st.r.cfg.Limits)
}

// loadSample takes the bundle's sample events from the latest published
// bundle (or the InitFrom bundle); otherwise the first micro-batch gives
// them.
func (st *streamRun) loadSample(resume bool) {
	for _, from := range []string{st.cfg.Model, st.cfg.InitFrom} {
		if from == "" || (!resume && from == st.cfg.Model) {
			continue
		}
		var m *bundle.Manifest
		var err error
		if from == st.cfg.Model {
			m, err = st.newestPublished(context.Background())
		} else {
			var dir string
			if dir, err = bundle.Resolve(from); err == nil {
				m, err = bundle.ReadManifest(dir)
			}
		}
		if err != nil || len(m.Sample) == 0 {
			continue
		}
		for _, s := range m.Sample {
			st.r.sampleEvents = append(st.r.sampleEvents, s.Event)
		}
		return
	}
}

// takeSample keeps the serving columns of the first rows of rec as the
// bundles' sample events.
func (st *streamRun) takeSample(rec arrow.RecordBatch) error {
	var cols []arrow.Array
	var fields []arrow.Field
	for i, f := range rec.Schema().Fields() {
		if slices.Contains(st.serving, f.Name) {
			fields = append(fields, f)
			cols = append(cols, rec.Column(i))
		}
	}
	n := min(rec.NumRows(), sampleRows)
	full := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, rec.NumRows())
	defer full.Release()
	part := full.NewSlice(0, n)
	defer part.Release()
	evs, err := RowsToJSON(part)
	if err != nil {
		return err
	}
	st.r.sampleEvents = evs
	return nil
}

// status prints the periodic status line (always when final).
func (st *streamRun) status(final bool) {
	w := st.cfg.Progress
	if w == nil {
		return
	}
	now := time.Now()
	if !final && now.Sub(st.lastLine) < st.cfg.ProgressEvery {
		return
	}
	ex := st.r.examples
	rate := float64(ex-st.lastEvents) / now.Sub(st.lastLine).Seconds()
	st.lastLine, st.lastEvents = now, ex
	ks := st.src.Stats()
	var sb strings.Builder
	fmt.Fprintf(&sb, "stream: %d events  %.0f ev/s  lag", ex, rate)
	parts := make([]int, 0, len(ks.Lag))
	for p := range ks.Lag {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	for _, p := range parts {
		fmt.Fprintf(&sb, " p%d=%d", p, ks.Lag[p])
	}
	sb.WriteString("  loss")
	for i, l := range st.prog.ema {
		fmt.Fprintf(&sb, " %s=%.4f", st.r.s.Tasks.Task(i).Name, l)
	}
	var ms []mtl.Metrics
	if res, err := st.windowResult(); err == nil && res != nil {
		ms = res.Metrics
	}
	var dead int64
	reasons := make([]string, 0, len(ks.DeadLetters))
	for r, n := range ks.DeadLetters {
		dead += n
		reasons = append(reasons, r)
	}
	fmt.Fprintf(&sb, "  %s  dead letters %d", formatWindow(ms), dead)
	if dead > 0 {
		slices.Sort(reasons)
		for i, r := range reasons {
			sep := " "
			if i == 0 {
				sep = " ("
			}
			fmt.Fprintf(&sb, "%s%s=%d", sep, r, ks.DeadLetters[r])
		}
		sb.WriteByte(')')
	}
	sb.WriteString(idsLine(st.r.ids()))
	if st.commitErrs > 0 {
		fmt.Fprintf(&sb, "  commit failures %d", st.commitErrs)
	}
	pub := st.published
	if pub == "" {
		pub = "none yet"
	}
	fmt.Fprintf(&sb, "  published %s", pub)
	if st.js != nil {
		sb.WriteString(joinStatus(st.js.j.Stats()))
	}
	sb.WriteByte('\n')
	io.WriteString(w, sb.String())
}

func (st *streamRun) printf(format string, args ...any) {
	if st.cfg.Progress != nil {
		fmt.Fprintf(st.cfg.Progress, format, args...)
	}
}

// formatWindow renders the progressive metrics: "window auc ctr=0.71 ...".
func formatWindow(ms []mtl.Metrics) string {
	if len(ms) == 0 {
		return "window auc -"
	}
	var sb strings.Builder
	sb.WriteString("window")
	for _, m := range ms {
		if m.Kind == mtl.KindRegression {
			fmt.Fprintf(&sb, " %s rmse=%.4f", m.Objective, m.RMSE)
		} else {
			fmt.Fprintf(&sb, " %s auc=%.4f", m.Objective, m.AUC)
		}
	}
	return sb.String()
}

// formatOffsets renders per-partition offsets: "{0:120 1:98}".
func formatOffsets(o map[int]int64) string {
	ps := make([]int, 0, len(o))
	for p := range o {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	var sb strings.Builder
	sb.WriteByte('{')
	for i, p := range ps {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%d:%d", p, o[p])
	}
	sb.WriteByte('}')
	return sb.String()
}

// formatPosition renders a position's offsets: formatOffsets's, or for
// several topics each topic's, "impressions{0:120} clicks{0:7} ...".
func formatPosition(p ingest.Position) string {
	if len(p.Topics) == 0 {
		return formatOffsets(p.Offsets)
	}
	names := strings.Split(p.Topic, "+")
	for t := range p.Topics {
		if !slices.Contains(names, t) {
			names = append(names, t)
		}
	}
	var sb strings.Builder
	for i, t := range names {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(t)
		sb.WriteString(formatOffsets(p.Topics[t]))
	}
	return sb.String()
}

func describePosition(p ingest.Position) string {
	if p.File != "" {
		return fmt.Sprintf("Parquet file %s", p.File)
	}
	return fmt.Sprintf("topic %q", p.Topic)
}

func clonePosition(p ingest.Position) ingest.Position {
	q := p
	q.Offsets = maps.Clone(p.Offsets)
	if q.Offsets == nil {
		q.Offsets = map[int]int64{}
	}
	if p.Topics != nil {
		q.Topics = make(map[string]map[int]int64, len(p.Topics))
		for t, o := range p.Topics {
			q.Topics[t] = maps.Clone(o)
		}
	}
	return q
}
