package pipelines

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/internal/s3test"
	"github.com/onestone/onestone/serving"
)

// fetchLatest copies the version the latest pointer of the bucket at u
// names, with its delta chain, into a local directory and loads it as
// serving does.
func fetchLatest(t *testing.T, u string) *serving.Bundle {
	t.Helper()
	ctx := context.Background()
	b, err := bundle.OpenBucket(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	v, err := b.Latest(ctx)
	if err != nil || v == "" {
		t.Fatalf("latest: %q, %v", v, err)
	}
	dir, err := bundle.FetchChain(ctx, b, v, bundle.NewDir(t.TempDir()), bundle.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := serving.LoadBundle(dir)
	if err != nil {
		t.Fatalf("serving refuses the published bundle: %v", err)
	}
	return sb
}

// TestTrainToObjectStore: --out s3://... publishes the bundle to the
// bucket, where serving can load it; the checkpoints stay local, and
// must be given a directory. On one provider (s3test.One), as the
// other tests here: training and streaming reach a store only through
// bundle.Bucket, whose tests run on each provider.
func TestTrainToObjectStore(t *testing.T) {
	dir, spec := genData(t, 20000, "")
	s3test.One(t, func(t *testing.T) { testTrainToObjectStore(t, dir, spec) })
}

func testTrainToObjectStore(t *testing.T, dir, spec string) {
	u := s3test.URL(t)
	scheme, _, _ := strings.Cut(u, "://")
	data := []string{filepath.Join(dir, "train-*.parquet")}
	_, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Out: u, MaxSteps: 2})
	if err == nil || !strings.Contains(err.Error(), "--checkpoints") {
		t.Fatalf("an object store output without a checkpoint directory: %v", err)
	}
	cks := t.TempDir()
	res, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Out: u, Checkpoints: cks, MaxSteps: 5})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Bundle, scheme+"://") || !strings.HasSuffix(res.Bundle, "/v00000001") {
		t.Fatalf("result bundle %q, want the URL of v00000001", res.Bundle)
	}
	sb := fetchLatest(t, u)
	if sb.Manifest.Step != res.Steps {
		t.Fatalf("the bucket's bundle has step %d, the run %d", sb.Manifest.Step, res.Steps)
	}
	if vs, err := bundle.NewDir(cks).Versions(context.Background()); err != nil || len(vs) == 0 {
		t.Fatalf("no local checkpoint: %v %v", vs, err)
	}

	// The bucket's bundle is a --model for eval and score, and an
	// --init-from, fetched and checked each time, into temporary
	// directories removed after.
	t.Setenv("TMPDIR", t.TempDir())
	lm, err := LoadModel(u)
	if err != nil {
		t.Fatal(err)
	}
	if lm.Dir != res.Bundle || lm.Manifest.Step != res.Steps {
		t.Fatalf("LoadModel(bucket): %s at step %d, want %s at %d", lm.Dir, lm.Manifest.Step, res.Bundle, res.Steps)
	}
	out := filepath.Join(t.TempDir(), "scores.parquet")
	if _, err := Score(context.Background(), ScoreConfig{Model: u, Data: data, Out: out}); err != nil {
		t.Fatal(err)
	}
	var prog syncBuffer
	if _, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Out: t.TempDir(), InitFrom: u, MaxSteps: 1, Progress: &prog}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(prog.String(), "warm-started") {
		t.Fatalf("no warm start from the bucket:\n%s", prog.String())
	}
	// Nothing fetched is left behind.
	if m, _ := filepath.Glob(filepath.Join(os.TempDir(), "onestone-fetch-*")); len(m) > 0 {
		t.Errorf("fetched copies left behind: %v", m)
	}
}

// TestStreamToObjectStoreSurvivesOutage: a stream publishing to a bucket
// keeps training while the store is down, commits no offset it has not
// published meanwhile, and publishes and commits everything once the
// store is back, although the topic went quiet meanwhile (the last
// events are trained during the outage). What fails a publish (and how
// soon) is each SDK's retries: bundle's TestBucketStoreFailsMidUpload
// tests that on each provider.
func TestStreamToObjectStoreSurvivesOutage(t *testing.T) {
	if raceEnabled {
		// make test's race budget; the store code runs under the race
		// detector in the bundle and serving tests.
		t.Skip("skipped under the race detector")
	}
	dir, spec := streamData(t, 60000)
	s3test.One(t, func(t *testing.T) { testStreamToObjectStoreSurvivesOutage(t, dir, spec) })
}

func testStreamToObjectStoreSurvivesOutage(t *testing.T, dir, spec string) {
	const parts = 2
	brokers, topic := streamBrokers(t, parts)
	n := produceFile(t, brokers, topic, []string{filepath.Join(dir, "train-00000.parquet")}, 0, 7000)
	u := s3test.URL(t)
	scheme, _, _ := strings.Cut(u, "://")
	proxy := s3test.NewProxy(t, s3test.Open(t))

	const failed = "publish to the object store failed"
	var prog, logs syncBuffer
	var mu sync.Mutex
	var pubs []Published
	commits := 0
	var outage sync.WaitGroup
	var downCommitted, upCommitted map[int]int64
	cfg := StreamConfig{
		Brokers: brokers, Topic: topic, GroupID: "g1", SpecPath: spec, Model: proxy.Rewrite(u), Checkpoints: t.TempDir(),
		CheckpointEvents: 5000, CheckpointEvery: time.Second, MaxBatch: 1000, BatchWait: 50 * time.Millisecond,
		Window: 10000, Progress: &prog, ProgressEvery: time.Second, SessionTimeout: 6 * time.Second,
		PublishTimeout: 20 * time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Observers: []Observer{onPublish(func(p Published) {
			mu.Lock()
			defer mu.Unlock()
			pubs = append(pubs, p)
		}), onCommit(func(c Commit) {
			mu.Lock()
			defer mu.Unlock()
			if commits++; commits == 1 {
				// The store goes down after the first commit (this runs
				// on the stream's goroutine, so before its next publish
				// begins) until a publish failed (the SDK's retries
				// absorb short outages).
				proxy.Down()
				downCommitted = committedOffsets(t, brokers, topic, "g1", parts)
				outage.Go(func() {
					deadline := time.Now().Add(60 * time.Second)
					for !strings.Contains(logs.String(), failed) && time.Now().Before(deadline) {
						time.Sleep(50 * time.Millisecond)
					}
					upCommitted = committedOffsets(t, brokers, topic, "g1", parts)
					proxy.Up()
				})
			}
		})},
	}
	l, err := runStream(t, cfg, func(p Published) bool { return sumOffsets(p.Position.Offsets) >= n })
	outage.Wait()
	if err != nil {
		t.Fatalf("StreamTrain: %v\n%s", err, prog.String())
	}
	if !strings.Contains(logs.String(), failed) {
		t.Errorf("no publish failed during the outage:\n%s", logs.String())
	}
	if sumOffsets(upCommitted) != sumOffsets(downCommitted) {
		t.Errorf("offsets committed while the store was down: %v, then %v", downCommitted, upCommitted)
	}
	last := pubs[len(pubs)-1]
	if last.Examples != n {
		t.Errorf("last publish: %d examples, want %d", last.Examples, n)
	}
	// Every commit names a published bundle and commits no further than
	// its position: nothing unpublished was committed.
	pubAt := map[string]int64{}
	for _, p := range pubs {
		pubAt[p.Version] = sumOffsets(p.Position.Offsets)
	}
	for _, c := range l.commits {
		at, ok := pubAt[c.Version]
		if c.Err == nil && (!ok || sumOffsets(c.Position.Offsets) > at) {
			t.Errorf("commit of %v (%d) after publishing %s (%d, found %v)", c.Position.Offsets, sumOffsets(c.Position.Offsets), c.Version, at, ok)
		}
	}
	if got := committedOffsets(t, brokers, topic, "g1", parts); sumOffsets(got) != n {
		t.Errorf("committed offsets %v, want %d in all", got, n)
	}
	// A failed publish leaves its rows for the next: the publishes that
	// succeeded are a snapshot, then deltas each of the one before.
	if len(pubs) < 2 || pubs[0].Parent != "" {
		t.Errorf("publishes %+v: want a snapshot and deltas", pubs)
	}
	for i := 1; i < len(pubs); i++ {
		if pubs[i].Parent != pubs[i-1].Version {
			t.Errorf("publish %s: parent %q, want %s, the one published before", pubs[i].Version, pubs[i].Parent, pubs[i-1].Version)
		}
	}
	sb := fetchLatest(t, u)
	if sb.Manifest.Version != last.Version || sb.Manifest.Examples != n {
		t.Errorf("the bucket's latest is %s with %d examples, want %s with %d", sb.Manifest.Version, sb.Manifest.Examples, last.Version, n)
	}
	if !strings.HasPrefix(last.Dir, scheme+"://") {
		t.Errorf("Published.Dir %q, want the version's URL", last.Dir)
	}
}

// TestStreamToObjectStoreConflict: a second publisher moving the pointer
// fences the stream off: its next publish fails with ErrConflict, which
// stops it, rather than overwriting the other's version. Each provider's
// compare-and-swap is tested on its own by bundle's
// TestBucketConcurrentPublishers and TestBucketPointerRace.
func TestStreamToObjectStoreConflict(t *testing.T) {
	if raceEnabled {
		t.Skip("skipped under the race detector (see TestStreamToObjectStoreSurvivesOutage)")
	}
	dir, spec := streamData(t, 60000)
	s3test.One(t, func(t *testing.T) { testStreamToObjectStoreConflict(t, dir, spec) })
}

func testStreamToObjectStoreConflict(t *testing.T, dir, spec string) {
	brokers, topic := streamBrokers(t, 1)
	produceFile(t, brokers, topic, []string{filepath.Join(dir, "train-00000.parquet")}, 0, 0)
	u := s3test.URL(t)
	other, err := bundle.OpenBucket(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var prog syncBuffer
	var more sync.WaitGroup
	defer more.Wait()
	first := true
	cfg := StreamConfig{
		Brokers: brokers, Topic: topic, GroupID: "g1", SpecPath: spec, Model: u, Checkpoints: t.TempDir(),
		CheckpointEvents: 5000, CheckpointEvery: time.Second, MaxBatch: 1000, BatchWait: 50 * time.Millisecond,
		Window: 10000, Progress: &prog, SessionTimeout: 6 * time.Second, Logger: quietStreamLogger(),
		Observers: []Observer{onPublish(func(p Published) {
			if !first {
				return
			}
			first = false
			// Another publisher copies the stream's version as a new one
			// and points latest at it.
			ctx := context.Background()
			files := []bundle.File{}
			for _, name := range []string{bundle.WeightsFile, bundle.ManifestFile, bundle.ManifestSumFile} {
				r, err := other.Open(ctx, p.Version, name)
				if err != nil {
					t.Error(err)
					return
				}
				data, err := io.ReadAll(r)
				r.Close()
				if err != nil {
					t.Error(err)
					return
				}
				files = append(files, bundle.File{Name: name, Write: func(w io.Writer) error { _, err := w.Write(data); return err }})
			}
			v, err := other.NewVersion(ctx, files)
			if err == nil {
				err = other.SetLatest(ctx, v)
			}
			if err != nil {
				t.Error(err)
			}
			// More events, so that the stream has to publish again.
			more.Go(func() {
				if _, err := produceFiles(context.Background(), brokers, topic, []string{filepath.Join(dir, "train-00001.parquet")}, 0, 3000); err != nil {
					t.Error(err)
				}
			})
		})},
	}
	_, err = runStream(t, cfg, func(Published) bool { return false })
	if !errors.Is(err, bundle.ErrConflict) {
		t.Fatalf("StreamTrain after another publisher moved the pointer: %v, want ErrConflict\n%s", err, prog.String())
	}
}
