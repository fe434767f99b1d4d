package serving

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onestone/onestone/bundle"
)

func loadTestScorer(t testing.TB, cfg ScorerConfig) *Scorer {
	t.Helper()
	dir := writeTestBundle(t, t.TempDir(), 7)
	b, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewScorer(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLoadBundle(t *testing.T) {
	root := t.TempDir()
	dir := writeTestBundle(t, root, 3)
	if filepath.Base(dir) != "v00000001" {
		t.Fatalf("first version is %s", dir)
	}
	b, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest.Version != "v00000001" {
		t.Errorf("version %q", b.Manifest.Version)
	}
	if got := strings.Join(b.Tasks.Objectives(), ","); got != "ctr,cvr,ctcvr" {
		t.Errorf("objectives %s", got)
	}
	if len(b.Manifest.Sample) != 8 || len(b.Manifest.Sample[0].Scores) != 3 {
		t.Fatalf("sample not scored: %+v", b.Manifest.Sample)
	}
	// Through the latest link, the version is the target's.
	if err := bundle.NewDir(root).SetLatest(context.Background(), filepath.Base(dir)); err != nil {
		t.Fatal(err)
	}
	d2, err := bundle.Resolve(filepath.Join(root, bundle.LatestLink))
	if err != nil {
		t.Fatal(err)
	}
	b2, err := LoadBundle(d2)
	if err != nil {
		t.Fatal(err)
	}
	if b2.Manifest.Version != "v00000001" {
		t.Errorf("version through latest: %q", b2.Manifest.Version)
	}
}

// TestLoadBundleRefuses corrupts a good bundle in several ways; each must be
// refused with an error naming the directory and the failed check.
func TestLoadBundleRefuses(t *testing.T) {
	editManifest := func(f func(m map[string]any)) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, bundle.ManifestFile)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			f(m)
			resealManifest(t, dir, mustJSON(t, m))
		}
	}
	flipWeights := func(at func(data []byte, hlen int) int) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, bundle.WeightsFile)
			data, _ := os.ReadFile(p)
			hlen := int(data[0]) | int(data[1])<<8 | int(data[2])<<16
			data[at(data, hlen)] ^= 0x08
			os.WriteFile(p, data, 0o644)
		}
	}
	// The first tensor in data order is a first-layer weight every example
	// uses: an exponent bit of its first float.
	firstWeight := func(data []byte, hlen int) int { return 8 + hlen + 3 }
	cases := []struct {
		name   string
		breakf func(t *testing.T, dir string)
		want   string
	}{
		{"weights byte flipped", flipWeights(firstWeight), "does not match its checksum"},
		// The last bytes are embedding rows the sample does not use: only
		// the checksum sees them.
		{"embedding byte flipped", flipWeights(func(data []byte, _ int) int { return len(data) - 2 }), "does not match its checksum"},
		// Without checksums (a bundle from before them), the sample check
		// still sees a weight every example uses.
		{"weights byte flipped, no checksums", func(t *testing.T, dir string) {
			flipWeights(firstWeight)(t, dir)
			stripChecksums(t, dir)
		}, "sample event"},
		{"weights truncated", func(t *testing.T, dir string) {
			p := filepath.Join(dir, bundle.WeightsFile)
			data, _ := os.ReadFile(p)
			os.WriteFile(p, data[:len(data)-100], 0o644)
		}, "truncated or still being copied"},
		{"weights truncated, no checksums", func(t *testing.T, dir string) {
			p := filepath.Join(dir, bundle.WeightsFile)
			data, _ := os.ReadFile(p)
			os.WriteFile(p, data[:len(data)-100], 0o644)
			stripChecksums(t, dir)
		}, "file truncated"},
		{"manifest byte flipped", func(t *testing.T, dir string) {
			p := filepath.Join(dir, bundle.ManifestFile)
			data, _ := os.ReadFile(p)
			data[len(data)/2] ^= 0x01
			os.WriteFile(p, data, 0o644)
		}, "bundle.json.crc32c records"},
		{"huge table", editManifest(func(m map[string]any) {
			m["spec"] = strings.Replace(m["spec"].(string), "user_id, kind: categorical, buckets: 1000}", "user_id, kind: categorical, buckets: 2000000000}", 1)
		}), "the budget is"},
		{"weights missing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, bundle.WeightsFile))
		}, bundle.WeightsFile},
		{"sample score changed", editManifest(func(m map[string]any) {
			s := m["sample"].([]any)[2].(map[string]any)
			sc := s["scores"].([]any)
			sc[1] = sc[1].(float64) * 1.0000001
		}), "sample event 2"},
		{"objectives wrong", editManifest(func(m map[string]any) {
			m["objectives"] = []any{"ctr", "cvr"}
		}), "objectives"},
		{"spec broken", editManifest(func(m map[string]any) {
			m["spec"] = "fields: [{name: a, kind: nonsense}]\ntasks: []\n"
		}), "feature spec"},
		{"tasks differ from spec", editManifest(func(m map[string]any) {
			m["tasks"] = []any{map[string]any{"name": "ctr", "kind": "binary", "label": "click"}}
			m["objectives"] = []any{"ctr"}
		}), "tasks"},
		{"model shape differs", editManifest(func(m map[string]any) {
			m["model"].(map[string]any)["embedding_dim"] = 5
		}), bundle.WeightsFile},
		{"stats missing", editManifest(func(m map[string]any) {
			delete(m, "stats")
		}), "transformer"},
		{"format version", editManifest(func(m map[string]any) {
			m["format_version"] = 99
		}), "format version"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeTestBundle(t, t.TempDir(), 5)
			c.breakf(t, dir)
			_, err := LoadBundle(dir)
			if err == nil {
				t.Fatal("corrupt bundle loaded")
			}
			if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not name %s and %q", err, dir, c.want)
			}
		})
	}
}

// TestScoreMergesContext: a request with a context and candidates scores
// each candidate exactly as the merged event (context keys, overridden by
// the candidate's) scored alone.
func TestScoreMergesContext(t *testing.T) {
	s := loadTestScorer(t, ScorerConfig{BatchRows: 7}) // several forward passes
	r := rand.New(rand.NewPCG(1, 2))
	body := testRequest(t, r, 23, "")
	var raw struct {
		Context    map[string]any   `json:"context"`
		Candidates []map[string]any `json:"candidates"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	// Candidate 3 overrides a context feature; candidate 5 nulls one (and
	// so falls back to the context).
	raw.Candidates[3]["device"] = "web-override"
	raw.Candidates[3]["age"] = 99.5
	raw.Candidates[5]["age"] = nil
	body = mustJSON(t, raw)
	resp, err := s.ScoreBody(context.Background(), body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Release()
	if len(resp.Results) != 23 {
		t.Fatalf("%d results", len(resp.Results))
	}
	// Merged events, scored one by one.
	for _, res := range resp.Results {
		merged := map[string]any{}
		for k, v := range raw.Context {
			merged[k] = v
		}
		for k, v := range raw.Candidates[res.Index] {
			if v != nil {
				merged[k] = v
			}
		}
		one, err := s.Score(context.Background(), &Request{Candidates: [][]byte{mustJSON(t, merged)}})
		if err != nil {
			t.Fatal(err)
		}
		for j, v := range one.Results[0].Scores {
			if math.Float32bits(v) != math.Float32bits(res.Scores[j]) {
				t.Errorf("candidate %d objective %s: batch %v, alone %v", res.Index, resp.Objectives[j], res.Scores[j], v)
			}
		}
		one.Release()
	}
	// Ranked by ctr (the default), descending.
	for i := 1; i < len(resp.Results); i++ {
		if resp.Results[i-1].RankScore < resp.Results[i].RankScore {
			t.Fatalf("not sorted at %d", i)
		}
		if resp.Results[i].RankScore != float64(resp.Results[i].Scores[0]) {
			t.Fatalf("rank score %v is not ctr %v", resp.Results[i].RankScore, resp.Results[i].Scores[0])
		}
	}
}

func TestScoreRankFormulaAndTopK(t *testing.T) {
	s := loadTestScorer(t, ScorerConfig{Rank: "ctr^1 * cvr^0.5 * price * 2"})
	r := rand.New(rand.NewPCG(3, 4))
	body := testRequest(t, r, 40, `,"objectives":["ctcvr","ctr","cvr"],"top_k":5`)
	resp, err := s.ScoreBody(context.Background(), body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Release()
	if len(resp.Results) != 5 {
		t.Fatalf("%d results, want top 5", len(resp.Results))
	}
	if strings.Join(resp.Objectives, ",") != "ctcvr,ctr,cvr" {
		t.Fatalf("objectives %v", resp.Objectives)
	}
	var raw struct {
		Candidates []struct {
			Price float64 `json:"price"`
		} `json:"candidates"`
	}
	json.Unmarshal(body, &raw)
	all, err := s.Score(context.Background(), mustDecode(t, testRequestNoTop(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer all.Release()
	for i, res := range resp.Results {
		want := float64(res.Scores[1]) * math.Pow(float64(res.Scores[2]), 0.5) * raw.Candidates[res.Index].Price * 2
		if res.RankScore != want {
			t.Errorf("result %d: rank %v, want %v", i, res.RankScore, want)
		}
		if all.Results[i].Index != res.Index {
			t.Errorf("top-5 result %d is candidate %d, full ranking has %d", i, res.Index, all.Results[i].Index)
		}
		// ctcvr = ctr x cvr (within float32 rounding).
		if d := math.Abs(float64(res.Scores[0]) - float64(res.Scores[1])*float64(res.Scores[2])); d > 1e-6 {
			t.Errorf("ctcvr %v != ctr %v x cvr %v", res.Scores[0], res.Scores[1], res.Scores[2])
		}
	}
}

func testRequestNoTop(body []byte) []byte {
	return []byte(strings.Replace(string(body), `,"top_k":5`, "", 1))
}

func mustDecode(t testing.TB, body []byte) *Request {
	t.Helper()
	var req Request
	if err := DecodeRequest(&req, body, 0); err != nil {
		t.Fatal(err)
	}
	return &req
}

// TestScoreErrors: each bad request is a *RequestError of the right kind
// naming the field.
func TestScoreErrors(t *testing.T) {
	s := loadTestScorer(t, ScorerConfig{Rank: "ctr * price", MaxCandidates: 3, Required: []string{"item_id"}})
	cases := []struct {
		name, body string
		kind       error
		field      string
	}{
		{"malformed", `{"candidates": [`, ErrBadRequest, "candidates[0]"},
		{"malformed inside", `{"candidates": [{"a": tru}]}`, ErrBadRequest, "candidates"},
		// ScoreBody splits the candidates unchecked: a malformed one is
		// still the request's error before a bad value or field after it.
		{"malformed after a bad value", `{"candidates": [{"item_id": "a", "price": "cheap"}, {"item_id": tru}]}`, ErrBadRequest, "candidates"},
		{"malformed before a bad top_k", `{"candidates": [{"item_id": "a", "price": 1, "x": [}], "top_k": -1}`, ErrBadRequest, "candidates"},
		{"not an object", `[1]`, ErrBadRequest, ""},
		{"unknown key", `{"candidates": [], "topk": 3}`, ErrBadRequest, "topk"},
		{"missing candidates", `{"context": {}}`, ErrBadRequest, "candidates"},
		{"candidates not array", `{"candidates": {}}`, ErrBadRequest, "candidates"},
		{"candidate not object", `{"candidates": [{"item_id": "a", "price": 1}, 3]}`, ErrBadRequest, "candidates[1]"},
		{"top_k negative", `{"candidates": [], "top_k": -1}`, ErrBadRequest, "top_k"},
		{"top_k fraction", `{"candidates": [], "top_k": 1.5}`, ErrBadRequest, "top_k"},
		{"objective not string", `{"candidates": [], "objectives": [1]}`, ErrBadRequest, "objectives[0]"},
		{"unknown objective", `{"candidates": [], "objectives": ["ctr", "gmv"]}`, ErrUnknownObjective, "objectives[1]"},
		{"too many", `{"candidates": [{}, {}, {}, {}]}`, ErrTooManyCandidates, "candidates"},
		{"wrong type in candidate", `{"candidates": [{"item_id": "a", "price": "cheap"}]}`, ErrBadRequest, "candidates[0].price"},
		{"wrong type in context", `{"context": {"age": [1]}, "candidates": [{"item_id": "a", "price": 1}]}`, ErrBadRequest, "context.age"},
		{"list expected", `{"candidates": [{"item_id": "a", "price": 1, "item_tags": "x"}]}`, ErrBadRequest, "candidates[0].item_tags"},
		{"required missing", `{"candidates": [{"item_id": "a", "price": 1}, {"price": 2}]}`, ErrBadRequest, "candidates[1].item_id"},
		{"rank field missing", `{"candidates": [{"item_id": "a", "price": 1}, {"item_id": "b"}]}`, ErrBadRequest, "candidates[1].price"},
		{"rank field not number", `{"candidates": [{"item_id": "a", "price": 1, "extra": {"price": 2}}, {"item_id": "b", "price": null, "x": 1}]}`, ErrBadRequest, "candidates[1].price"},
		{"duplicate key", `{"candidates": [], "candidates": []}`, ErrBadRequest, "candidates"},
		{"trailing data", `{"candidates": []} x`, ErrBadRequest, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := s.ScoreBody(context.Background(), []byte(c.body))
			if err == nil {
				resp.Release()
				t.Fatal("accepted")
			}
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("error %v (%T) is not a RequestError", err, err)
			}
			if !errors.Is(err, c.kind) {
				t.Errorf("error %v: want kind %v", err, c.kind)
			}
			if re.Field != c.field {
				t.Errorf("error %v: field %q, want %q", err, re.Field, c.field)
			}
		})
	}
	// Context supplies the rank field and the required feature.
	resp, err := s.ScoreBody(context.Background(), []byte(`{"context": {"price": 3, "item_id": "x"}, "candidates": [{}, {"price": 5}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Results[0].Index != 1 && resp.Results[1].Index != 1 {
		t.Fatal("candidate 1 missing")
	}
	resp.Release()
}

// TestDecodeRequestCandidateLimit: the limit is enforced while decoding:
// the decoder stops at the candidate after the limit, so what follows it
// (here malformed JSON) is never scanned, and a request at the limit
// passes.
func TestDecodeRequestCandidateLimit(t *testing.T) {
	var req Request
	at := `{"candidates": [{"a": 1}, {}, {"b": [2]}], "top_k": 2}`
	if err := DecodeRequest(&req, []byte(at), 3); err != nil {
		t.Fatalf("3 candidates at a limit of 3: %v", err)
	}
	if len(req.Candidates) != 3 || req.TopK != 2 {
		t.Fatalf("decoded %d candidates, top_k %d", len(req.Candidates), req.TopK)
	}
	over := `{"candidates": [{}, {}, {}, {"x": ` + strings.Repeat("[", 10000)
	err := DecodeRequest(&req, []byte(over), 3)
	var re *RequestError
	if !errors.As(err, &re) || !errors.Is(err, ErrTooManyCandidates) || re.Field != "candidates" {
		t.Fatalf("4th candidate at a limit of 3: error %v, want ErrTooManyCandidates on candidates", err)
	}
	if !strings.Contains(re.Msg, "more than 3 candidates") {
		t.Errorf("message %q does not say the limit", re.Msg)
	}
	if len(req.Candidates) > 3 {
		t.Errorf("kept %d candidates past the limit", len(req.Candidates))
	}
	// Without a limit the same body is malformed.
	if err := DecodeRequest(&req, []byte(over), 0); errors.Is(err, ErrTooManyCandidates) || !errors.Is(err, ErrBadRequest) {
		t.Fatalf("no limit: error %v, want ErrBadRequest", err)
	}
}

// TestScoreNonFinite: a numeric value that is finite in JSON but not once
// transformed to float32 (age 1e300 is standardized into +Inf) scores
// exactly as the value missing does, through the bundle's real
// Transformer and model, in the context and in a candidate that
// overrides it; no score is NaN or infinite.
func TestScoreNonFinite(t *testing.T) {
	s := loadTestScorer(t, ScorerConfig{})
	score := func(ctxAge, candAge string) [][]float32 {
		t.Helper()
		body := `{"context": {"user_id": 7, "device": "ios", "age": ` + ctxAge + `, "hour": 3},
			"candidates": [{"item_id": "a", "price": 3, "category": "toys"}, {"item_id": "b", "price": 1e300, "age": ` + candAge + `}]}`
		resp, err := s.ScoreBody(context.Background(), []byte(body))
		if err != nil {
			t.Fatalf("age %s/%s: %v", ctxAge, candAge, err)
		}
		defer resp.Release()
		out := make([][]float32, len(resp.Results))
		for _, res := range resp.Results {
			for _, v := range res.Scores {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Errorf("age %s/%s: candidate %d scores %v", ctxAge, candAge, res.Index, res.Scores)
				}
			}
			if math.IsNaN(res.RankScore) || math.IsInf(res.RankScore, 0) {
				t.Errorf("age %s/%s: candidate %d rank score %v", ctxAge, candAge, res.Index, res.RankScore)
			}
			out[res.Index] = slices.Clone(res.Scores)
		}
		return out
	}
	missing := score("null", "null")
	finite := score("30", "null")
	if slices.Equal(missing[0], finite[0]) {
		t.Fatal("age does not change the score: the test cannot tell a default from a value")
	}
	for _, v := range []string{"1e300", "-1e300", "1.7976931348623157e308"} {
		for _, where := range []string{"context", "candidate"} {
			ctxAge, candAge := v, "null"
			if where == "candidate" {
				ctxAge, candAge = "null", v
			}
			got := score(ctxAge, candAge)
			for c := range got {
				if !slices.Equal(got[c], missing[c]) {
					t.Errorf("age %s in the %s: candidate %d scores %v, want the missing value's %v", v, where, c, got[c], missing[c])
				}
			}
		}
	}
}

func TestRankParse(t *testing.T) {
	good := map[string]int{"": 0, "ctr": 1, "ctr^1 * cvr^0.5 * price": 3, " ctcvr*bid^-1.5*0.5 ": 3, "x.y_z-1^2e-1": 1}
	for src, n := range good {
		f, err := parseRank(src)
		if err != nil {
			t.Errorf("%q: %v", src, err)
			continue
		}
		if len(f.factors) != n {
			t.Errorf("%q: %d factors, want %d", src, len(f.factors), n)
		}
	}
	for _, src := range []string{"ctr +cvr", "ctr^", "ctr**cvr", "*", "ctr^x", "ctr^inf", "1e999"} {
		if _, err := parseRank(src); !errors.Is(err, ErrRank) {
			t.Errorf("%q: error %v, want ErrRank", src, err)
		}
	}
	p, _ := parseRank("ctr^2 * 3 * price^0.5")
	plan := p.bind([]string{"ctr", "cvr"})
	if plan.constant != 3 || len(plan.objs) != 1 || plan.objs[0].pow != 2 || plan.fields[0] != "price" || plan.fpows[0] != 0.5 {
		t.Fatalf("plan %+v", plan)
	}
}

// FuzzDecodeRequest: the decoder never panics, accepts what encoding/json
// accepts as a request envelope, and every candidate it returns is valid
// JSON.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"context": {"a": 1}, "candidates": [{"b": "x"}, {}], "objectives": ["ctr"], "top_k": 3}`))
	f.Add([]byte(`{"candidates": [{"s": "\u00e9\ud83d\ude00", "l": [1, 2.5e3, null, true]}]}`))
	f.Add([]byte(`{"candidates": [`))
	f.Add([]byte(`{"candidates": [{"a": [[[[]]]]}], "top_k": null, "context": null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req Request
		err := DecodeRequest(&req, body, 0)
		if err != nil {
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a RequestError", err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		for i, c := range req.Candidates {
			if !json.Valid(c) || c[0] != '{' {
				t.Fatalf("candidate %d %q is not a JSON object", i, c)
			}
		}
		if req.Context != nil && (!json.Valid(req.Context) || req.Context[0] != '{') {
			t.Fatalf("context %q is not a JSON object", req.Context)
		}
		if req.TopK < 0 {
			t.Fatalf("negative top_k")
		}
	})
}

// TestScoreWorkersSameScores: splitting a request over workers and passes
// gives the scores of one pass, bit for bit, also when the candidates of
// one part override a context field (that part is scored row by row, the
// others against the context).
func TestScoreWorkersSameScores(t *testing.T) {
	dir := writeTestBundle(t, t.TempDir(), 21)
	b, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	one, err := NewScorer(b, ScorerConfig{BatchRows: 512})
	if err != nil {
		t.Fatal(err)
	}
	split, err := NewScorer(b, ScorerConfig{Workers: 3, MinWorkerRows: 4, BatchRows: 5})
	if err != nil {
		t.Fatal(err)
	}
	body := testRequest(t, rand.New(rand.NewPCG(2, 2)), 61, "")
	var raw struct {
		Context    map[string]any   `json:"context"`
		Candidates []map[string]any `json:"candidates"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	raw.Candidates[2]["device"] = "web-override" // in the first of 3 parts
	for name, body := range map[string][]byte{"context": body, "override": mustJSON(t, raw)} {
		t.Run(name, func(t *testing.T) {
			for range 5 { // the workers take parts and passes in varying order
				r1, err := one.ScoreBody(context.Background(), body)
				if err != nil {
					t.Fatal(err)
				}
				r2, err := split.ScoreBody(context.Background(), body)
				if err != nil {
					t.Fatal(err)
				}
				for i := range r1.Results {
					a, b := r1.Results[i], r2.Results[i]
					if a.Index != b.Index {
						t.Fatalf("rank %d: candidate %d vs %d", i, a.Index, b.Index)
					}
					for j := range a.Scores {
						if math.Float32bits(a.Scores[j]) != math.Float32bits(b.Scores[j]) {
							t.Fatalf("candidate %d: %v vs %v", a.Index, a.Scores, b.Scores)
						}
					}
				}
				r1.Release()
				r2.Release()
			}
		})
	}
}

// TestScoreWorkersFirstError: with bad candidates in several parts, the
// error names the first bad candidate whichever worker finds which, and the
// scorer's pooled state scores the next request correctly.
func TestScoreWorkersFirstError(t *testing.T) {
	s := loadTestScorer(t, ScorerConfig{Workers: 3, MinWorkerRows: 4, BatchRows: 5})
	body := testRequest(t, rand.New(rand.NewPCG(3, 3)), 40, "")
	var raw struct {
		Context    map[string]any   `json:"context"`
		Candidates []map[string]any `json:"candidates"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	raw.Candidates[33]["price"] = "cheap" // third part
	raw.Candidates[17]["price"] = "dear"  // second part
	bad := mustJSON(t, raw)
	for range 10 {
		_, err := s.ScoreBody(context.Background(), bad)
		var re *RequestError
		if !errors.As(err, &re) || re.Field != "candidates[17].price" {
			t.Fatalf("error %v, want one naming candidates[17].price", err)
		}
		resp, err := s.ScoreBody(context.Background(), body)
		if err != nil {
			t.Fatalf("the good request after a bad one: %v", err)
		}
		if len(resp.Results) != 40 {
			t.Fatalf("%d results", len(resp.Results))
		}
		resp.Release()
	}
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

// TestScoreNoAllocs: a request of a context and 500 candidates, some of
// them overriding a context field, ranked by a formula and cut at top_k,
// allocates nothing once the scorer's pooled state has served one: on
// one worker, and on two with a helper (as onestone serve runs).
func TestScoreNoAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counting (the race detector makes sync.Pool drop items)")
	}
	h := NewHelpers(1, time.Millisecond)
	defer h.Close()
	r := rand.New(rand.NewPCG(10, 10))
	body := testRequest(t, r, 500, `,"top_k":50`)
	// The first 71 candidates have their own device, a context field:
	// with two workers one part merges the context, the other reads it
	// once (mmoe.Split).
	body = []byte(strings.Replace(string(body), `{"category"`, `{"device":"ios","category"`, 500/7))
	for _, cfg := range []ScorerConfig{{Rank: "ctr * price"}, {Rank: "ctr * price", Workers: 2, Helpers: h}} {
		s := loadTestScorer(t, cfg)
		ctx := context.Background()
		n := testing.AllocsPerRun(20, func() {
			resp, err := s.ScoreBody(ctx, body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Scored != 500 || len(resp.Results) != 50 {
				t.Fatalf("%d scored, %d results", resp.Scored, len(resp.Results))
			}
			resp.Release()
		})
		if n != 0 {
			t.Errorf("workers %d: %v allocations per request, want 0", cfg.Workers, n)
		}
	}
}

// TestDecodeRequestAllocs: decoding into a reused Request allocates
// nothing (the objectives, copied out as strings, are left out).
func TestDecodeRequestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counting under the race detector")
	}
	body := testRequest(t, rand.New(rand.NewPCG(4, 4)), 500, `,"top_k":50,"objectives":null`)
	var req Request
	if err := DecodeRequest(&req, body, 0); err != nil {
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(20, func() {
		if err := DecodeRequest(&req, body, 0); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("DecodeRequest allocates %v times per request, want 0", a)
	}
}

// TestResponseJSONNames: model versions and objective names are written
// as JSON strings that encoding/json reads back as they were, whatever
// their characters (strconv.AppendQuote wrote \x01 and \a, which are not
// JSON escapes); non-finite scores are null.
func TestResponseJSONNames(t *testing.T) {
	names := []string{"ctr", "a\x01b\a\x1f", `q"u\o/te`, "é😀\u2028", "tab\there\nnl", "\x7f"}
	r := &Response{ModelVersion: "v\x00\"1\\", Objectives: names}
	r.Results = []Result{
		{Index: 2, Scores: []float32{0.1, 0.25, 1e-8, 3, float32(math.NaN()), 1}, RankScore: 0.5},
		{Index: 0, Scores: []float32{1, 2, 3, 4, 5, float32(math.Inf(1))}, RankScore: math.Inf(-1)},
	}
	out := r.AppendJSON(nil)
	var doc struct {
		ModelVersion string `json:"model_version"`
		Results      []struct {
			Index     int                 `json:"index"`
			Scores    map[string]*float32 `json:"scores"`
			RankScore *float64            `json:"rank_score"`
		} `json:"results"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if doc.ModelVersion != r.ModelVersion || len(doc.Results) != 2 {
		t.Fatalf("read back %+v from %s", doc, out)
	}
	for i, res := range doc.Results {
		if res.Index != r.Results[i].Index || len(res.Scores) != len(names) {
			t.Fatalf("result %d: %+v from %s", i, res, out)
		}
		for j, name := range names {
			got, ok := res.Scores[name]
			want := r.Results[i].Scores[j]
			switch {
			case !ok:
				t.Errorf("result %d: objective %q missing from %s", i, name, out)
			case math.IsNaN(float64(want)) || math.IsInf(float64(want), 0):
				if got != nil {
					t.Errorf("result %d %q: %v, want null", i, name, *got)
				}
			case got == nil || *got != want:
				t.Errorf("result %d %q: %v, want %v", i, name, got, want)
			}
		}
	}
	if doc.Results[0].RankScore == nil || *doc.Results[0].RankScore != 0.5 || doc.Results[1].RankScore != nil {
		t.Errorf("rank scores %v %v", doc.Results[0].RankScore, doc.Results[1].RankScore)
	}
}

// resealManifest writes data as dir's manifest with its checksum beside
// it: what a writer of that manifest would leave.
func resealManifest(t testing.TB, dir string, data []byte) {
	t.Helper()
	sum := bundle.FileSum{Size: int64(len(data)), CRC32C: fmt.Sprintf("%08x", crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)))}
	if err := os.WriteFile(filepath.Join(dir, bundle.ManifestFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, bundle.ManifestSumFile), mustJSON(t, sum), 0o644); err != nil {
		t.Fatal(err)
	}
}

// stripChecksums turns dir into a bundle from before checksums: no files
// member, no manifest checksum.
func stripChecksums(t testing.TB, dir string) {
	t.Helper()
	p := filepath.Join(dir, bundle.ManifestFile)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "files")
	if err := os.WriteFile(p, mustJSON(t, m), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, bundle.ManifestSumFile)); err != nil {
		t.Fatal(err)
	}
}

// TestSampleTolerance: a bundle whose sample was scored by other
// arithmetic (another kernel or architecture) is compared within the
// tolerance: a score off by a few units in the last place passes, one off
// by 1% does not. With this build's arithmetic, one unit is refused.
func TestSampleTolerance(t *testing.T) {
	edit := func(dir, kernel string, scale float64) {
		p := filepath.Join(dir, bundle.ManifestFile)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		m["sample_kernel"] = kernel
		sc := m["sample"].([]any)[3].(map[string]any)["scores"].([]any)
		sc[0] = float64(float32(sc[0].(float64) * scale))
		resealManifest(t, dir, mustJSON(t, m))
	}
	for _, c := range []struct {
		kernel string
		scale  float64
		want   string // "" loads, else the error
		check  string
	}{
		{Kernel(), 1, "", SampleExact},
		{Kernel(), 1 + 1e-6, "compared bit for bit", ""},
		{"avx512/arm64", 1 + 1e-6, "", SampleTolerance},
		{"", 1 + 1e-6, "", SampleTolerance},
		{"avx512/arm64", 1.01, "compared within", ""},
	} {
		dir := writeTestBundle(t, t.TempDir(), 4)
		edit(dir, c.kernel, c.scale)
		b, err := LoadBundle(dir)
		if c.want == "" {
			if err != nil || b.SampleCheck != c.check {
				t.Errorf("kernel %q, score ×%v: %v, check %v; want it loaded, %s", c.kernel, c.scale, err, b, c.check)
			}
			continue
		}
		if !errors.Is(err, ErrSample) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("kernel %q, score ×%v: %v, want ErrSample %q", c.kernel, c.scale, err, c.want)
		}
	}
	for _, c := range []struct {
		got, want float32
		ok        bool
	}{
		{0.5, 0.5, true},
		{0.5000001, 0.5, true},
		{0.51, 0.5, false},
		{float32(math.NaN()), float32(math.NaN()), true},
		{float32(math.NaN()), 0.5, false},
		{float32(math.Inf(1)), float32(math.Inf(1)), true},
		{float32(math.Inf(1)), float32(math.MaxFloat32), false},
		{1e-7, 0, true},
		{2e-5, 0, false},
		{1000.05, 1000, true},
		{1000.2, 1000, false},
	} {
		if got := sameScore(c.got, c.want, false); got != c.ok {
			t.Errorf("sameScore(%v, %v) within the tolerance = %v", c.got, c.want, got)
		}
	}
}

// TestRankOrder: the k best candidates by rankOrder, heap or full sort,
// are those of sorting all of them (higher first, NaN last, ties in
// request order) and cutting at k, for scores with ties and NaNs.
func TestRankOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	var order []int
	for _, n := range []int{0, 1, 2, 7, 100, 500} {
		rank := make([]float64, n)
		for i := range rank {
			switch r.IntN(6) {
			case 0:
				rank[i] = math.NaN()
			case 1:
				rank[i] = 0.5 // ties
			default:
				rank[i] = r.Float64()
			}
		}
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		slices.SortStableFunc(all, func(a, b int) int {
			ra, rb := rank[a], rank[b]
			switch {
			case math.IsNaN(ra) && math.IsNaN(rb):
				return 0
			case math.IsNaN(ra):
				return 1
			case math.IsNaN(rb):
				return -1
			}
			return cmp.Compare(rb, ra)
		})
		for _, k := range []int{0, 1, 3, n / 5, n / 4, n/4 + 1, n / 2, n} {
			order = rankOrder(order, rank, k)
			if !slices.Equal(order, all[:min(k, n)]) {
				t.Fatalf("%d candidates, k %d: order %v, want %v", n, k, order, all[:min(k, n)])
			}
		}
	}
}
