package pipelines

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// Journal events (JournalLine.Event).
const (
	JournalStart      = "start"
	JournalBatch      = "batch"
	JournalEval       = "eval"
	JournalCheckpoint = "checkpoint"
	JournalPublish    = "publish"
	JournalCommit     = "commit"
)

// JournalLine is one line of a Journal. Fields that do not apply to an
// event are left out.
type JournalLine struct {
	// Event is one of the Journal* constants.
	Event string    `json:"event"`
	Time  time.Time `json:"time"`
	// Steps and Examples count the training so far.
	Steps    int64 `json:"steps,omitempty"`
	Examples int64 `json:"examples,omitempty"`
	// From, To and Rows describe a trained batch (see TrainedBatch).
	From *ingest.Position `json:"from,omitempty"`
	To   *ingest.Position `json:"to,omitempty"`
	Rows int              `json:"rows,omitempty"`
	// Position is where the data stood: at a start, a checkpoint, a
	// publish, or what a commit wrote.
	Position *ingest.Position `json:"position,omitempty"`
	// Dir is the checkpoint written, the bundle published, or at a start
	// the checkpoint resumed from.
	Dir string `json:"dir,omitempty"`
	// Instance is a stream's instance id (at a start).
	Instance string `json:"instance,omitempty"`
	// Version is the published bundle's version, or the one a commit ends.
	Version string `json:"version,omitempty"`
	// Checkpoint is the checkpoint a published bundle was made from.
	Checkpoint string `json:"checkpoint,omitempty"`
	// Parent is a published delta's parent version ("" for a full
	// bundle), and Bytes the bytes a publish wrote.
	Parent string `json:"parent,omitempty"`
	Bytes  int64  `json:"bytes,omitempty"`
	// Metrics are an evaluation's or a published bundle's metrics.
	Metrics []mtl.Metrics `json:"metrics,omitempty"`
	// Error is a failed commit's error.
	Error string `json:"error,omitempty"`
}

// Journal is an Observer that appends one JSON line (a JournalLine) per
// event of a run to a writer: its start, every trained batch with the data
// positions before and after it, every evaluation, checkpoint, published
// bundle and (in a stream) offset commit. It is the run's audit trail:
// which data went into which checkpoint and bundle, and when. `onestone
// train --journal FILE` and `onestone stream --journal FILE` write one.
//
// Each line is written with a single Write call as soon as the event
// happens (on a file opened for appending, lines do not interleave; a line
// torn by a kill is ended at the next OpenJournal); lines are not synced to
// disk. A write error stops the run. A
// Journal is not safe for concurrent use; a run calls it from its training
// goroutine.
type Journal struct {
	w   io.Writer
	c   io.Closer
	buf []byte
}

var (
	_ StartObserver      = (*Journal)(nil)
	_ BatchObserver      = (*Journal)(nil)
	_ EvalObserver       = (*Journal)(nil)
	_ CheckpointObserver = (*Journal)(nil)
	_ PublishObserver    = (*Journal)(nil)
	_ CommitObserver     = (*Journal)(nil)
)

// NewJournal returns a Journal writing to w.
func NewJournal(w io.Writer) *Journal { return &Journal{w: w} }

// OpenJournal opens (or creates) the file at path for appending and returns
// a Journal writing to it; Close closes the file.
//
// A process killed in the middle of a line's write can leave the line torn
// (Linux stops a write to a regular file between pages when a fatal signal
// is pending). If the file does not end with a newline, OpenJournal ends
// the torn line first, so that the first line of this run stays whole; the
// torn fragment is then a line of its own that is not valid JSON, which
// readers skip.
func OpenJournal(path string) (*Journal, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pipelines: journal: %w", err)
	}
	if err := endTornLine(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("pipelines: journal %s: %w", path, err)
	}
	return &Journal{w: f, c: f}, nil
}

// endTornLine appends a newline to f unless f is empty or already ends
// with one.
func endTornLine(f *os.File) error {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, st.Size()-1); err != nil {
		return err
	}
	if last[0] == '\n' {
		return nil
	}
	_, err = f.Write([]byte{'\n'})
	return err
}

// Close closes the file OpenJournal opened (nothing for NewJournal).
func (j *Journal) Close() error {
	if j.c == nil {
		return nil
	}
	if err := j.c.Close(); err != nil {
		return fmt.Errorf("pipelines: journal: %w", err)
	}
	return nil
}

func (j *Journal) write(l JournalLine) error {
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("pipelines: journal: %w", err)
	}
	j.buf = append(append(j.buf[:0], b...), '\n')
	if _, err := j.w.Write(j.buf); err != nil {
		return fmt.Errorf("pipelines: journal: %w", err)
	}
	return nil
}

// ObserveStart writes a "start" line.
func (j *Journal) ObserveStart(s Start) error {
	return j.write(JournalLine{Event: JournalStart, Time: s.Time, Steps: s.Steps, Examples: s.Examples, Position: &s.Position, Dir: s.Resumed, Instance: s.Instance})
}

// ObserveBatch writes a "batch" line.
func (j *Journal) ObserveBatch(b TrainedBatch) error {
	return j.write(JournalLine{Event: JournalBatch, Time: b.Time, Steps: b.Steps, Examples: b.Examples, From: &b.From, To: &b.To, Rows: b.Rows})
}

// ObserveEval writes an "eval" line (none when res is nil).
func (j *Journal) ObserveEval(_ context.Context, step int64, res *EvalResult, _ *mmoe.Model, _ *Setup) error {
	if res == nil {
		return nil
	}
	return j.write(JournalLine{Event: JournalEval, Time: time.Now(), Steps: step, Rows: int(res.Rows), Metrics: res.Metrics})
}

// ObserveCheckpoint writes a "checkpoint" line.
func (j *Journal) ObserveCheckpoint(c Checkpoint) error {
	return j.write(JournalLine{Event: JournalCheckpoint, Time: c.Time, Steps: c.Steps, Examples: c.Examples, Position: &c.Position, Dir: c.Dir})
}

// ObservePublish writes a "publish" line.
func (j *Journal) ObservePublish(p Published) error {
	return j.write(JournalLine{Event: JournalPublish, Time: p.Time, Steps: p.Steps, Examples: p.Examples, Position: &p.Position,
		Dir: p.Dir, Version: p.Version, Checkpoint: p.Checkpoint, Parent: p.Parent, Bytes: p.Bytes, Metrics: p.Metrics})
}

// ObserveCommit writes a "commit" line.
func (j *Journal) ObserveCommit(c Commit) error {
	l := JournalLine{Event: JournalCommit, Time: c.Time, Position: &c.Position, Version: c.Version}
	if c.Err != nil {
		l.Error = c.Err.Error()
	}
	return j.write(l)
}
