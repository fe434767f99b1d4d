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
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/ingest/join"
	"github.com/onestone/onestone/internal/gen"
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
	// JoinTopics, when set, make the child join the three topics with
	// the windows of gen.StreamsJoinYAML(JoinScale) (lateness 100ms) and
	// append every example the join emits to Examples (a JSON line per
	// emitted batch).
	JoinTopics [3]string
	JoinScale  float64
	Examples   string
	// CrashAt, when positive, makes the child SIGKILL itself in the
	// window between publishing the bundle whose position covers CrashAt
	// events and committing its offsets (see crashAtPublish).
	CrashAt int64
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
	if cc.CrashAt > 0 {
		cfg.Observers = append(cfg.Observers, crashAtPublish(cc.CrashAt))
	}
	if cc.JoinTopics[0] != "" {
		jc, _, err := join.ParseSpecSection([]byte(gen.StreamsJoinYAML(cc.JoinScale)))
		if err != nil {
			fmt.Fprintln(os.Stderr, "stream child:", err)
			return 2
		}
		jc.Lateness = 100 * time.Millisecond
		cfg.Join, cfg.JoinTopics = &jc, cc.JoinTopics
		f, err := os.OpenFile(cc.Examples, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, "stream child:", err)
			return 2
		}
		defer f.Close()
		var buf []byte
		cfg.joinTap = func(exs []join.Example) {
			// One write per batch, unbuffered: a SIGKILL loses no line
			// the kernel took (a line cut short is skipped by the reader).
			buf = buf[:0]
			for _, ex := range exs {
				buf = fmt.Appendf(buf, "%d %d\n", ex.ID, ex.Kind)
			}
			f.Write(buf)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := StreamTrain(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "stream child:", err)
		return 1
	}
	return 0
}

// crashAtPublish is an observer that kills its own process with SIGKILL
// when a bundle whose position covers at least that many events has been
// published: after the publish and before the stream commits its offsets.
type crashAtPublish int64

func (c crashAtPublish) ObservePublish(p Published) error {
	if sumOffsets(p.Position.Offsets) >= int64(c) {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way; go no further
	}
	return nil
}

// child is a stream process: the test binary run again as `onestone
// stream` would run.
type child struct {
	t       testing.TB
	name    string
	cmd     *exec.Cmd
	logPath string
	logf    *os.File
	started time.Time     // just before the process was started
	done    chan struct{} // closed when the process has ended
	err     error         // its exit error, once done
}

// startChild starts a stream process with the configuration cc, logging
// to dir/name.log.
func startChild(t testing.TB, cc childConfig, dir, name string) *child {
	t.Helper()
	env, err := json.Marshal(cc)
	if err != nil {
		t.Fatal(err)
	}
	c := &child{t: t, name: name, logPath: filepath.Join(dir, name+".log")}
	if c.logf, err = os.Create(c.logPath); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), streamChildEnv+"="+string(env))
	c.cmd.Stdout, c.cmd.Stderr = c.logf, c.logf
	c.started = time.Now()
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.done = make(chan struct{})
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
		c.logf.Close()
	})
	return c
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *child) log() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

// fail kills the process and fails the test with its log.
func (c *child) fail(format string, args ...any) {
	c.t.Helper()
	c.cmd.Process.Kill()
	<-c.done
	c.t.Fatalf("%s: %s\n%s", c.name, fmt.Sprintf(format, args...), c.log())
}

// waitFor polls cond every 20 ms until it holds, or fails after timeout.
func (c *child) waitFor(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if c.exited() {
			c.t.Fatalf("%s exited (%v) waiting for %s:\n%s", c.name, c.err, what, c.log())
		}
		if time.Now().After(deadline) {
			c.fail("no %s within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitTrained waits until the events the journals' micro-batches cover
// reach total, and fails when they stop growing for 30 s (rather than
// after a fixed time: a loaded machine under the race detector trains a
// few hundred events a second).
func (c *child) waitTrained(total int, journals ...string) {
	c.t.Helper()
	last, since := -1, time.Now()
	c.waitFor(time.Hour, fmt.Sprintf("%d events trained", total), func() bool {
		n := coveredEvents(c.t, journals...)
		if n > last {
			last, since = n, time.Now()
		} else if time.Since(since) > 30*time.Second {
			c.fail("the journals cover %d of %d events, and no more for 30s", n, total)
		}
		return n >= total
	})
}

// coveredEvents counts the events the journals' micro-batches cover.
func coveredEvents(t testing.TB, journals ...string) int {
	n := 0
	for _, offs := range unionCoverage(t, journals...) {
		n += len(offs)
	}
	return n
}

// unionCoverage adds up the journals' coverage (see journalCoverage).
func unionCoverage(t testing.TB, journals ...string) map[int][]int {
	count := map[int][]int{}
	for _, j := range journals {
		c, _ := journalCoverage(t, j)
		for p, offs := range c {
			for len(count[p]) < len(offs) {
				count[p] = append(count[p], 0)
			}
			for o, k := range offs {
				count[p][o] += k
			}
		}
	}
	return count
}

// waitUp waits until the process has loaded its model and state.
func (c *child) waitUp() {
	c.t.Helper()
	c.waitFor(30*time.Second, "start", func() bool {
		l := c.log()
		return strings.Contains(l, "stream: resumed from") || strings.Contains(l, "stream: fresh model")
	})
}

// kill sends SIGKILL and waits for the process.
func (c *child) kill() {
	c.t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatal(err)
	}
	<-c.done
}

// stop sends SIGTERM and requires a clean exit.
func (c *child) stop() {
	c.t.Helper()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(60 * time.Second):
		c.fail("still running 60s after SIGTERM")
	}
	if c.err != nil {
		c.t.Fatalf("%s did not stop cleanly on SIGTERM: %v\n%s", c.name, c.err, c.log())
	}
}

// wait waits for the process to end by itself and returns its error.
func (c *child) wait(timeout time.Duration) error {
	c.t.Helper()
	select {
	case <-c.done:
		return c.err
	case <-time.After(timeout):
		c.fail("still running after %v", timeout)
		return nil
	}
}

// firstBatch returns the time of the first micro-batch in journal trained
// after since, or false when there is none yet.
func firstBatch(t testing.TB, journal string, since time.Time) (time.Time, bool) {
	for _, l := range readJournal(t, journal, JournalBatch) {
		if !l.Time.Before(since) {
			return l.Time, true
		}
	}
	return time.Time{}, false
}

// restartBound is what the tests assert on the time from a stream
// process's start to its first trained micro-batch after a SIGKILL of its
// predecessor; the target is 5 s, the bound leaves room for a loaded
// machine and the race detector, and stays far below the 30 s session
// timeout that a restart waited for before.
const restartBound = 12 * time.Second

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
func journalCoverage(t testing.TB, path string) (count map[int][]int, lines int) {
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
// every event exactly once. Each restart trains again soon after its start
// although the killed member's session (the default 30 s) has not timed
// out: the restart removed it from the group. user_id is an exact table
// smaller than its 2000 ids (item_id stays hashed), so its map is
// checkpointed, restored after each kill and published with the bundles.
func TestStreamKilledRepeatedlyLosesNothing(t *testing.T) {
	const (
		parts            = 3
		total            = 20000
		kills            = 4
		checkpointEvents = 2000
		maxBatch         = 500
	)
	dir, spec := streamData(t, 50000)
	rewriteField(t, spec, "user_id", "exact: {capacity: 1500, admit_after: 2, evict: lru}")
	brokers, topic := streamBrokers(t, parts)
	tmp := t.TempDir()
	root := filepath.Join(tmp, "live")
	journal := filepath.Join(tmp, "journal.jsonl")
	cc := childConfig{
		Brokers: brokers, Topic: topic, GroupID: "killed", SpecPath: spec, Model: root,
		CheckpointEvery: time.Second, CheckpointEvents: checkpointEvents, MaxBatch: maxBatch,
		BatchWait: 50 * time.Millisecond, ProgressEvery: time.Second, Journal: journal,
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
	rng := rand.New(rand.NewPCG(11, 11))
	var restarts []time.Duration
	// trainedAgain records how long after its start run c trained its first
	// micro-batch.
	trainedAgain := func(c *child) {
		var at time.Time
		c.waitFor(40*time.Second, "trained micro-batch", func() bool {
			var ok bool
			at, ok = firstBatch(t, journal, c.started)
			return ok
		})
		d := at.Sub(c.started)
		restarts = append(restarts, d)
		if d > restartBound {
			t.Errorf("%s trained its first micro-batch %v after its start, want within %v", c.name, d.Round(time.Millisecond), restartBound)
		}
	}
	for k := range kills {
		c := startChild(t, cc, tmp, fmt.Sprintf("run-%d", k))
		c.waitUp()
		produced := produce(2000)
		// Wait until this process trained something, then kill it at a
		// random point up to 1.5 s later.
		if k == 0 {
			c.waitFor(30*time.Second, "trained micro-batch", func() bool { _, ok := firstBatch(t, journal, c.started); return ok })
		} else {
			trainedAgain(c)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(1500 * time.Millisecond))))
		c.kill()
		if err := <-produced; err != nil {
			t.Fatal(err)
		}
	}
	// The last run resumes, trains to the end and stops cleanly on SIGTERM.
	c := startChild(t, cc, tmp, fmt.Sprintf("run-%d", kills))
	c.waitUp()
	if err := <-produce(0); err != nil {
		t.Fatal(err)
	}
	trainedAgain(c)
	c.waitTrained(total, journal)
	c.stop()

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
	slices.Sort(restarts)
	t.Logf("%d micro-batches, %d events, %d trained twice after %d kills (bound %d); restart to first trained micro-batch: median %v, max %v",
		lines, seen, dups, kills, bound, restarts[len(restarts)/2].Round(time.Millisecond), restarts[len(restarts)-1].Round(time.Millisecond))
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
	if b, err := serving.LoadBundle(dirLatest); err != nil {
		t.Errorf("the final bundle does not load: %v", err)
	} else {
		if st := b.Transformer.IDs().Stats(); len(st) != 1 || st[0].Rows == 0 || st[0].Clock != total {
			t.Errorf("the final bundle's exact table: %v, want user_id's, trained on %d examples", st, total)
		}
		sameAsCheckpoint(t, b, bundle.Checkpoints(root))
	}
	// Each run's first publish is a snapshot (a restart does not know
	// the rows changed since the last version), and each later one a
	// delta of the version the run published before.
	var prev string
	deltas := 0
	for _, l := range readJournal(t, journal, "") {
		switch l.Event {
		case JournalStart:
			prev = ""
		case JournalPublish:
			if l.Parent != prev {
				t.Errorf("publish %s: parent %q, want %q (the run's previous publish, none after a start)", l.Version, l.Parent, prev)
			}
			if l.Parent != "" {
				deltas++
			}
			prev = l.Version
		}
	}
	if deltas == 0 {
		t.Error("no delta was published")
	}
	got := committedOffsets(t, brokers, topic, "killed", parts)
	if sumOffsets(got) != total {
		t.Errorf("committed offsets %v sum to %d, want %d", got, sumOffsets(got), total)
	}
}

// TestStreamJoinKilledRepeatedly is the kill test with three topics: the
// generated impressions, clicks and conversions are produced in ten parts
// while a stream process joining them is SIGKILLed ten times at random
// points and restarted, then stopped with SIGTERM. Every example the join
// emitted, in any run, agrees with the generator's truth; the final
// bundle's lineage counts each (impression, kind) exactly once (what a
// killed run emitted after its last checkpoint is emitted again, and only
// once more, by the next); and the group's committed offsets of the three
// topics cover every message.
func TestStreamJoinKilledRepeatedly(t *testing.T) {
	if raceEnabled {
		// Eleven race-instrumented stream processes on top of the
		// single-topic kill test's: make test's budget. It runs without
		// -race; TestStreamJoinThreeTopics covers the join under -race.
		t.Skip("skipped under the race detector")
	}
	const (
		kills = 10
		scale = joinScale
	)
	w := newJoinWorld(t, 8000, 7)
	ctx, spec, topics, b, sum, tmp, inputs, truth, total := context.Background(), w.spec, w.topics, w.b, w.sum, w.dir, w.inputs, w.truth, w.total
	part := total / (kills + 1)
	sent := int64(0)
	produce := func(n int64) {
		t.Helper()
		got, err := ingest.Replay(ctx, ingest.ReplayConfig{Brokers: b.Addrs(), Inputs: inputs, Skip: sent, Limit: n})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range got {
			sent += g
		}
	}
	examples := filepath.Join(tmp, "examples.txt")
	journal := filepath.Join(tmp, "journal.jsonl")
	root := filepath.Join(tmp, "live")
	cc := childConfig{
		Brokers: b.Addrs(), GroupID: "killed-join", SpecPath: spec, Model: root, Journal: journal,
		CheckpointEvery: 300 * time.Millisecond, CheckpointEvents: 1000, MaxBatch: 500,
		BatchWait: 50 * time.Millisecond, ProgressEvery: time.Second,
		JoinTopics: topics, JoinScale: scale, Examples: examples,
	}
	rng := rand.New(rand.NewPCG(13, 13))
	for k := range kills {
		c := startChild(t, cc, tmp, fmt.Sprintf("run-%d", k))
		c.waitUp()
		produce(part)
		c.waitFor(60*time.Second, "trained micro-batch", func() bool { _, ok := firstBatch(t, journal, c.started); return ok })
		time.Sleep(time.Duration(rng.Int64N(int64(time.Second))))
		c.kill()
	}
	c := startChild(t, cc, tmp, fmt.Sprintf("run-%d", kills))
	c.waitUp()
	produce(0)
	if sent != total {
		t.Fatalf("produced %d messages, want %d", sent, total)
	}
	// Wait until the committed offsets cover every message and the
	// examples stop growing (the last 1.3 s of event time stay pending).
	c.waitFor(2*time.Minute, "every message committed", func() bool {
		var n int64
		for _, tp := range topics {
			n += sumOffsets(committedOffsets(t, b.Addrs(), tp, "killed-join", 2))
		}
		return n == total
	})
	c.stop()

	// Every line of every run against the truth.
	times, lines, twice := checkJoinedExamples(t, examples, truth)
	dirLatest, err := bundle.Resolve(filepath.Join(root, bundle.LatestLink))
	if err != nil {
		t.Fatal(err)
	}
	man, err := bundle.ReadManifest(dirLatest)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d messages, %d example lines over %d runs, %d distinct, %d emitted again after a kill; the final bundle counts %d",
		total, lines, kills+1, len(times), twice, man.Examples)
	if man.Examples != int64(len(times)) {
		t.Errorf("the final bundle trained on %d examples, the join emitted %d distinct ones", man.Examples, len(times))
	}
	if len(times) < int(float64(sum.Logged)*0.8) {
		t.Errorf("only %d examples of %d logged impressions", len(times), sum.Logged)
	}
}

// exampleKey is an emitted example of a joined stream: the impression and
// the kind.
type exampleKey struct {
	id   uint64
	kind join.Kind
}

// checkJoinedExamples reads the examples file child streams append to
// (childConfig.Examples) and checks every line against the generator's
// truth: an impression it logged, a negative not clicked, a click
// clicked, a re-sent conversion converted, no impression both negative
// and clicked. It returns how often each example was emitted, the lines
// and how many examples were emitted more than once.
func checkJoinedExamples(t *testing.T, path string, truth map[uint64]gen.Truth) (times map[exampleKey]int, lines, twice int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	times = map[exampleKey]int{}
	for _, line := range strings.Split(string(data), "\n") {
		var id uint64
		var kind join.Kind
		if _, err := fmt.Sscanf(line, "%d %d", &id, &kind); err != nil {
			continue // empty, or cut short by a kill
		}
		lines++
		k := exampleKey{id, kind}
		times[k]++
		if times[k] == 2 {
			twice++
		}
		x, ok := truth[id]
		switch {
		case !ok || !x.Logged:
			t.Errorf("an example of an impression the generator did not log: %x %s", id, kind)
		case kind == join.Negative && x.Click, kind == join.Click && !x.Click, kind == join.Conversion && !x.Conversion, kind == join.Final:
			t.Errorf("%s example of impression %s, truth %+v", kind, x.ImpressionID, x)
		}
	}
	for k := range times {
		if k.kind == join.Negative && (times[exampleKey{k.id, join.Click}] > 0 || times[exampleKey{k.id, join.Conversion}] > 0) {
			t.Errorf("impression %x emitted as a negative and as clicked", k.id)
		}
	}
	return times, lines, twice
}
