package serving_test

import (
	"cmp"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/internal/kernels"
	"github.com/onestone/onestone/internal/stdwork"
	"github.com/onestone/onestone/serving"
)

// The benchmarks of the std workload are external tests: internal/stdwork
// builds serving bundles, so it imports this package.

var (
	stdOnce   sync.Once
	stdScorer *serving.Scorer
	stdErr    error
)

func stdTestScorer(tb testing.TB) *serving.Scorer {
	stdOnce.Do(func() {
		m, model, err := stdwork.Manifest(1)
		if err != nil {
			stdErr = err
			return
		}
		if err := serving.FillSampleScores(m, model, nil); err != nil {
			stdErr = err
			return
		}
		b, err := serving.NewBundle(m, model, nil)
		if err != nil {
			stdErr = err
			return
		}
		stdScorer, stdErr = serving.NewScorer(b, serving.ScorerConfig{Rank: "ctr * cvr^0.5"})
	})
	if stdErr != nil {
		tb.Fatal(stdErr)
	}
	return stdScorer
}

// BenchmarkScore500 scores std requests of one context and 500 candidates,
// from the raw body to the encoded answer, one request at a time, with the
// model run on 1 or 2 goroutines (ScorerConfig.Workers), and reports
// ms/request, candidates/s and the p50/p99 latency.
func BenchmarkScore500(b *testing.B) {
	base := stdTestScorer(b)
	for _, w := range []int{1, 2} {
		b.Run("workers="+strconv.Itoa(w), func(b *testing.B) {
			s, err := serving.NewScorer(base.Bundle(), serving.ScorerConfig{Rank: "ctr * cvr^0.5", Workers: w})
			if err != nil {
				b.Fatal(err)
			}
			benchScore500(b, s)
		})
	}
}

func benchScore500(b *testing.B, s *serving.Scorer) {
	r := rand.New(rand.NewPCG(3, 3))
	bodies := make([][]byte, 8)
	for i := range bodies {
		bodies[i] = stdwork.Request(r, 500, `"top_k":50`)
	}
	ctx := context.Background()
	var out []byte
	// Warm the pool.
	resp, err := s.ScoreBody(ctx, bodies[0])
	if err != nil {
		b.Fatal(err)
	}
	resp.Release()
	lat := make([]time.Duration, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	c0 := kernels.ProcessCPU()
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		resp, err := s.ScoreBody(ctx, bodies[i%len(bodies)])
		if err != nil {
			b.Fatal(err)
		}
		out = resp.AppendJSON(out[:0])
		resp.Release()
		lat = append(lat, time.Since(t0))
	}
	cpu := kernels.ProcessCPU() - c0
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/request")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/request")
	b.ReportMetric(float64(500*b.N)/b.Elapsed().Seconds(), "candidates/s")
	if len(lat) >= 20 {
		p50, p99 := percentiles(lat)
		b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	}
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)*99/100]
}

// BenchmarkScore500Paced scores std requests of 500 candidates on two
// workers at a fixed 100 requests/s, as a lightly loaded server sees them,
// rather than back to back: "go" starts the helper worker per request,
// "helpers" runs it on Helpers polling for 10 ms. It reports the p50/p99
// latency of ScoreBody.
func BenchmarkScore500Paced(b *testing.B) {
	base := stdTestScorer(b)
	body := stdwork.Request(rand.New(rand.NewPCG(3, 3)), 500, `"top_k":50`)
	for _, mode := range []string{"go", "helpers"} {
		b.Run(mode, func(b *testing.B) {
			cfg := serving.ScorerConfig{Rank: "ctr * cvr^0.5", Workers: 2}
			if mode == "helpers" {
				h := serving.NewHelpers(1, 10*time.Millisecond)
				defer h.Close()
				cfg.Helpers = h
			}
			s, err := serving.NewScorer(base.Bundle(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			var lat []time.Duration
			next := time.Now()
			for b.Loop() {
				next = next.Add(10 * time.Millisecond)
				time.Sleep(time.Until(next))
				t0 := time.Now()
				resp, err := s.ScoreBody(context.Background(), body)
				if err != nil {
					b.Fatal(err)
				}
				resp.Release()
				lat = append(lat, time.Since(t0))
			}
			if len(lat) >= 20 {
				p50, p99 := percentiles(lat)
				b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			}
		})
	}
}

// BenchmarkDecodeTransform500 measures the serving path before the model:
// request decoding, context merge and the feature transform of a std
// request of 500 candidates.
func BenchmarkDecodeTransform500(b *testing.B) {
	s := stdTestScorer(b)
	body := stdwork.Request(rand.New(rand.NewPCG(3, 3)), 500, "")
	run, done := serving.DecodeTransform(s)
	defer done()
	b.ReportAllocs()
	var cpu time.Duration
	for b.Loop() {
		c0 := kernels.ProcessCPU()
		if err := run(body); err != nil {
			b.Fatal(err)
		}
		cpu += kernels.ProcessCPU() - c0
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/request")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/request")
}

// BenchmarkDecodeRequest500 measures the request envelope alone: a std
// request of 500 candidates checked and split into raw objects (strict,
// DecodeRequest), or split unchecked as ScoreBody does (split).
func BenchmarkDecodeRequest500(b *testing.B) {
	body := stdwork.Request(rand.New(rand.NewPCG(3, 3)), 500, `"top_k":50`)
	for _, c := range []struct {
		name   string
		decode func(*serving.Request, []byte, int) error
	}{{"strict", serving.DecodeRequest}, {"split", serving.DecodeRequestSplit}} {
		b.Run(c.name, func(b *testing.B) {
			var req serving.Request
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.decode(&req, body, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoadStdBundle loads the std bundle (about 170 MB of weights)
// from a file written once, with its checksums verified (as written), and
// without (the same files with the checksums removed, as a bundle from
// before them), and times the verification alone (one CRC-32C pass over
// the weights). The files are in the page cache after the first load.
func BenchmarkLoadStdBundle(b *testing.B) {
	dir, err := stdwork.WriteBundle(context.Background(), b.TempDir(), 1)
	if err != nil {
		b.Fatal(err)
	}
	m, err := bundle.ReadManifest(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("verify-weights", func(b *testing.B) {
		b.SetBytes(m.Files[bundle.WeightsFile].Size)
		for b.Loop() {
			if err := bundle.Verify(dir, m, bundle.WeightsFile); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("load-verified", func(b *testing.B) {
		for b.Loop() {
			if _, err := serving.LoadBundle(dir); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The same bundle without checksums.
	var doc map[string]json.RawMessage
	raw, err := os.ReadFile(filepath.Join(dir, bundle.ManifestFile))
	if err == nil {
		err = json.Unmarshal(raw, &doc)
	}
	if err != nil {
		b.Fatal(err)
	}
	delete(doc, "files")
	raw, _ = json.Marshal(doc)
	os.WriteFile(filepath.Join(dir, bundle.ManifestFile), raw, 0o644)
	os.Remove(filepath.Join(dir, bundle.ManifestSumFile))
	b.Run("load-unverified", func(b *testing.B) {
		for b.Loop() {
			bd, err := serving.LoadBundle(dir)
			if err != nil {
				b.Fatal(err)
			}
			if bd.Manifest.Verified() {
				b.Fatal("verified without checksums")
			}
		}
	})
}

// BenchmarkStdDelta times what a server does with a delta of the std
// model (26 tables of 100,001 rows x 16, 8 experts [256, 128]) in which
// RowsPerTable rows of every table and every dense parameter changed:
// applied onto the model served (a copy of it, which the server keeps
// serving meanwhile), onto the model served before in place, and read
// from the snapshot (a server that starts on it), stored as it is and
// compressed. It reports the delta's bytes beside the snapshot's, and
// CPU milliseconds per operation (the process's, all threads: on a
// loaded host the figure load moves least).
func BenchmarkStdDelta(b *testing.B) {
	const rowsPerTable = 10000
	ctx := context.Background()
	root := b.TempDir()
	dir, err := stdwork.WriteBundle(ctx, root, 1)
	if err != nil {
		b.Fatal(err)
	}
	base, err := serving.LoadBundle(dir)
	if err != nil {
		b.Fatal(err)
	}
	model, err := base.Model.Clone()
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, p := range model.Params() {
		for i := range p.Data {
			p.Data[i] *= 0.999
		}
	}
	rows := make([][]int32, len(model.Embeddings()))
	for f, e := range model.Embeddings() {
		seen := map[int32]bool{}
		for len(seen) < rowsPerTable {
			row := int32(r.IntN(e.Rows))
			if seen[row] {
				continue
			}
			seen[row] = true
			rows[f] = append(rows[f], row)
			for k := range e.Dim {
				e.Data[int(row)*e.Dim+k] += 0.01
			}
		}
		slices.Sort(rows[f])
	}
	m := *base.Manifest
	m.Sample = slices.Clone(m.Sample)
	for i := range m.Sample {
		m.Sample[i].Scores = nil
	}
	if err := serving.FillSampleScores(&m, model, nil); err != nil {
		b.Fatal(err)
	}
	d := bundle.NewDir(root)
	// The delta stored as it is and compressed (bundle.CodecZstd): the
	// time to write it (encode and write the file, as a stream's publish
	// does), its bytes, and the time to apply it.
	versions := map[string]string{}
	var deltaBytes int64
	for _, codec := range []string{bundle.CodecNone, bundle.CodecZstd} {
		name := "codec=" + cmp.Or(codec, "none")
		dm := m
		v, err := bundle.WriteDelta(ctx, d, &dm, model, nil, base.Manifest, rows, codec)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("write/"+name, func(b *testing.B) {
			cpu := kernels.ProcessCPU()
			for b.Loop() {
				wm := m
				if _, err := bundle.WriteDelta(ctx, d, &wm, model, nil, base.Manifest, rows, codec); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(kernels.ProcessCPU()-cpu)/1e6/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(dm.Files[bundle.DeltaFile].Size), "delta-bytes")
		})
		versions[codec] = v
		if codec == bundle.CodecNone {
			deltaBytes = dm.Files[bundle.DeltaFile].Size
		}
		b.Run("apply-to-served/"+name, func(b *testing.B) {
			cpu := kernels.ProcessCPU()
			for b.Loop() {
				if _, err := serving.LoadBundleFrom(d.Path(v), bundle.Limits{}, base); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(kernels.ProcessCPU()-cpu)/1e6/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(dm.Files[bundle.DeltaFile].Size), "delta-bytes")
		})
		// What a server following deltas does instead: the delta
		// written onto a model no request uses any more (the one it
		// served before), in place, without the copy.
		b.Run("apply-in-place/"+name, func(b *testing.B) {
			m, err := base.Model.Clone()
			if err != nil {
				b.Fatal(err)
			}
			spare := &serving.Bundle{Manifest: base.Manifest, Model: m}
			cpu := kernels.ProcessCPU()
			for b.Loop() {
				got, err := serving.LoadBundleInPlace(d.Path(v), spare)
				if err != nil {
					b.Fatal(err)
				}
				if got.Model != m {
					b.Fatal("the delta was not applied in place")
				}
			}
			b.ReportMetric(float64(kernels.ProcessCPU()-cpu)/1e6/float64(b.N), "cpu-ms/op")
		})
	}
	v := versions[bundle.CodecNone]
	sizes := func(b *testing.B) {
		b.ReportMetric(float64(deltaBytes), "delta-bytes")
		b.ReportMetric(float64(base.Manifest.Files[bundle.WeightsFile].Size), "snapshot-bytes")
	}
	model, rows = nil, nil
	runtime.GC()
	b.Run("from-snapshot", func(b *testing.B) {
		for b.Loop() {
			if _, err := serving.LoadBundle(d.Path(v)); err != nil {
				b.Fatal(err)
			}
		}
		sizes(b)
	})
}
