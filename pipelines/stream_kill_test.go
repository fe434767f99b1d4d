package pipelines

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/serving"
)

// streamChildEnv holds the JSON StreamConfig of a child stream process: the
// test binary run again (see TestMain), as `onestone stream` would run.
const streamChildEnv = "ONESTONE_STREAM_CHILD"

// childConfig is the part of a StreamConfig a child process gets as JSON,
// and the journal file it appends to (as `onestone stream --journal`).
type childConfig struct {
	Brokers                                  []string
	Topic, GroupID, SpecPath, Model, Journal string
	CheckpointEvery, BatchWait               time.Duration
	SessionTimeout, ProgressEvery            time.Duration
	CheckpointEvents                         int64
	MaxBatch                                 int
}

func (c childConfig) stream() StreamConfig {
	return StreamConfig{
		Brokers: c.Brokers, Topic: c.Topic, GroupID: c.GroupID, SpecPath: c.SpecPath, Model: c.Model,
		CheckpointEvery: c.CheckpointEvery, BatchWait: c.BatchWait, SessionTimeout: c.SessionTimeout,
		ProgressEvery: c.ProgressEvery, CheckpointEvents: c.CheckpointEvents, MaxBatch: c.MaxBatch,
	}
}

// streamChild runs StreamTrain from the configuration in the environment
// until SIGTERM or SIGINT, and returns the exit code.
func streamChild() int {
	var cc childConfig
	if err := json.Unmarshal([]byte(os.Getenv(streamChildEnv)), &cc); err != nil {
		fmt.Fprintln(os.Stderr, "stream child:", err)
		return 2
	}
	cfg := cc.stream()
	cfg.Progress = os.Stderr
	cfg.Logger = quietStreamLogger()
	if cc.Journal != "" {
		j, err := OpenJournal(cc.Journal)
		if err != nil {
			fmt.Fprintln(os.Stderr, "stream child:", err)
			return 2
		}
		defer j.Close()
		cfg.Observers = append(cfg.Observers, j)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := StreamTrain(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "stream child:", err)
		return 1
	}
	return 0
}

// readJournal returns the lines of a journal file with the given event
// (all when event is ""). A kill can cut a run's last line short: such a
// line is skipped.
func readJournal(t testing.TB, path, event string) []JournalLine {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []JournalLine
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l JournalLine
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		if event == "" || l.Event == event {
			out = append(out, l)
		}
	}
	return out
}

// journalCoverage counts, from a journal's trained batches, per partition
// and offset, how often each event was trained. It fails the test on a
// batch whose row count differs from the offsets it spans (events skipped
// or invented).
func journalCoverage(t *testing.T, path string) (count map[int][]int, lines int) {
	t.Helper()
	count = map[int][]int{}
	for _, l := range readJournal(t, path, JournalBatch) {
		lines++
		var span int64
		for p, to := range l.To.Offsets {
			from := l.From.Offsets[p]
			span += to - from
			for len(count[p]) < int(to) {
				count[p] = append(count[p], 0)
			}
			for o := from; o < to; o++ {
				count[p][o]++
			}
		}
		if span != int64(l.Rows) {
			t.Errorf("journal batch %d: %d rows but the offsets span %d events: %+v", lines, l.Rows, span, l)
		}
	}
	return count, lines
}

// TestStreamKilledRepeatedlyLosesNothing produces events while a stream
// process is SIGKILLed at random points four times and restarted, then
// stopped with SIGTERM. From the journal of trained micro-batches: every
// event was trained at least once, the events trained twice are bounded by
// one checkpoint interval per kill, and the final model's lineage holds
// every event exactly once.
func TestStreamKilledRepeatedlyLosesNothing(t *testing.T) {
	const (
		parts            = 3
		total            = 20000
		kills            = 4
		checkpointEvents = 2000
		maxBatch         = 500
	)
	dir, spec := streamData(t, 50000)
	brokers, topic := streamBrokers(t, parts)
	tmp := t.TempDir()
	root := filepath.Join(tmp, "live")
	journal := filepath.Join(tmp, "journal.jsonl")
	env, err := json.Marshal(childConfig{
		Brokers: brokers, Topic: topic, GroupID: "killed", SpecPath: spec, Model: root,
		CheckpointEvery: time.Second, CheckpointEvents: checkpointEvents, MaxBatch: maxBatch,
		BatchWait: 50 * time.Millisecond, SessionTimeout: 6 * time.Second, ProgressEvery: time.Second, Journal: journal,
	})
	if err != nil {
		t.Fatal(err)
	}
	logOf := func(i int) string {
		b, _ := os.ReadFile(filepath.Join(tmp, fmt.Sprintf("child-%d.log", i)))
		return string(b)
	}
	// Each run gets its share of the events, produced at 2000/s once it is
	// up, so that it is killed while events arrive and train.
	const share = total / (kills + 1)
	pctx, pcancel := context.WithCancel(context.Background())
	defer pcancel()
	src, err := ingest.NewParquetSource(pctx, ingest.ParquetConfig{Paths: []string{filepath.Join(dir, "train-*.parquet")}, BatchSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	produce := func(rate float64) chan error {
		done := make(chan error, 1)
		go func() {
			n, err := ingest.Produce(pctx, ingest.ProduceConfig{Brokers: brokers, Topic: topic, Rate: rate, Limit: share}, src)
			if err == nil && n != share {
				err = fmt.Errorf("produced %d events, want %d", n, share)
			}
			done <- err
		}()
		return done
	}
	waitUp := func(cmd *exec.Cmd, i int) {
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(logOf(i), "stream: resumed from") && !strings.Contains(logOf(i), "stream: fresh model") {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("run %d did not start in 30s:\n%s", i, logOf(i))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	rng := rand.New(rand.NewPCG(11, 11))
	start := func(i int) (*exec.Cmd, *os.File) {
		logf, err := os.Create(filepath.Join(tmp, fmt.Sprintf("child-%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), streamChildEnv+"="+string(env))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, logf
	}
	trained := func() int { return len(readJournal(t, journal, JournalBatch)) }
	for k := range kills {
		before := trained()
		cmd, logf := start(k)
		waitUp(cmd, k)
		produced := produce(2000)
		// Wait until this process trained something, then kill it at a
		// random point up to 1.5 s later.
		deadline := time.Now().Add(30 * time.Second)
		for trained() == before {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("child %d trained nothing in 30s:\n%s", k, logOf(k))
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(1500 * time.Millisecond))))
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		logf.Close()
		if err := <-produced; err != nil {
			t.Fatal(err)
		}
	}
	// The last run resumes, trains to the end and stops cleanly on SIGTERM.
	cmd, logf := start(kills)
	waitUp(cmd, kills)
	if err := <-produce(0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(40 * time.Second)
	for {
		count, _ := journalCoverage(t, journal)
		var n int
		for _, c := range count {
			n += len(c)
		}
		if n >= total {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the last run reached %d of %d events in 40s:\n%s", n, total, logOf(kills))
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the last run did not stop cleanly on SIGTERM: %v\n%s", err, logOf(kills))
	}
	logf.Close()

	count, lines := journalCoverage(t, journal)
	var seen, dups int
	for p, c := range count {
		for o, k := range c {
			if k == 0 {
				t.Errorf("partition %d offset %d was never trained", p, o)
			}
			seen++
			dups += max(0, k-1)
		}
	}
	if seen != total {
		t.Errorf("the journal covers %d events, %d were produced", seen, total)
	}
	bound := kills * (checkpointEvents + maxBatch)
	t.Logf("%d micro-batches, %d events, %d trained twice after %d kills (bound %d)", lines, seen, dups, kills, bound)
	if dups > bound {
		t.Errorf("%d events trained twice, more than one checkpoint interval per kill (%d)", dups, bound)
	}
	// The final model's lineage trained every event exactly once: the work
	// after a checkpoint died with its process and was redone.
	dirLatest, err := bundle.Resolve(filepath.Join(root, bundle.LatestLink))
	if err != nil {
		t.Fatal(err)
	}
	man, err := bundle.ReadManifest(dirLatest)
	if err != nil {
		t.Fatal(err)
	}
	if man.Examples != total {
		t.Errorf("the final bundle trained on %d examples, want %d (each event once)", man.Examples, total)
	}
	if _, err := serving.LoadBundle(dirLatest); err != nil {
		t.Errorf("the final bundle does not load: %v", err)
	}
	got := committedOffsets(t, brokers, topic, "killed", parts)
	if sumOffsets(got) != total {
		t.Errorf("committed offsets %v sum to %d, want %d", got, sumOffsets(got), total)
	}
}
