package pipelines

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/ingest"
)

// TestStreamJoinOneMemberPerGroup: a stream of three topics is its
// group's only member, because its join state cannot follow a partition
// to another member. Two stream processes on two model roots share a
// group: the second is refused beside the running first, and again
// beside the first SIGKILLed mid-stream (the coordinator still holds its
// member); the first, restarted, trains on, and every example it emitted
// agrees with the generator's truth and counts once in its lineage. Then
// the second, alone, consumes a replay and commits past the first's
// checkpoint, and the first, restarted on that checkpoint, is refused.
func TestStreamJoinOneMemberPerGroup(t *testing.T) {
	if raceEnabled {
		// Stream processes under the race detector: make test's budget
		// (the exclusivity itself is tested in ingest under -race).
		t.Skip("skipped under the race detector")
	}
	const scale = joinScale
	w := newJoinWorld(t, 5000, 11)
	ctx, spec, topics, b, sum, tmp, inputs, truth, total := context.Background(), w.spec, w.topics, w.b, w.sum, w.dir, w.inputs, w.truth, w.total
	sent := int64(0)
	replay := func(skip, n int64) int64 {
		t.Helper()
		got, err := ingest.Replay(ctx, ingest.ReplayConfig{Brokers: b.Addrs(), Inputs: inputs, Skip: skip, Limit: n})
		if err != nil {
			t.Fatal(err)
		}
		var k int64
		for _, g := range got {
			k += g
		}
		return k
	}
	produce := func(n int64) { sent += replay(sent, n) }
	committed := func() int64 {
		var n int64
		for _, tp := range topics {
			n += sumOffsets(committedOffsets(t, b.Addrs(), tp, "shared", 2))
		}
		return n
	}

	ccA := childConfig{
		Brokers: b.Addrs(), GroupID: "shared", SpecPath: spec, Model: filepath.Join(tmp, "a"), Journal: filepath.Join(tmp, "a.jsonl"),
		CheckpointEvery: 300 * time.Millisecond, CheckpointEvents: 1000, MaxBatch: 500,
		BatchWait: 50 * time.Millisecond, ProgressEvery: time.Second,
		JoinTopics: topics, JoinScale: scale, Examples: filepath.Join(tmp, "a-examples.txt"),
	}
	ccB := ccA
	ccB.Model, ccB.Journal, ccB.Examples = filepath.Join(tmp, "b"), filepath.Join(tmp, "b.jsonl"), filepath.Join(tmp, "b-examples.txt")
	// refused starts a process on cc and requires it to exit by itself
	// with the error want, having trained and published nothing.
	refused := func(cc childConfig, name, want string) {
		t.Helper()
		before, _ := os.ReadFile(cc.Examples)
		c := startChild(t, cc, tmp, name)
		if err := c.wait(60 * time.Second); err == nil || !strings.Contains(c.log(), want) {
			t.Fatalf("%s: exit %v, want an error saying %q:\n%s", name, err, want, c.log())
		}
		if after, _ := os.ReadFile(cc.Examples); len(after) != len(before) {
			t.Errorf("%s emitted examples before it was refused", name)
		}
		if ls := readJournal(t, cc.Journal, JournalBatch); len(ls) > 0 && !ls[len(ls)-1].Time.Before(c.started) {
			t.Errorf("%s trained before it was refused", name)
		}
	}
	const shared = "must be its group's only member"

	part := total / 4
	a := startChild(t, ccA, tmp, "a-0")
	a.waitUp()
	produce(part)
	a.waitFor(60*time.Second, "trained micro-batch", func() bool { _, ok := firstBatch(t, ccA.Journal, a.started); return ok })
	refused(ccB, "b-beside", shared)
	if _, err := os.Stat(filepath.Join(ccB.Model, bundle.LatestLink)); err == nil {
		t.Error("the refused stream published a bundle")
	}
	produce(part)
	mark := time.Now()
	a.waitFor(60*time.Second, "trained micro-batch", func() bool { _, ok := firstBatch(t, ccA.Journal, mark); return ok })
	a.kill()
	refused(ccB, "b-beside-killed", shared)
	a = startChild(t, ccA, tmp, "a-1")
	a.waitUp()
	produce(0)
	if sent != total {
		t.Fatalf("produced %d messages, want %d", sent, total)
	}
	a.waitFor(2*time.Minute, "every message committed", func() bool { return committed() == total })
	a.stop()

	times, lines, twice := checkJoinedExamples(t, ccA.Examples, truth)
	dir, err := bundle.Resolve(filepath.Join(ccA.Model, bundle.LatestLink))
	if err != nil {
		t.Fatal(err)
	}
	man, err := bundle.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d messages, %d example lines, %d distinct, %d emitted again after the kill; the final bundle counts %d",
		total, lines, len(times), twice, man.Examples)
	if man.Examples != int64(len(times)) {
		t.Errorf("the final bundle trained on %d examples, the join emitted %d distinct ones", man.Examples, len(times))
	}
	if len(times) < int(float64(sum.Logged)*0.8) {
		t.Errorf("only %d examples of %d logged impressions", len(times), sum.Logged)
	}

	// The group moves past the first's checkpoint: the second, alone now,
	// consumes a replay of the first messages and commits it.
	extra := replay(0, 300)
	c := startChild(t, ccB, tmp, "b-alone")
	c.waitUp()
	c.waitFor(time.Minute, "the replay committed", func() bool { return committed() == total+extra })
	c.stop()
	refused(ccA, "a-stale", "past the join state of checkpoint")
}
