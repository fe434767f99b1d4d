package pipelines

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/segmentio/kafka-go"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/internal/s3test"
	"github.com/onestone/onestone/serving"
)

// jsonEvents reads up to n rows of Parquet data as JSON events.
func jsonEvents(b *testing.B, s *Setup, path string, n int) [][]byte {
	b.Helper()
	ctx := context.Background()
	src, err := ingest.NewParquetSource(ctx, ingest.ParquetConfig{Paths: []string{path}, Columns: s.Spec.Columns(true), BatchSize: 4096})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	var out [][]byte
	for rec, err := range ingest.Records(ctx, src) {
		if err != nil {
			b.Fatal(err)
		}
		evs, err := RowsToJSON(rec)
		rec.Release()
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range evs {
			out = append(out, e)
		}
		if len(out) >= n {
			break
		}
	}
	return out[:min(n, len(out))]
}

// BenchmarkStreamDecodeTransform measures JSON events to feature batches
// (the decode and transform of every micro-batch) on one core, in
// micro-batches of 4096 events.
func BenchmarkStreamDecodeTransform(b *testing.B) {
	dir, spec := streamData(b, 60000)
	s, err := LoadSetup(spec, nil)
	if err != nil {
		b.Fatal(err)
	}
	events := jsonEvents(b, s, filepath.Join(dir, "train-00000.parquet"), 16384)
	var bytes int
	for _, e := range events {
		bytes += len(e)
	}
	alloc := memory.NewCheckedAllocator(memory.DefaultAllocator)
	dec, err := features.NewJSONDecoder(s.Spec.Schema(true), features.JSONConfig{Allocator: alloc})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		dec.Release()
		alloc.AssertSize(b, 0)
	}()
	var batch features.Batch
	const micro = 4096
	b.SetBytes(int64(bytes))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for lo := 0; lo < len(events); lo += micro {
			for _, e := range events[lo:min(lo+micro, len(events))] {
				if err := dec.Append(e); err != nil {
					b.Fatal(err)
				}
			}
			rec := dec.NewRecordBatch()
			err := s.Transformer.TransformTo(&batch, rec)
			rec.Release()
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(events)*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkStreamTrain measures the whole stream on the small test model:
// events already in the (embedded) topic are fetched, decoded,
// transformed, scored for the progressive metrics, trained on, and
// checkpointed and published every 16384 events.
func BenchmarkStreamTrain(b *testing.B) {
	dir, spec := streamData(b, 60000)
	brokers, topic := streamBrokers(b, 4)
	// Three checkpoints of four full micro-batches: no run waits for the
	// checkpoint timer.
	const micro, perCheckpoint = 4096, 4 * 4096
	n := produceFile(b, brokers, topic, []string{filepath.Join(dir, "train-*.parquet")}, 0, 3*perCheckpoint)
	b.ResetTimer()
	for i := range b.N {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err := StreamTrain(ctx, StreamConfig{
			Brokers: brokers, Topic: topic, GroupID: fmt.Sprintf("bench-%d", i), SpecPath: spec,
			Model: filepath.Join(b.TempDir(), "live"), MaxBatch: micro, CheckpointEvents: perCheckpoint, Logger: quietStreamLogger(),
			Observers: []Observer{onCommit(func(c Commit) {
				if sumOffsets(c.Position.Offsets) >= n {
					cancel()
				}
			})},
		})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*int64(b.N))/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkStreamFreshness measures, with the default stream settings
// (checkpoint every 10 s, micro-batches of up to 500 ms) and the server's
// default 2 s polling, the seconds from an event being produced to a served
// model that trained on it: events flow at 2000/s; at a random moment the
// partitions' end offsets are taken, and GET /v1/model is polled until the
// served bundle's position covers them. Run with -benchtime=3x or so.
func BenchmarkStreamFreshness(b *testing.B) {
	dir, spec := streamData(b, 150000)
	brokers, topic := streamBrokers(b, 4)
	root := filepath.Join(b.TempDir(), "live")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prodDone := make(chan error, 1)
	go func() {
		_, err := produceFiles(ctx, brokers, topic, []string{filepath.Join(dir, "train-*.parquet")}, 2000, 0)
		prodDone <- err
	}()
	first := make(chan struct{}, 1)
	streamDone := make(chan error, 1)
	go func() {
		streamDone <- StreamTrain(ctx, StreamConfig{
			Brokers: brokers, Topic: topic, GroupID: "fresh", SpecPath: spec, Model: root, Logger: quietStreamLogger(),
			Observers: []Observer{onPublish(func(Published) {
				select {
				case first <- struct{}{}:
				default:
				}
			})},
		})
	}()
	defer func() {
		cancel()
		if err := <-streamDone; err != nil {
			b.Error(err)
		}
		<-prodDone
	}()
	select {
	case <-first:
	case <-time.After(time.Minute):
		b.Fatal("no bundle published within a minute")
	}
	srv, err := serving.NewServer(serving.ServerConfig{Models: root, Addr: "127.0.0.1:0", Logger: quietStreamLogger()})
	if err != nil {
		b.Fatal(err)
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Run(ctx) }()
	defer func() { cancel(); <-srvDone }()
	for srv.Addr() == "" {
		time.Sleep(10 * time.Millisecond)
	}
	url := "http://" + srv.Addr() + "/v1/model"
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	kc := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: &kafka.Transport{}}
	defer kc.Transport.(*kafka.Transport).CloseIdleConnections()
	var secs []float64
	b.ResetTimer()
	for i := range b.N {
		time.Sleep(time.Duration(1+3*i%7) * time.Second) // a different phase of the checkpoint cycle each time
		t0 := time.Now()
		ends, err := endOffsets(ctx, kc, topic, 4)
		if err != nil {
			b.Fatal(err)
		}
		for {
			pos, err := servedPosition(hc, url)
			if err != nil {
				b.Fatal(err)
			}
			if covers(pos.Offsets, ends) {
				break
			}
			if time.Since(t0) > 2*time.Minute {
				b.Fatalf("served position %v has not reached %v in 2 minutes", pos.Offsets, ends)
			}
			time.Sleep(50 * time.Millisecond)
		}
		secs = append(secs, time.Since(t0).Seconds())
	}
	b.StopTimer()
	slices.Sort(secs)
	b.ReportMetric(secs[len(secs)/2], "s-median")
	b.ReportMetric(secs[len(secs)-1], "s-max")
}

func endOffsets(ctx context.Context, kc *kafka.Client, topic string, parts int) (map[int]int64, error) {
	var reqs []kafka.OffsetRequest
	for p := range parts {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	resp, err := kc.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return nil, p.Error
		}
		out[p.Partition] = p.LastOffset
	}
	return out, nil
}

func servedPosition(hc *http.Client, url string) (ingest.Position, error) {
	var pos ingest.Position
	resp, err := hc.Get(url)
	if err != nil {
		return pos, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return pos, fmt.Errorf("GET %s: %d %s %v", url, resp.StatusCode, body, err)
	}
	var info serving.ModelInfo
	if err := json.Unmarshal(body, &info); err != nil {
		return pos, err
	}
	if len(info.Position) > 0 {
		err = json.Unmarshal(info.Position, &pos)
	}
	return pos, err
}

func covers(have, want map[int]int64) bool {
	for p, o := range want {
		if have[p] < o {
			return false
		}
	}
	return true
}

// BenchmarkStreamFreshnessReplicas is BenchmarkStreamFreshness with the
// stream publishing to an object store (the S3 test server) and three
// servers following it, each with its own cache and polling every
// second: the seconds from an event being produced to the moment every
// replica serves a model that trained on it. The sub-benchmarks publish
// snapshots and deltas (the default) or a full bundle at every
// checkpoint. Run with -benchtime=4x or so; the model is the tests' small
// one.
func BenchmarkStreamFreshnessReplicas(b *testing.B) {
	for _, c := range []struct {
		name string
		snap time.Duration
	}{{"deltas", 0}, {"full", -1}} {
		b.Run(c.name, func(b *testing.B) { streamFreshnessReplicas(b, c.snap) })
	}
}

func streamFreshnessReplicas(b *testing.B, snapshotEvery time.Duration) {
	const replicas = 3
	dir, spec := streamData(b, 150000)
	brokers, topic := streamBrokers(b, 4)
	u := s3test.URL(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prodDone := make(chan error, 1)
	go func() {
		_, err := produceFiles(ctx, brokers, topic, []string{filepath.Join(dir, "train-*.parquet")}, 2000, 0)
		prodDone <- err
	}()
	first := make(chan struct{}, 1)
	streamDone := make(chan error, 1)
	var bytes, pubs atomic.Int64
	go func() {
		streamDone <- StreamTrain(ctx, StreamConfig{
			Brokers: brokers, Topic: topic, GroupID: "fresh", SpecPath: spec, Model: u, Checkpoints: b.TempDir(),
			SnapshotEvery: snapshotEvery, Logger: quietStreamLogger(),
			Observers: []Observer{onPublish(func(p Published) {
				bytes.Add(p.Bytes)
				pubs.Add(1)
				select {
				case first <- struct{}{}:
				default:
				}
			})},
		})
	}()
	defer func() {
		cancel()
		if err := <-streamDone; err != nil {
			b.Error(err)
		}
		<-prodDone
	}()
	select {
	case <-first:
	case <-time.After(time.Minute):
		b.Fatal("no bundle published within a minute")
	}
	var urls []string
	for range replicas {
		srv, err := serving.NewServer(serving.ServerConfig{Models: u, Cache: b.TempDir(), Addr: "127.0.0.1:0", Poll: time.Second, Logger: quietStreamLogger()})
		if err != nil {
			b.Fatal(err)
		}
		srvDone := make(chan error, 1)
		go func() { srvDone <- srv.Run(ctx) }()
		defer func() { cancel(); <-srvDone }()
		for srv.Addr() == "" {
			time.Sleep(10 * time.Millisecond)
		}
		urls = append(urls, "http://"+srv.Addr()+"/v1/model")
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	kc := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: &kafka.Transport{}}
	defer kc.Transport.(*kafka.Transport).CloseIdleConnections()
	var secs []float64
	b.ResetTimer()
	for i := range b.N {
		time.Sleep(time.Duration(1+3*i%7) * time.Second)
		t0 := time.Now()
		ends, err := endOffsets(ctx, kc, topic, 4)
		if err != nil {
			b.Fatal(err)
		}
		for _, url := range urls {
			for {
				pos, err := servedPosition(hc, url)
				if err == nil && covers(pos.Offsets, ends) {
					break
				}
				if time.Since(t0) > 2*time.Minute {
					b.Fatalf("%s: served position %v has not reached %v in 2 minutes (%v)", url, pos.Offsets, ends, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		secs = append(secs, time.Since(t0).Seconds())
	}
	b.StopTimer()
	slices.Sort(secs)
	b.ReportMetric(secs[len(secs)/2], "s-median")
	b.ReportMetric(secs[len(secs)-1], "s-max")
	if n := pubs.Load(); n > 0 {
		b.ReportMetric(float64(bytes.Load())/float64(n), "B/publish")
	}
}
