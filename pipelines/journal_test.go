package pipelines

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestJournalRecordsABatchRun trains with a Journal and checks the lines
// against the run: one start, batches that follow each other (each starts
// where the one before ended, within an epoch) and add up to the examples
// trained, an evaluation and a checkpoint at each evaluation point, and a
// publish of the bundle the run reports as best.
func TestJournalRecordsABatchRun(t *testing.T) {
	dir, spec := genData(t, 12000, "  eval_every: 10\n")
	var buf bytes.Buffer
	out := t.TempDir()
	res, err := TrainBatch(context.Background(), TrainBatchConfig{
		SpecPath: spec, Data: []string{filepath.Join(dir, "train-*.parquet")}, Valid: []string{filepath.Join(dir, "test-00000.parquet")},
		Out: out, MaxSteps: 25, EvalLimit: 1000, BatchSize: 200, Observers: []Observer{NewJournal(&buf)},
	})
	if err != nil {
		t.Fatal(err)
	}
	var lines []JournalLine
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var l JournalLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("journal line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	count := map[string]int{}
	var rows int64
	var prev *JournalLine
	for i, l := range lines {
		count[l.Event]++
		if i == 0 && l.Event != JournalStart {
			t.Fatalf("the first line is %q, want %q", l.Event, JournalStart)
		}
		if l.Time.IsZero() {
			t.Errorf("line %d (%s) has no time", i, l.Event)
		}
		if l.Event != JournalBatch {
			continue
		}
		rows += int64(l.Rows)
		if l.Examples != rows {
			t.Errorf("batch line %d: examples %d, the batches so far add up to %d", i, l.Examples, rows)
		}
		if prev != nil {
			if f, p := l.From, prev.To; f.File == p.File && (f.RowGroup != p.RowGroup || f.Row != p.Row) {
				t.Errorf("batch line %d starts at %+v, the one before ended at %+v", i, *f, *p)
			}
		}
		prev = &lines[i]
	}
	if rows != res.Examples || count[JournalBatch] != int(res.Steps) {
		t.Errorf("the journal has %d batches of %d rows, the run %d steps and %d examples", count[JournalBatch], rows, res.Steps, res.Examples)
	}
	// Evaluations at steps 10 and 20 and the final one, each followed by a
	// checkpoint.
	if count[JournalEval] != 3 || count[JournalCheckpoint] != 3 {
		t.Errorf("%d eval and %d checkpoint lines, want 3 and 3", count[JournalEval], count[JournalCheckpoint])
	}
	var published string
	for _, l := range lines {
		if l.Event == JournalPublish {
			published = l.Dir
		}
	}
	if published != res.Bundle {
		t.Errorf("the last publish line names %q, the run's best bundle is %q", published, res.Bundle)
	}
}

// failingObserver fails its CheckpointObserver hook.
type failingObserver struct{ calls int }

var errObserver = errors.New("observer says stop")

func (f *failingObserver) ObserveCheckpoint(Checkpoint) error {
	f.calls++
	return errObserver
}

// TestObserverErrorStopsTheRun checks that a hook's error ends the run with
// that error, at the first call.
func TestObserverErrorStopsTheRun(t *testing.T) {
	dir, spec := genData(t, 12000, "  eval_every: 5\n")
	f := &failingObserver{}
	_, err := TrainBatch(context.Background(), TrainBatchConfig{
		SpecPath: spec, Data: []string{filepath.Join(dir, "train-*.parquet")}, Out: t.TempDir(), MaxSteps: 20, Observers: []Observer{f},
	})
	if !errors.Is(err, errObserver) || f.calls != 1 {
		t.Fatalf("TrainBatch = %v after %d checkpoint hooks, want the observer's error after 1", err, f.calls)
	}
}

func TestOpenJournalAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.jsonl")
	for range 2 {
		j, err := OpenJournal(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := j.ObserveCommit(Commit{Version: "v00000001", Err: errObserver}); err != nil {
			t.Fatal(err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ls := readJournal(t, path, JournalCommit)
	if len(ls) != 2 || ls[1].Error != errObserver.Error() || ls[1].Version != "v00000001" {
		t.Fatalf("journal lines %+v", ls)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

// TestOpenJournalEndsATornLine: a run killed in the middle of a line's
// write leaves the file without its final newline; the next run's first
// line (its start) must still be a line of its own, which the stream kill
// test relies on to tell runs apart.
func TestOpenJournalEndsATornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.jsonl")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.ObservePublish(Published{Version: "v00000003"}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	torn := whole[:len(whole)/2] // the kill stopped the write half-way
	if err := os.WriteFile(path, torn, 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a second open adds nothing
		j, err = OpenJournal(path)
		if err != nil {
			t.Fatal(err)
		}
		j.Close()
	}
	j, err = OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.ObserveStart(Start{}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	if ls := readJournal(t, path, JournalStart); len(ls) != 1 {
		t.Fatalf("the start after a torn line: %d start lines read, want 1", len(ls))
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(torn) + 1; !bytes.HasPrefix(got, torn) || got[len(torn)] != '\n' || bytes.Count(got[want:], []byte{'\n'}) != 1 {
		t.Errorf("journal after the torn line:\n%s\nwant the fragment, one newline, then the start line", got)
	}
}
