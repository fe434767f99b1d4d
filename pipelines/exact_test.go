package pipelines

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/serving"
)

// exactSpec rewrites the generated spec's user_id and item_id fields
// (2000 ids each) into exact tables too small for all their ids, so that
// training admits, evicts and expires.
func exactSpec(t *testing.T, spec string) {
	t.Helper()
	rewriteField(t, spec, "user_id", "exact: {capacity: 1200, admit_after: 2, evict: lfu, shared: 50}")
	rewriteField(t, spec, "item_id", "exact: {capacity: 900, ttl: 6000, evict: lru}")
}

// rewriteField replaces the buckets of a generated spec's categorical
// field with mode.
func rewriteField(t testing.TB, spec, field, mode string) {
	t.Helper()
	b, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	s := regexp.MustCompile(`name: `+field+`, kind: categorical, buckets: \d+`).ReplaceAllString(string(b),
		"name: "+field+", kind: categorical, "+mode)
	if s == string(b) {
		t.Fatalf("the generated spec has no hashed %s to rewrite", field)
	}
	if err := os.WriteFile(spec, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestExactTablesResumeAndServe: with exact tables, a run stopped and
// resumed ends with the weights and the id maps of an uninterrupted run,
// bit for bit; the maps are in the bundle, which serving loads (its sample
// re-scored through the maps) and evaluation reproduces.
func TestExactTablesResumeAndServe(t *testing.T) {
	if raceEnabled {
		// Four training runs on one goroutine (Workers: 1): 18 s under
		// -race for nothing concurrent to check; the kill test trains
		// exact tables under -race.
		t.Skip("single-goroutine training runs; skipped under -race to keep make test short")
	}
	dir, spec := genData(t, 30000, "")
	exactSpec(t, spec)
	data := []string{filepath.Join(dir, "train-*.parquet")}
	valid := []string{filepath.Join(dir, "test-00000.parquet")}
	full := filepath.Join(t.TempDir(), "full")
	rep, err := NewReport(ReportConfig{Dir: filepath.Join(t.TempDir(), "report")})
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	a, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Valid: valid, EvalEvery: 1000, Out: full, MaxSteps: 60, Workers: 1,
		Observers: []Observer{rep}, Progress: &progress, ProgressEvery: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Write(); err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(t.TempDir(), "part")
	if _, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Valid: valid, EvalEvery: 1000, Out: part, MaxSteps: 25, Workers: 1}); err != nil {
		t.Fatal(err)
	}
	b, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Valid: valid, EvalEvery: 1000, Out: part, MaxSteps: 60, Workers: 1, Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	ma, err := LoadModel(a.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := LoadModel(b.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range ma.IDs().Stats() {
		if st.Rows == 0 || st.Admissions <= int64(st.Rows) || st.Evictions+st.Expired == 0 {
			t.Errorf("%s: the run did not exercise admission and eviction: %s", st.Field, st)
		}
	}
	// The figures: in the result, the report and the progress line. The
	// bundle's tables are shrunk: no ids wait in them.
	shrunk := slices.Clone(a.ExactTables)
	for i := range shrunk {
		shrunk[i].Waiting = 0
	}
	if !reflect.DeepEqual(shrunk, ma.IDs().Stats()) {
		t.Errorf("the result's exact tables %v (waiting aside), the bundle's %v", a.ExactTables, ma.IDs().Stats())
	}
	if a.ExactTables[0].Waiting == 0 {
		t.Errorf("no user_id waits for admission at the end (admit_after 2): %s", a.ExactTables[0])
	}
	// The checkpoints hold the tables whole, waiting ids included, and
	// the resumed run's last checkpoint equals the uninterrupted one's.
	ckA, ckB := lastCheckpointIDs(t, full), lastCheckpointIDs(t, part)
	if !reflect.DeepEqual(ckA.IDs().State(), ckB.IDs().State()) {
		t.Fatal("the last checkpoints' id maps differ: resumed and uninterrupted")
	}
	if got := ckA.IDs().Stats()[0].Waiting; got != a.ExactTables[0].Waiting {
		t.Errorf("the last checkpoint has %d user_id ids waiting, training ended with %d", got, a.ExactTables[0].Waiting)
	}
	if !slices.Equal(ckA.IDs().State().U64["user_id.keys"], ma.IDs().State().U64["user_id.keys"]) {
		t.Error("the bundle's admitted user ids differ from the checkpoint's")
	}
	html, err := os.ReadFile(filepath.Join(rep.cfg.Dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(rep.cfg.Dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rj struct {
		ExactTables []features.IDTableStats `json:"exact_tables"`
	}
	if err := json.Unmarshal(js, &rj); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rj.ExactTables, a.ExactTables) || !bytes.Contains(html, []byte("<h2>Exact tables</h2>")) {
		t.Errorf("the report's exact tables: %v; page has the section: %v", rj.ExactTables, bytes.Contains(html, []byte("Exact tables")))
	}
	if !strings.Contains(progress.String(), "ids user_id ") || !strings.Contains(progress.String(), "; item_id ") {
		t.Errorf("the progress line does not show the tables: %q", progress.String())
	}
	if !reflect.DeepEqual(ma.IDs().State(), mb.IDs().State()) {
		t.Fatalf("id maps: resumed %v, uninterrupted %v", mb.IDs().Stats(), ma.IDs().Stats())
	}
	pa, pb := ma.Model.Params(), mb.Model.Params()
	for i := range pa {
		for j := range pa[i].Data {
			if pa[i].Data[j] != pb[i].Data[j] {
				t.Fatalf("%s[%d]: uninterrupted %v, resumed %v", pa[i].Name, j, pa[i].Data[j], pb[i].Data[j])
			}
		}
	}
	// Evaluating the bundle (its maps read back) gives what training saw.
	ev, err := Evaluate(context.Background(), ma.Setup, ma.Model, EvalConfig{Paths: valid})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ev.Metrics {
		if m.AUC != a.Final.Metrics[i].AUC {
			t.Errorf("%s: the bundle evaluates to AUC %v, training reported %v", m.Objective, m.AUC, a.Final.Metrics[i].AUC)
		}
	}
	// Serving loads it: its sample events score the same through the maps.
	sb, err := serving.LoadBundle(a.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	if sb.SampleCheck != serving.SampleExact {
		t.Errorf("sample check %q", sb.SampleCheck)
	}
	if !reflect.DeepEqual(sb.Transformer.IDs().State(), ma.IDs().State()) {
		t.Error("serving's id maps differ from the bundle's")
	}
}

// lastCheckpointIDs loads the newest checkpoint under the output root out.
func lastCheckpointIDs(t *testing.T, out string) *LoadedModel {
	t.Helper()
	cks := bundle.Checkpoints(out)
	vs, err := cks.Versions(context.Background())
	if err != nil || len(vs) == 0 {
		t.Fatalf("checkpoints under %s: %v, %v", out, vs, err)
	}
	lm, err := LoadModel(cks.Path(vs[len(vs)-1]))
	if err != nil {
		t.Fatal(err)
	}
	return lm
}
