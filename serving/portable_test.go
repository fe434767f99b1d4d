package serving_test

import (
	"context"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/internal/gen"
	"github.com/onestone/onestone/pipelines"
	"github.com/onestone/onestone/serving"
)

// portableBundle is a bundle trained by `onestone train` with the default
// build on an AVX-512 machine (its manifest's sample_kernel says so) and
// committed: TestPortableBundle loads it with whatever build and CPU runs
// the test, and `make test` runs it with -tags noasm too.
const portableBundle = "testdata/portable"

var regenPortable = flag.Bool("regen-portable", false, "retrain "+portableBundle+" (with this build: run it with the default build on an AVX-512 machine)")

// TestPortableBundle: a bundle written by another build's arithmetic
// loads (its sample compared within the tolerance), and one written by
// this build's loads with its sample compared bit for bit.
func TestPortableBundle(t *testing.T) {
	if *regenPortable {
		regenPortableBundle(t)
	}
	dir, err := bundle.Resolve(portableBundle)
	if err != nil {
		t.Fatal(err)
	}
	b, err := serving.LoadBundle(dir)
	if err != nil {
		t.Fatalf("written by %s, loaded by %s: %v", sampleKernel(t, dir), serving.Kernel(), err)
	}
	wrote := b.Manifest.SampleKernel
	if wrote == "" || !b.Manifest.Verified() {
		t.Fatalf("the committed bundle lacks its sample kernel (%q) or checksums", wrote)
	}
	want := serving.SampleTolerance
	if wrote == serving.Kernel() {
		want = serving.SampleExact
	}
	if b.SampleCheck != want {
		t.Fatalf("written by %s, loaded by %s: sample check %s, want %s", wrote, serving.Kernel(), b.SampleCheck, want)
	}
	// Under another kernel the scores really differ in their last bits:
	// the bit-for-bit check would have refused the bundle.
	differ, worst := sampleDiff(t, b)
	t.Logf("written by %s, loaded by %s: %d sample scores differ in their bits, by %.3g at most", wrote, serving.Kernel(), differ, worst)
	if want == serving.SampleExact && differ != 0 {
		t.Fatalf("the same kernel gives %d other scores", differ)
	}
	if strings.HasPrefix(serving.Kernel(), "go/") && strings.HasPrefix(wrote, "avx") && differ == 0 {
		t.Fatalf("the portable kernel reproduces %s's bits: this test checks nothing", wrote)
	}
}

func sampleKernel(t *testing.T, dir string) string {
	m, err := bundle.ReadManifest(dir)
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return m.SampleKernel
}

// sampleDiff scores b's sample events with this build and counts the
// scores whose bits differ from the recorded ones, and the largest
// difference.
func sampleDiff(t *testing.T, b *serving.Bundle) (differ int, worst float64) {
	t.Helper()
	sc, err := serving.NewScorer(b, serving.ScorerConfig{MaxCandidates: len(b.Manifest.Sample)})
	if err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	body.WriteString(`{"candidates":[`)
	for i, s := range b.Manifest.Sample {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(s.Event)
	}
	body.WriteString(`]}`)
	resp, err := sc.ScoreBody(context.Background(), []byte(body.String()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Release()
	for _, r := range resp.Results {
		for j, got := range r.Scores {
			want := b.Manifest.Sample[r.Index].Scores[j]
			if math.Float32bits(got) != math.Float32bits(want) {
				differ++
				worst = max(worst, math.Abs(float64(got)-float64(want)))
			}
		}
	}
	return differ, worst
}

// regenPortableBundle trains a small model on generated data and replaces
// the committed bundle with it.
func regenPortableBundle(t *testing.T) {
	data := t.TempDir()
	if _, err := gen.Generate(context.Background(), gen.Config{Dir: data, Rows: 20000, Users: 300, Items: 300, Seed: 11, Files: 1, RowGroupRows: 4096, TaskCorr: 0.5}); err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(data, "spec.yaml")
	text, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	if i := strings.Index(string(text), "\nmodel:"); i >= 0 {
		text = text[:i+1]
	}
	text = append(text, "model: {arch: mmoe, experts: 2, expert_hidden: [32, 16], tower: [8], embedding_dim: 8}\ntrain: {batch_size: 256, epochs: 2}\n"...)
	if err := os.WriteFile(spec, text, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "models")
	res, err := pipelines.TrainBatch(context.Background(), pipelines.TrainBatchConfig{
		SpecPath: spec, Data: []string{filepath.Join(data, "train-*.parquet")}, Valid: []string{filepath.Join(data, "test-00000.parquet")}, Out: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(portableBundle); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(portableBundle, filepath.Base(res.Bundle))
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(res.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(res.Bundle, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %s (sample kernel %s)", dst, serving.Kernel())
}
