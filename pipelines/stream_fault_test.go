package pipelines

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onestone/onestone/ingest"
)

// lastCheckpoint returns the position of the newest checkpoint line in a
// journal.
func lastCheckpoint(t *testing.T, journal string) ingest.Position {
	t.Helper()
	ls := readJournal(t, journal, JournalCheckpoint)
	if len(ls) == 0 {
		t.Fatal("the journal has no checkpoint")
	}
	return *ls[len(ls)-1].Position
}

// killedBySIGKILL reports whether a child's exit error says SIGKILL.
func killedBySIGKILL(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// TestStreamCrashBetweenPublishAndCommit kills a stream process exactly
// between publishing a bundle and committing its offsets (an observer on
// the publish hook SIGKILLs the process), twice. The group's committed
// offsets then lag the newest checkpoint. A restart on a quiet topic brings
// them up to the checkpoint within a checkpoint interval of joining, with
// no new event; a restart stopped by SIGTERM at once, with nothing new
// trained, commits them before it exits.
func TestStreamCrashBetweenPublishAndCommit(t *testing.T) {
	const parts = 3
	dir, spec := streamData(t, 12000)
	brokers, topic := streamBrokers(t, parts)
	tmp := t.TempDir()
	journal := filepath.Join(tmp, "journal.jsonl")
	cc := childConfig{
		Brokers: brokers, Topic: topic, GroupID: "crash", SpecPath: spec, Model: filepath.Join(tmp, "live"),
		CheckpointEvery: time.Second, CheckpointEvents: 1000, MaxBatch: 500,
		BatchWait: 50 * time.Millisecond, ProgressEvery: time.Second, Journal: journal,
	}
	// crash runs a stream that dies in the window after the bundle that
	// holds all n events is published; it returns that checkpoint's
	// position, which the group must not have yet.
	crash := func(name string, n int64) ingest.Position {
		t.Helper()
		cc := cc
		cc.CrashAt = n
		c := startChild(t, cc, tmp, name)
		if err := c.wait(60 * time.Second); !killedBySIGKILL(err) {
			t.Fatalf("%s ended with %v, want SIGKILL at the publish hook:\n%s", name, err, c.log())
		}
		ck := lastCheckpoint(t, journal)
		if sumOffsets(ck.Offsets) != n {
			t.Fatalf("%s: the newest checkpoint holds offsets %v, want %d events", name, ck.Offsets, n)
		}
		if got := committedOffsets(t, brokers, topic, "crash", parts); maps.Equal(got, ck.Offsets) {
			t.Fatalf("%s: the group already has the checkpoint's offsets %v: the crash missed the window", name, got)
		}
		return ck
	}
	n1 := produceFile(t, brokers, topic, []string{filepath.Join(dir, "train-00000.parquet")}, 0, 2000)
	ck := crash("crash-1", n1)

	// A restart on a quiet topic commits the checkpoint's offsets.
	c := startChild(t, cc, tmp, "quiet")
	c.waitFor(restartBound, "the checkpoint's offsets committed", func() bool {
		return maps.Equal(committedOffsets(t, brokers, topic, "crash", parts), ck.Offsets)
	})
	t.Logf("quiet restart: the group has the checkpoint's offsets %v after %v", ck.Offsets, time.Since(c.started).Round(time.Millisecond))
	c.stop()
	if _, ok := firstBatch(t, journal, c.started); ok {
		t.Error("the quiet restart trained a micro-batch: events were read twice into the model")
	}

	// A restart stopped at once by SIGTERM commits them before it exits.
	n2 := produceFile(t, brokers, topic, []string{filepath.Join(dir, "train-00001.parquet")}, 0, 1000)
	ck = crash("crash-2", n1+n2)
	c = startChild(t, cc, tmp, "sigterm")
	c.waitUp()
	c.stop()
	if got := committedOffsets(t, brokers, topic, "crash", parts); !maps.Equal(got, ck.Offsets) {
		t.Errorf("after a SIGTERM with nothing new trained the group has %v, the newest checkpoint %v", got, ck.Offsets)
	}
}

// groupAssignment returns, per client id, the partitions of topic the
// group's members hold, once the group is stable with n members (false
// when it is not).
func groupAssignment(t *testing.T, brokers []string, group, topic string, n int) (map[string][]int, bool) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr}
	resp, err := c.DescribeGroups(context.Background(), &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Groups) != 1 || resp.Groups[0].GroupState != "Stable" || len(resp.Groups[0].Members) != n {
		return nil, false
	}
	out := map[string][]int{}
	for _, m := range resp.Groups[0].Members {
		for _, tp := range m.MemberAssignments.Topics {
			if tp.Topic == topic {
				out[m.ClientID] = slices.Sorted(slices.Values(tp.Partitions))
			}
		}
	}
	return out, true
}

// instanceClientID is the Kafka client id of the stream whose model root
// is root.
func instanceClientID(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, InstanceFile))
	if err != nil {
		t.Fatal(err)
	}
	return ingest.ClientID(strings.TrimSpace(string(b)))
}

// TestStreamTwoMembersShareAndSurviveAKill runs two stream processes in one
// group over four partitions while events arrive. The second one's join
// rebalances the group: each member holds two partitions and trains. The
// first is SIGKILLed and restarted: it trains again soon after its start,
// holding the partitions it had (the assignment follows the instance ids),
// while the other member trains on. Every event is trained by some member,
// and the group's committed offsets end at the end of the topic.
func TestStreamTwoMembersShareAndSurviveAKill(t *testing.T) {
	if raceEnabled {
		// Two race-instrumented stream processes for 20-40 s, on top of
		// the kill test's: make test's budget. It runs without -race.
		t.Skip("skipped under the race detector")
	}
	const (
		parts = 4
		total = 16000
	)
	dir, spec := streamData(t, 50000)
	brokers, topic := streamBrokers(t, parts)
	tmp := t.TempDir()
	member := func(name string) childConfig {
		return childConfig{
			Brokers: brokers, Topic: topic, GroupID: "pair", SpecPath: spec, Model: filepath.Join(tmp, name),
			CheckpointEvery: time.Second, CheckpointEvents: 2000, MaxBatch: 500,
			BatchWait: 50 * time.Millisecond, ProgressEvery: time.Second, Journal: filepath.Join(tmp, name+".jsonl"),
		}
	}
	ccA, ccB := member("a"), member("b")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	produced := make(chan error, 1)
	go func() {
		n, err := produceFiles(ctx, brokers, topic, []string{filepath.Join(dir, "train-*.parquet")}, 1000, total)
		if err == nil && n != total {
			err = errors.New("short produce")
		}
		produced <- err
	}()
	batchAfter := func(c *child, journal string, since time.Time) time.Time {
		t.Helper()
		var at time.Time
		c.waitFor(40*time.Second, "trained micro-batch", func() bool {
			var ok bool
			at, ok = firstBatch(t, journal, since)
			return ok
		})
		return at
	}
	// assigned waits until the group is stable with both members and
	// returns their partitions.
	assigned := func(c *child) (a, b []int) {
		t.Helper()
		var as map[string][]int
		c.waitFor(40*time.Second, "a stable group of two", func() bool {
			var ok bool
			as, ok = groupAssignment(t, brokers, "pair", topic, 2)
			return ok
		})
		return as[instanceClientID(t, ccA.Model)], as[instanceClientID(t, ccB.Model)]
	}
	a := startChild(t, ccA, tmp, "a-0")
	batchAfter(a, ccA.Journal, a.started)
	b := startChild(t, ccB, tmp, "b-0")
	batchAfter(b, ccB.Journal, b.started)
	partsA, partsB := assigned(b)
	if len(partsA) != 2 || len(partsB) != 2 {
		t.Fatalf("after the second member joined, a holds partitions %v and b %v: want two each", partsA, partsB)
	}
	a.kill()
	a = startChild(t, ccA, tmp, "a-1")
	aFirst := batchAfter(a, ccA.Journal, a.started)
	d := aFirst.Sub(a.started)
	t.Logf("the killed member trained again %v after its restart", d.Round(time.Millisecond))
	if d > restartBound {
		t.Errorf("the killed member trained again %v after its restart, want within %v", d.Round(time.Millisecond), restartBound)
	}
	// The other member goes on through the rebalance, and the restarted
	// one holds the partitions it had.
	batchAfter(b, ccB.Journal, aFirst)
	if againA, againB := assigned(a); !slices.Equal(againA, partsA) || !slices.Equal(againB, partsB) {
		t.Errorf("after the restart a holds partitions %v and b %v; before, %v and %v", againA, againB, partsA, partsB)
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	a.waitTrained(total, ccA.Journal, ccB.Journal)
	a.stop()
	b.stop()
	for p, offs := range unionCoverage(t, ccA.Journal, ccB.Journal) {
		for o, k := range offs {
			if k == 0 {
				t.Errorf("partition %d offset %d was never trained", p, o)
			}
		}
	}
	if got := committedOffsets(t, brokers, topic, "pair", parts); sumOffsets(got) != total {
		t.Errorf("committed offsets %v sum to %d, want %d", got, sumOffsets(got), total)
	}
}

// TestStreamRefusesARootInUse starts a second stream on the model root of
// a running one: it is refused before it touches the group.
func TestStreamRefusesARootInUse(t *testing.T) {
	_, spec := streamData(t, 12000)
	brokers, topic := streamBrokers(t, 1)
	root := filepath.Join(t.TempDir(), "live")
	cfg := StreamConfig{Brokers: brokers, Topic: topic, GroupID: "g", SpecPath: spec, Model: root, Logger: quietStreamLogger()}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan error, 1)
	var ids []string
	first := cfg
	first.Observers = []Observer{onStart(func(s Start) { ids = append(ids, s.Instance); close(started) })}
	go func() { done <- StreamTrain(ctx, first) }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("the first stream ended: %v", err)
	}
	err := StreamTrain(context.Background(), cfg)
	cancel()
	if ferr := <-done; ferr != nil {
		t.Errorf("the first stream: %v", ferr)
	}
	if !errors.Is(err, ErrRootInUse) {
		t.Fatalf("a second stream on the same root: %v, want ErrRootInUse", err)
	}
	// Once the first has stopped, the root is free again, and the run is
	// the same instance, whose id the root keeps.
	ctx, cancel = context.WithCancel(context.Background())
	cfg.Observers = []Observer{onStart(func(s Start) { ids = append(ids, s.Instance); cancel() })}
	if err := StreamTrain(ctx, cfg); err != nil {
		t.Fatalf("a stream on the freed root: %v", err)
	}
	stored, err := os.ReadFile(filepath.Join(root, InstanceFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[0] == "" || ids[0] != ids[1] || strings.TrimSpace(string(stored)) != ids[0] {
		t.Errorf("instance ids %q, stored %q: want one id, kept under the root", ids, stored)
	}
}

type onStart func(Start)

func (f onStart) ObserveStart(s Start) error { f(s); return nil }
