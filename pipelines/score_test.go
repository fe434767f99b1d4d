package pipelines

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
	"github.com/onestone/onestone/serving"
)

const scoreTestSpec = `fields:
  - {name: user_id, kind: categorical, buckets: 1000}
  - {name: tags, kind: multi_categorical, buckets: 50}
  - {name: item_id, kind: categorical, buckets: 1000, side: candidate}
  - {name: price, kind: numeric, transform: log1p, side: candidate}
tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cvr, kind: esmm, label: conv, parent: ctr}
`

// TestScoreToParquet scores a Parquet file with typed columns (int64 ids)
// offline and checks the output file, and that the same events sent as
// JSON through the serving path score the same to the last bit.
func TestScoreToParquet(t *testing.T) {
	tmp := t.TempDir()
	spec, err := features.ParseSpec(strings.NewReader(scoreTestSpec))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	tasks := []mtl.TaskConfig{{Name: "ctr", Label: "click"}, {Name: "cvr", Kind: "esmm", Label: "conv", Parent: "ctr"}}
	ts, err := mtl.NewTaskSet(tasks)
	if err != nil {
		t.Fatal(err)
	}
	model, err := mmoe.New(mmoe.Config{EmbeddingDim: 4, Experts: 2, ExpertHidden: []int{8}, Tower: []int{4}, Seed: 3}, tr.Layout(), []string{"ctr", "cvr"})
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(tmp, "models")
	m := &bundle.Manifest{Spec: scoreTestSpec, Model: model.Config(), Tasks: ts.Configs(), Objectives: ts.Objectives()}
	if _, err := bundle.Write(context.Background(), bundle.NewDir(root), m, model, nil); err != nil {
		t.Fatal(err)
	}

	// The events, as Parquet types.
	const n = 1500
	mem := memory.NewGoAllocator()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "request_id", Type: arrow.BinaryTypes.String},
		{Name: "user_id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "tags", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
		{Name: "item_id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "price", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	}, nil)
	rb := array.NewRecordBuilder(mem, schema)
	defer rb.Release()
	events := make([]string, n)
	for i := range n {
		user, item, price := int64(i*7919%100003), int64(1_000_000_000_000+i*31), float64(i%97)*1.25
		tags := []string{"a" + strconv.Itoa(i%5), "b" + strconv.Itoa(i%3)}
		rb.Field(0).(*array.StringBuilder).Append(fmt.Sprintf("r%d", i))
		rb.Field(1).(*array.Int64Builder).Append(user)
		lb := rb.Field(2).(*array.ListBuilder)
		lb.Append(true)
		lb.ValueBuilder().(*array.StringBuilder).AppendValues(tags, nil)
		rb.Field(3).(*array.Int64Builder).Append(item)
		priceJSON := strconv.FormatFloat(price, 'g', -1, 64)
		if i%10 == 0 {
			rb.Field(4).AppendNull()
			priceJSON = "null"
		} else {
			rb.Field(4).(*array.Float64Builder).Append(price)
		}
		events[i] = fmt.Sprintf(`{"user_id": %d, "tags": ["%s", "%s"], "item_id": %d, "price": %s}`, user, tags[0], tags[1], item, priceJSON)
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	data := filepath.Join(tmp, "events.parquet")
	f, err := os.Create(data)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pqarrow.NewFileWriter(schema, f, parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(600)), pqarrow.DefaultWriterProps())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(tmp, "scores.parquet")
	res, err := Score(context.Background(), ScoreConfig{Model: root, Data: []string{data}, Out: out, IDColumns: []string{"request_id"}, BatchSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != n || res.Version != "v00000001" {
		t.Fatalf("result %+v", res)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := pqarrow.ReadTable(context.Background(), bytes.NewReader(b), parquet.NewReaderProperties(mem), pqarrow.ArrowReadProperties{}, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	var names []string
	for _, f := range tbl.Schema().Fields() {
		names = append(names, f.Name)
	}
	if strings.Join(names, ",") != "request_id,ctr,cvr,ctcvr" || tbl.NumRows() != n {
		t.Fatalf("output columns %v, %d rows", names, tbl.NumRows())
	}
	col := func(i int) []float32 {
		var v []float32
		for _, c := range tbl.Column(i).Data().Chunks() {
			v = append(v, c.(*array.Float32).Float32Values()...)
		}
		return v
	}
	var ids []string
	for _, c := range tbl.Column(0).Data().Chunks() {
		for j := range c.Len() {
			ids = append(ids, c.(*array.String).Value(j))
		}
	}
	offline := [][]float32{col(1), col(2), col(3)}

	// Online: the same events as JSON, in a request of their own.
	bundle, err := serving.LoadBundle(filepath.Join(root, "v00000001"))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := serving.NewScorer(bundle, serving.ScorerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	pick := []int{0, 1, 2, 599, 600, 999, 1000, 1001, 1499}
	var body strings.Builder
	body.WriteString(`{"candidates": [`)
	for i, row := range pick {
		if i > 0 {
			body.WriteString(",")
		}
		body.WriteString(events[row])
	}
	body.WriteString("]}")
	resp, err := sc.ScoreBody(context.Background(), []byte(body.String()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Release()
	for _, res := range resp.Results {
		row := pick[res.Index]
		if ids[row] != fmt.Sprintf("r%d", row) {
			t.Fatalf("row %d has id %s", row, ids[row])
		}
		for o := range res.Scores {
			if math.Float32bits(res.Scores[o]) != math.Float32bits(offline[o][row]) {
				t.Errorf("row %d %s: online %v, offline %v", row, resp.Objectives[o], res.Scores[o], offline[o][row])
			}
		}
	}

	// Bad id columns fail before writing, and leave no file behind.
	for _, ids := range [][]string{{"nope"}, {"request_id", "nope"}} {
		bad := filepath.Join(tmp, "bad.parquet")
		_, err := Score(context.Background(), ScoreConfig{Model: root, Data: []string{data}, Out: bad, IDColumns: ids})
		if err == nil || !strings.Contains(err.Error(), ids[len(ids)-1]) {
			t.Errorf("id columns %q: error %v", ids, err)
		}
		left, _ := filepath.Glob(filepath.Join(tmp, "*.parquet"))
		hidden, _ := filepath.Glob(filepath.Join(tmp, ".*"))
		if len(left) != 2 || len(hidden) != 0 {
			t.Errorf("id columns %q left %v %v", ids, left, hidden)
		}
	}
}
