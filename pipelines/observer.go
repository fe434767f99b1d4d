package pipelines

import (
	"context"
	"time"

	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// Observer watches a training run, batch (TrainBatch) or streaming
// (StreamTrain). The base Observer is any value: wherever something happens
// in a run, the run checks whether each observer implements the matching
// hook interface below (StartObserver, StepObserver, BatchObserver,
// EvalObserver, CheckpointObserver, PublishObserver, CommitObserver) and
// calls it if so. An observer implements only the hooks it cares about, and
// a hook added later breaks no observer (the pattern of franz-go's
// kgo.Hook). Report and Journal are observers; tests implement the same
// interfaces.
//
// Hooks are called synchronously on the training goroutine, in the order
// the observers were given, at the point each hook's comment names: the
// run has gone no further when a hook is called (ObservePublish, for one,
// runs after the bundle is published and before the stream commits its
// offsets), and a hook that blocks stalls the run. A hook that returns an
// error stops the run, which returns that error. The values passed are the
// observer's to keep, except ObserveStep's slices and ObserveEval's model.
type Observer any

// StartObserver is called once a run has its model and state, and before it
// reads any data.
type StartObserver interface {
	ObserveStart(Start) error
}

// StepObserver is called after each optimizer step. It must be cheap.
type StepObserver interface {
	// ObserveStep sees the step's per-task losses and task weights (the
	// slices are reused: copy what you keep).
	ObserveStep(step int64, losses, taskWeights []float64)
}

// BatchObserver is called after each batch of data was trained on (a
// Parquet record batch, or a stream's micro-batch), before anything else
// happens.
type BatchObserver interface {
	ObserveBatch(TrainedBatch) error
}

// EvalObserver is called after each evaluation: in batch training each
// validation pass (res is nil without validation data); in a stream each
// checkpoint, with the progressive (test-then-train) metrics over the
// window (res is nil before any event was scored).
type EvalObserver interface {
	ObserveEval(ctx context.Context, step int64, res *EvalResult, m *mmoe.Model, s *Setup) error
}

// CheckpointObserver is called after a checkpoint is durable.
type CheckpointObserver interface {
	ObserveCheckpoint(Checkpoint) error
}

// PublishObserver is called after a bundle is published (written, and the
// root's latest pointing at it). In a stream this is before the bundle's
// offsets are committed to the consumer group.
type PublishObserver interface {
	ObservePublish(Published) error
}

// CommitObserver is called after a stream tried to commit offsets to its
// consumer group (Commit.Err says whether it failed).
type CommitObserver interface {
	ObserveCommit(Commit) error
}

// Start describes a run that is about to read data.
type Start struct {
	// Resumed is the checkpoint directory the run resumed from ("" for a
	// new run).
	Resumed string
	// Instance is a stream's instance id in its consumer group
	// (StreamConfig.InstanceID; "" for batch training).
	Instance string
	// Position is where the run starts reading.
	Position ingest.Position
	// Steps and Examples count the training so far (non-zero on a resume).
	Steps, Examples int64
	Time            time.Time
}

// TrainedBatch describes one batch of data that was trained on.
type TrainedBatch struct {
	// From and To are the source positions before and after the batch. For
	// a Kafka stream, From holds, for each partition in the batch, the
	// offset of its first message in the batch, and To the offset after its
	// last one: the batch spans To − From messages per partition, malformed
	// ones (dead letters) included.
	From, To ingest.Position
	// Rows is the number of examples trained on.
	Rows int
	// Steps and Examples count the training so far, this batch included.
	Steps, Examples int64
	Time            time.Time
}

// Checkpoint describes a durable checkpoint.
type Checkpoint struct {
	// Dir is the checkpoint's directory.
	Dir string
	// Position is where the data stood after the training it holds.
	Position        ingest.Position
	Steps, Examples int64
	Time            time.Time
}

// Published describes one published bundle.
type Published struct {
	// Version is the bundle's version (its directory name), Dir its path
	// (in an object store: its URL without the query, bundle.Bucket.Path).
	Version string
	Dir     string
	// Checkpoint is the checkpoint directory holding the same state (a
	// stream's; "" for batch training, whose best bundle is not the newest
	// checkpoint).
	Checkpoint string
	// Position holds where the data stood after the training the bundle
	// holds (for a stream, per partition, the next offset after the events
	// it trained on).
	Position ingest.Position
	// Steps and Examples count all the training so far.
	Steps, Examples int64
	// Metrics are the evaluation the bundle was published with: validation
	// in batch training, the progressive window in a stream (nil when
	// there is none).
	Metrics []mtl.Metrics
	Time    time.Time
	// Parent is the parent version when the stream published a delta
	// (bundle.WriteDelta), "" for a full bundle.
	Parent string
	// Bytes are the bytes written: every file of the version.
	Bytes int64
}

// Commit describes a stream's commit of offsets to its consumer group.
type Commit struct {
	// Position is what was committed: per partition, the next offset to
	// read (only partitions ahead of the group's committed offsets are
	// written).
	Position ingest.Position
	// Version is the newest published bundle, whose training these offsets
	// end.
	Version string
	// Err is the commit's failure, nil on success. A failed commit is
	// retried at the next checkpoint interval (and at a stop); the
	// checkpoint holds the offsets, so nothing is lost.
	Err  error
	Time time.Time
}

// observers calls a run's observers' hooks.
type observers []Observer

func (obs observers) start(s Start) error {
	for _, o := range obs {
		if h, ok := o.(StartObserver); ok {
			if err := h.ObserveStart(s); err != nil {
				return err
			}
		}
	}
	return nil
}

func (obs observers) step(step int64, losses, weights []float64) {
	for _, o := range obs {
		if h, ok := o.(StepObserver); ok {
			h.ObserveStep(step, losses, weights)
		}
	}
}

func (obs observers) batch(b TrainedBatch) error {
	for _, o := range obs {
		if h, ok := o.(BatchObserver); ok {
			if err := h.ObserveBatch(b); err != nil {
				return err
			}
		}
	}
	return nil
}

func (obs observers) eval(ctx context.Context, step int64, res *EvalResult, m *mmoe.Model, s *Setup) error {
	for _, o := range obs {
		if h, ok := o.(EvalObserver); ok {
			if err := h.ObserveEval(ctx, step, res, m, s); err != nil {
				return err
			}
		}
	}
	return nil
}

func (obs observers) checkpoint(c Checkpoint) error {
	for _, o := range obs {
		if h, ok := o.(CheckpointObserver); ok {
			if err := h.ObserveCheckpoint(c); err != nil {
				return err
			}
		}
	}
	return nil
}

func (obs observers) publish(p Published) error {
	for _, o := range obs {
		if h, ok := o.(PublishObserver); ok {
			if err := h.ObservePublish(p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (obs observers) commit(c Commit) error {
	for _, o := range obs {
		if h, ok := o.(CommitObserver); ok {
			if err := h.ObserveCommit(c); err != nil {
				return err
			}
		}
	}
	return nil
}
