package pipelines

import (
	"context"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/internal/s3test"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/serving"
)

// checkLineage fails unless pubs, the publishes of one run, are a
// snapshot and then deltas, each of the version published before it, and
// every delta smaller than the snapshot.
func checkLineage(t *testing.T, pubs []Published) {
	t.Helper()
	if len(pubs) < 3 {
		t.Fatalf("%d publishes, want several", len(pubs))
	}
	if pubs[0].Parent != "" {
		t.Fatalf("the run's first publish %s is a delta of %s, want a snapshot", pubs[0].Version, pubs[0].Parent)
	}
	for i, p := range pubs[1:] {
		if p.Parent != pubs[i].Version {
			t.Fatalf("publish %s: parent %q, want the version before, %s", p.Version, p.Parent, pubs[i].Version)
		}
		if p.Bytes <= 0 || p.Bytes >= pubs[0].Bytes {
			t.Fatalf("delta %s: %d bytes, the snapshot %d", p.Version, p.Bytes, pubs[0].Bytes)
		}
	}
}

// sameAsCheckpoint fails unless the served bundle b has, bit for bit,
// the weights of the newest checkpoint under cks: a full copy of the
// same step.
func sameAsCheckpoint(t *testing.T, b *serving.Bundle, cks *bundle.Dir) {
	t.Helper()
	v, err := bundle.Newest(context.Background(), cks)
	if err != nil {
		t.Fatal(err)
	}
	m, err := bundle.ReadManifest(cks.Path(v))
	if err != nil {
		t.Fatal(err)
	}
	if m.Step != b.Manifest.Step {
		t.Fatalf("the newest checkpoint is at step %d, the latest bundle %d", m.Step, b.Manifest.Step)
	}
	ck, err := bundle.ReadModel(cks.Path(v), m, b.Transformer.Layout(), b.Tasks.Heads(), bundle.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	same := func(name string, x, y []float32) {
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				t.Fatalf("%s[%d]: %v served from the chain, %v in the checkpoint", name, i, x[i], y[i])
			}
		}
	}
	cmp := func(a, c *mmoe.Model) {
		for i, p := range a.Params() {
			same(p.Name, p.Data, c.Params()[i].Data)
		}
		for i, e := range a.Embeddings() {
			same(e.Name, e.Data, c.Embeddings()[i].Data)
		}
	}
	cmp(b.Model, ck)
	// The exact tables' id maps too (none without exact fields), as a
	// bundle holds them: shrunk.
	ids, err := bundle.ReadIDs(cks.Path(v), m, b.Spec, bundle.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if ids, err = ids.Shrunk(); err != nil {
		t.Fatal(err)
	}
	if got, want := b.Transformer.IDs().State(), ids.State(); !reflect.DeepEqual(got, want) {
		t.Fatalf("the served id maps differ from the checkpoint's")
	}
	if b.SampleCheck != serving.SampleExact {
		t.Fatalf("the sample was checked %s, want exact", b.SampleCheck)
	}
}

// A stream publishes a snapshot and then deltas; the chain read back is
// the checkpoint of the same step, to the bit. A restart's first publish
// is a snapshot again, then deltas of it.
func TestStreamPublishesDeltas(t *testing.T) {
	const parts = 2
	dir, spec := streamData(t, 40000)
	brokers, topic := streamBrokers(t, parts)
	n := produceFile(t, brokers, topic, []string{filepath.Join(dir, "train-00000.parquet")}, 0, 6000)
	root := filepath.Join(t.TempDir(), "live")
	var prog syncBuffer
	cfg := StreamConfig{
		Brokers: brokers, Topic: topic, GroupID: "g1", SpecPath: spec, Model: root,
		CheckpointEvents: 1000, CheckpointEvery: time.Second, MaxBatch: 500, BatchWait: 50 * time.Millisecond,
		SnapshotEvery: time.Hour, KeepBundles: 2, Progress: &prog, ProgressEvery: time.Second, Logger: quietStreamLogger(),
	}
	l, err := runStream(t, cfg, func(p Published) bool { return sumOffsets(p.Position.Offsets) >= n })
	if err != nil {
		t.Fatalf("StreamTrain: %v\n%s", err, prog.String())
	}
	checkLineage(t, l.pubs)
	latest, err := bundle.Resolve(filepath.Join(root, bundle.LatestLink))
	if err != nil {
		t.Fatal(err)
	}
	b, err := serving.LoadBundle(latest)
	if err != nil {
		t.Fatalf("serving refuses the latest delta: %v", err)
	}
	if !b.Manifest.IsDelta() || b.Manifest.Delta.Snapshot != l.pubs[0].Version {
		t.Fatalf("latest %s: delta %+v, want a delta of snapshot %s", b.Manifest.Version, b.Manifest.Delta, l.pubs[0].Version)
	}
	sameAsCheckpoint(t, b, bundle.Checkpoints(root))
	// A delta warm-starts a batch run like any bundle.
	var warm syncBuffer
	if _, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: []string{filepath.Join(dir, "train-00001.parquet")},
		Out: t.TempDir(), InitFrom: latest, MaxSteps: 1, Progress: &warm}); err != nil {
		t.Fatalf("--init-from the latest delta: %v", err)
	}
	if !strings.Contains(warm.String(), "warm-started") {
		t.Fatalf("no warm start from the delta:\n%s", warm.String())
	}
	// KeepBundles 2 keeps the chain of the newest.
	if vs, _ := bundle.NewDir(root).Versions(context.Background()); len(vs) != len(l.pubs) {
		t.Fatalf("pruning left %v of the chain of %d", vs, len(l.pubs))
	}

	m := produceFile(t, brokers, topic, []string{filepath.Join(dir, "train-00001.parquet")}, 0, 4000)
	l, err = runStream(t, cfg, func(p Published) bool { return sumOffsets(p.Position.Offsets) >= n+m })
	if err != nil {
		t.Fatalf("restart: %v\n%s", err, prog.String())
	}
	checkLineage(t, l.pubs)
	latest, err = bundle.Resolve(filepath.Join(root, bundle.LatestLink))
	if err != nil {
		t.Fatal(err)
	}
	if b, err = serving.LoadBundle(latest); err != nil {
		t.Fatalf("serving refuses the latest delta after the restart: %v", err)
	}
	sameAsCheckpoint(t, b, bundle.Checkpoints(root))
	if b.Manifest.Examples != n+m {
		t.Fatalf("the latest bundle trained %d examples, want %d", b.Manifest.Examples, n+m)
	}
}

// The same to an object store, the deltas compressed (DeltaCodec): there,
// fetched with their chain and decoded.
func TestStreamDeltasToObjectStore(t *testing.T) {
	if raceEnabled {
		t.Skip("skipped under the race detector (see TestStreamToObjectStoreSurvivesOutage)")
	}
	dir, spec := streamData(t, 40000)
	s3test.One(t, func(t *testing.T) { testStreamDeltasToObjectStore(t, dir, spec) })
}

func testStreamDeltasToObjectStore(t *testing.T, dir, spec string) {
	brokers, topic := streamBrokers(t, 1)
	n := produceFile(t, brokers, topic, []string{filepath.Join(dir, "train-00000.parquet")}, 0, 4000)
	u := s3test.URL(t)
	cks := t.TempDir()
	cfg := StreamConfig{
		Brokers: brokers, Topic: topic, GroupID: "g1", SpecPath: spec, Model: u, Checkpoints: cks,
		CheckpointEvents: 1000, CheckpointEvery: time.Second, MaxBatch: 500, BatchWait: 50 * time.Millisecond,
		KeepBundles: 1, DeltaCodec: bundle.CodecZstd, Logger: quietStreamLogger(),
	}
	l, err := runStream(t, cfg, func(p Published) bool { return sumOffsets(p.Position.Offsets) >= n })
	if err != nil {
		t.Fatal(err)
	}
	checkLineage(t, l.pubs)
	b := fetchLatest(t, u)
	if !b.Manifest.IsDelta() || b.Manifest.Delta.Codec != bundle.CodecZstd {
		t.Fatalf("latest %s is not a compressed delta: %+v", b.Manifest.Version, b.Manifest.Delta)
	}
	sameAsCheckpoint(t, b, bundle.NewDir(cks))
}
