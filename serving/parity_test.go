package serving

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/onestone/onestone/internal/kernels"
)

// TestOfflineOnlineParity scores events offline from a typed record, as
// Parquet gives it (int64 ids, a dictionary column, int64 hours), and the
// same events as JSON through the HTTP API; the scores must agree to the
// last bit, although the rows sit at other positions in other batch sizes.
// It holds in either precision: the bundle's (fp32) and bf16, the default
// of onestone serve and onestone score.
func TestOfflineOnlineParity(t *testing.T) {
	root := t.TempDir()
	writeTestBundle(t, root, 11)
	for _, p := range []string{"", "bf16"} {
		t.Run("precision="+p, func(t *testing.T) {
			srv, ts := newTestServer(t, root, ServerConfig{Scorer: ScorerConfig{Precision: p}})
			if want, _ := kernels.ParsePrecision(p); srv.Scorer().Precision() != want.Effective() {
				t.Fatalf("server runs in %v", srv.Scorer().Precision())
			}
			testParity(t, srv.Scorer(), ts)
		})
	}
}

func testParity(t *testing.T, sc *Scorer, ts *httptest.Server) {

	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "request_id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "user_id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "device", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "user_tags", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
		{Name: "age", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "hour", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "item_id", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "category", Type: &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}, Nullable: true},
		{Name: "price", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "item_tags", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
	}, nil)
	rb := array.NewRecordBuilder(mem, schema)
	defer rb.Release()
	const total, tail = 600, 37
	r := rand.New(rand.NewPCG(4, 4))
	ctxUser := int64(123456789012)
	var candidates []map[string]any
	for i := range total {
		user, device, age, hour := int64(r.IntN(500)), testDevices[r.IntN(3)], 18+r.Float64()*50, int64(r.IntN(24))
		utags := []string{fmt.Sprintf("t%d", r.IntN(20))}
		if i >= total-tail { // the request's rows share one context
			user, device, age, hour, utags = ctxUser, "android", 33.25, 7, []string{"t1", "t2"}
		}
		item, cat, price := fmt.Sprintf("item-%d", r.IntN(300)), testCategories[r.IntN(4)], r.Float64()*100
		itags := []string{fmt.Sprintf("i%d", r.IntN(20))}
		rb.Field(0).(*array.Int64Builder).Append(int64(i))
		rb.Field(1).(*array.Int64Builder).Append(user)
		rb.Field(2).(*array.StringBuilder).Append(device)
		lb := rb.Field(3).(*array.ListBuilder)
		lb.Append(true)
		lb.ValueBuilder().(*array.StringBuilder).AppendValues(utags, nil)
		rb.Field(4).(*array.Float64Builder).Append(age)
		rb.Field(5).(*array.Int64Builder).Append(hour)
		rb.Field(6).(*array.StringBuilder).Append(item)
		if err := rb.Field(7).(*array.BinaryDictionaryBuilder).AppendString(cat); err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 {
			rb.Field(8).AppendNull() // a missing price: default + indicator
			price = math.NaN()
		} else {
			rb.Field(8).(*array.Float64Builder).Append(price)
		}
		lb = rb.Field(9).(*array.ListBuilder)
		lb.Append(true)
		lb.ValueBuilder().(*array.StringBuilder).AppendValues(itags, nil)
		if i >= total-tail {
			c := map[string]any{"item_id": item, "category": cat, "item_tags": itags}
			if !math.IsNaN(price) {
				c["price"] = price
			}
			candidates = append(candidates, c)
		}
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	offline, err := sc.ScoreRecordTo(nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	body := mustJSON(t, map[string]any{
		"context":    map[string]any{"user_id": json.Number(strconv.FormatInt(ctxUser, 10)), "device": "android", "age": 33.25, "hour": 7, "user_tags": []string{"t1", "t2"}},
		"candidates": candidates,
	})
	code, b, _ := post(t, ts.Client(), ts.URL+"/v1/score", body)
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	var doc struct {
		Results []struct {
			Index  int                        `json:"index"`
			Scores map[string]json.RawMessage `json:"scores"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Results) != tail {
		t.Fatalf("%d results", len(doc.Results))
	}
	for _, res := range doc.Results {
		row := total - tail + res.Index
		for o, name := range sc.Objectives() {
			online, err := strconv.ParseFloat(string(res.Scores[name]), 32)
			if err != nil {
				t.Fatal(err)
			}
			if math.Float32bits(float32(online)) != math.Float32bits(offline[o][row]) {
				t.Errorf("row %d %s: online %v, offline %v", row, name, float32(online), offline[o][row])
			}
		}
	}
}

// TestOfflineOnlineParityExact: with exact tables (an admitted or
// unknown user id, Parquet's int64 against JSON's numbers and strings,
// exact tags with null items), null and absent values, a context that
// the candidates take or override, over several parts and workers, the
// scores online equal the offline scores of the merged rows bit for bit.
func TestOfflineOnlineParityExact(t *testing.T) {
	_, root := exactBundle(t)
	b, err := LoadBundle(root + "/" + latestVersion(t, root))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"", "bf16"} {
		s, err := NewScorer(b, ScorerConfig{Precision: p, Workers: 2, BatchRows: 3, MinWorkerRows: 2})
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(6, 6))
		for k, ctxUser := range []any{nil, int64(3), int64(123456789012)} {
			for _, override := range []bool{false, true} {
				testParityExact(t, s, r, ctxUser, override, fmt.Sprintf("precision %q, request %d, override %v", p, k, override))
			}
		}
	}
}

func testParityExact(t *testing.T, s *Scorer, r *rand.Rand, ctxUser any, override bool, name string) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "user_id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "item_id", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "item_tags", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
	}, nil)
	rb := array.NewRecordBuilder(mem, schema)
	defer rb.Release()
	const n = 23
	var cands []map[string]any
	for i := range n {
		c := map[string]any{}
		user := ctxUser
		if override && i%4 == 1 {
			user = int64(1 + r.IntN(8)) // 1..5 admitted
			if i%8 == 1 {
				c["user_id"] = strconv.FormatInt(user.(int64), 10) // a string id: the same key
			} else {
				c["user_id"] = user
			}
		} else if i%5 == 2 {
			c["user_id"] = nil // null: the context's
		}
		if u, ok := user.(int64); ok {
			rb.Field(0).(*array.Int64Builder).Append(u)
		} else {
			rb.Field(0).AppendNull()
		}
		if i%3 != 0 {
			item := fmt.Sprintf("item-%d", r.IntN(50))
			c["item_id"] = item
			rb.Field(1).(*array.StringBuilder).Append(item)
		} else {
			rb.Field(1).AppendNull()
		}
		lb := rb.Field(2).(*array.ListBuilder)
		switch i % 4 {
		case 0:
			lb.AppendNull()
		case 1:
			c["item_tags"] = []any{}
			lb.Append(true)
		default:
			tags := []any{"a", nil, fmt.Sprintf("t%d", r.IntN(6))}
			c["item_tags"] = tags
			lb.Append(true)
			vb := lb.ValueBuilder().(*array.StringBuilder)
			vb.Append("a")
			vb.AppendNull()
			vb.Append(tags[2].(string))
		}
		cands = append(cands, c)
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	offline, err := s.ScoreRecordTo(nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	req := map[string]any{"candidates": cands}
	if ctxUser != nil {
		req["context"] = map[string]any{"user_id": ctxUser}
	}
	resp, err := s.ScoreBody(context.Background(), mustJSON(t, req))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer resp.Release()
	if len(resp.Results) != n {
		t.Fatalf("%s: %d results", name, len(resp.Results))
	}
	for _, res := range resp.Results {
		if math.Float32bits(res.Scores[0]) != math.Float32bits(offline[0][res.Index]) {
			t.Errorf("%s: candidate %d: online %v, offline %v", name, res.Index, res.Scores[0], offline[0][res.Index])
		}
	}
}

// latestVersion returns the last bundle version directory under root.
func latestVersion(t *testing.T, root string) string {
	t.Helper()
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	v := ""
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), "v") && e.Name() > v {
			v = e.Name()
		}
	}
	if v == "" {
		t.Fatalf("no bundle under %s", root)
	}
	return v
}
