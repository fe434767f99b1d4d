package pipelines

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/internal/gen"
	"github.com/onestone/onestone/serving"
)

// TestTrainWithItemVectors trains on generated data with an item content
// vector (gen's item_vec, list<float> in Parquet, a per_dim vector field):
// the fit finds its statistics, the model reads it as dense inputs, and
// the published bundle, whose sample events hold the vectors as JSON
// arrays, passes the server's load checks (the sample re-scored through
// the serving path, bit for bit), and its sample's Parquet rows score
// offline as their JSON events do online.
func TestTrainWithItemVectors(t *testing.T) {
	dir := t.TempDir()
	if _, err := gen.Generate(context.Background(), gen.Config{Dir: dir, Rows: 30000, Users: 2000, Items: 2000, Seed: 7, Files: 2, RowGroupRows: 4096, TaskCorr: 0.5, ItemVectors: 8}); err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "spec.yaml")
	b, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	if i := strings.Index(string(b), "\nmodel:"); i >= 0 {
		b = b[:i+1]
	}
	if err := os.WriteFile(spec, append(b, []byte(smallModel)...), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "models")
	res, err := TrainBatch(context.Background(), TrainBatchConfig{
		SpecPath: spec, Data: []string{filepath.Join(dir, "train-*.parquet")},
		Valid: []string{filepath.Join(dir, "test-00000.parquet")}, Out: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	lm, err := LoadModel(res.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	st := lm.Setup.Stats.Fields["item_vec"]
	if st == nil || st.Vector == nil || len(st.Vector.Mean) != 8 || st.Nulls != 0 || st.Values != 27000 {
		t.Fatalf("item_vec stats %+v", st)
	}
	dense := lm.Model.Layout().Dense
	var vecCols int
	for _, d := range dense {
		if strings.HasPrefix(d.Name, "item_vec") {
			vecCols++
		}
	}
	if vecCols != 8+1 {
		t.Fatalf("the model reads %d item_vec columns (%v), want 8 and the missing indicator", vecCols, dense)
	}
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(lm.Manifest.Sample[0].Event, &ev); err != nil {
		t.Fatal(err)
	}
	var v []float64
	if err := json.Unmarshal(ev["item_vec"], &v); err != nil || len(v) != 8 {
		t.Fatalf("sample event item_vec %s (%v)", ev["item_vec"], err)
	}
	bd, err := serving.LoadBundle(res.Bundle)
	if err != nil {
		t.Fatalf("the published bundle is refused by serving: %v", err)
	}
	if bd.SampleCheck != serving.SampleExact {
		t.Errorf("sample check %v, want exact on the build that wrote it", bd.SampleCheck)
	}
	// The sample's events scored offline from the Parquet rows they came
	// from, and online from their JSON: the same bits.
	var body bytes.Buffer
	body.WriteString(`{"candidates":[`)
	for i, s := range lm.Manifest.Sample {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(s.Event)
	}
	body.WriteString(`]}`)
	sc, err := serving.NewScorer(bd, serving.ScorerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := sc.ScoreBody(context.Background(), body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Release()
	src, err := ingest.NewParquetSource(context.Background(), ingest.ParquetConfig{
		Paths: []string{filepath.Join(dir, "test-00000.parquet")}, Columns: sc.Columns(), BatchSize: len(lm.Manifest.Sample)})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rec, err := src.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	offline, err := sc.ScoreRecordTo(nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Results {
		for j, online := range r.Scores {
			want := lm.Manifest.Sample[r.Index].Scores[j]
			if online != want || offline[j][r.Index] != want {
				t.Errorf("sample %d objective %d: online %v, offline %v, recorded %v", r.Index, j, online, offline[j][r.Index], want)
			}
		}
	}
}
