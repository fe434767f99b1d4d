package serving

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"
)

var (
	stdOnce   sync.Once
	stdScorer *Scorer
	stdErr    error
)

func stdTestScorer(tb testing.TB) *Scorer {
	stdOnce.Do(func() {
		m, model, err := StdManifest(1)
		if err != nil {
			stdErr = err
			return
		}
		if err := FillSampleScores(m, model); err != nil {
			stdErr = err
			return
		}
		b, err := NewBundle(m, model)
		if err != nil {
			stdErr = err
			return
		}
		stdScorer, stdErr = NewScorer(b, ScorerConfig{Rank: "ctr * cvr^0.5"})
	})
	if stdErr != nil {
		tb.Fatal(stdErr)
	}
	return stdScorer
}

func TestStdRequest(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	body := StdRequest(r, 3, `"top_k":2`)
	var doc struct {
		Context    map[string]any   `json:"context"`
		Candidates []map[string]any `json:"candidates"`
		TopK       int              `json:"top_k"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if len(doc.Context) != 26 || len(doc.Candidates) != 3 || len(doc.Candidates[0]) != 13 || doc.TopK != 2 {
		t.Fatalf("request %s", body)
	}
}

// BenchmarkScore500 scores std requests of one context and 500 candidates,
// from the raw body to the encoded answer, one request at a time, with the
// model run on 1 or 2 goroutines (ScorerConfig.Workers), and reports
// ms/request, candidates/s and the p50/p99 latency.
func BenchmarkScore500(b *testing.B) {
	base := stdTestScorer(b)
	for _, w := range []int{1, 2} {
		b.Run("workers="+strconv.Itoa(w), func(b *testing.B) {
			s, err := NewScorer(base.b, ScorerConfig{Rank: "ctr * cvr^0.5", Workers: w})
			if err != nil {
				b.Fatal(err)
			}
			benchScore500(b, s)
		})
	}
}

func benchScore500(b *testing.B, s *Scorer) {
	r := rand.New(rand.NewPCG(3, 3))
	bodies := make([][]byte, 8)
	for i := range bodies {
		bodies[i] = StdRequest(r, 500, `"top_k":50`)
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
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/request")
	b.ReportMetric(float64(500*b.N)/b.Elapsed().Seconds(), "candidates/s")
	if len(lat) >= 20 {
		p50, p99 := percentiles(lat)
		b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	}
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	s := append([]time.Duration(nil), d...)
	for i := 1; i < len(s); i++ { // insertion sort: small n, no import
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[len(s)/2], s[len(s)*99/100]
}

// TestScoreAllocsPerRequest: steady-state allocations of a request do not
// grow with its candidates (they are per column, not per candidate).
func TestScoreAllocsPerRequest(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counting (the race detector makes sync.Pool drop items)")
	}
	s := loadTestScorer(t, ScorerConfig{Rank: "ctr * price", BatchRows: 1024})
	r := rand.New(rand.NewPCG(8, 8))
	allocs := func(n int) float64 {
		body := testRequest(t, r, n, `,"top_k":20`)
		ctx := context.Background()
		return testing.AllocsPerRun(20, func() {
			resp, err := s.ScoreBody(ctx, body)
			if err != nil {
				t.Fatal(err)
			}
			resp.Release()
		})
	}
	a50, a1000 := allocs(50), allocs(1000)
	if a1000 > a50+10 {
		t.Fatalf("%v allocations for 1000 candidates, %v for 50: allocation per candidate", a1000, a50)
	}
	t.Logf("allocations per request: %v (50 candidates), %v (1000)", a50, a1000)
}

// BenchmarkDecodeTransform500 measures the serving path before the model:
// request decoding, context merge and the feature transform of a std
// request of 500 candidates.
func BenchmarkDecodeTransform500(b *testing.B) {
	s := stdTestScorer(b)
	body := StdRequest(rand.New(rand.NewPCG(3, 3)), 500, "")
	st := s.pool.Get().(*scoreState)
	defer s.pool.Put(st)
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeRequest(&st.req, body); err != nil {
			b.Fatal(err)
		}
		if err := st.decodeContext(&st.req); err != nil {
			b.Fatal(err)
		}
		pt := &st.parts[0]
		pt.lo, pt.hi = 0, len(st.req.Candidates)
		err := st.preparePart(pt, &st.req)
		st.releaseContext()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/request")
}
