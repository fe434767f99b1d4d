package serving

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/internal/kernels"
)

// writePrecisionBundle writes the test bundle of seed as a model trained
// in precision p: the manifest says p and its sample is scored in p.
func writePrecisionBundle(t *testing.T, root string, seed uint64, p string) string {
	t.Helper()
	m, model := testManifest(t, seed, 8)
	m.Precision = p
	if err := FillSampleScores(m, model, nil); err != nil {
		t.Fatal(err)
	}
	d := bundle.NewDir(root)
	v, err := bundle.Write(context.Background(), d, m, model, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d.Path(v)
}

// sampleOf returns the recorded sample scores of a bundle, flattened.
func sampleOf(b *Bundle) []float32 {
	var out []float32
	for _, s := range b.Manifest.Sample {
		out = append(out, s.Scores...)
	}
	return out
}

// scoresOf scores the bundle's sample events with sc, flattened.
func scoresOf(t *testing.T, sc *Scorer) []float32 {
	t.Helper()
	var events [][]byte
	for _, s := range sc.b.Manifest.Sample {
		events = append(events, s.Event)
	}
	resp, err := sc.Score(context.Background(), &Request{Candidates: events})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Release()
	out := make([]float32, len(events)*len(sc.Objectives()))
	for _, r := range resp.Results {
		copy(out[r.Index*len(sc.Objectives()):], r.Scores)
	}
	return out
}

// maxDiff is the largest absolute difference, and whether all bits agree.
func maxDiff(a, b []float32) (float64, bool) {
	var d float64
	same := len(a) == len(b)
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
		same = same && math.Float32bits(a[i]) == math.Float32bits(b[i])
	}
	return d, same
}

// TestBundlePrecision checks the precision a bundle records: a bf16
// bundle's sample is scored in bf16 and checked bit for bit at load, even
// where the CPU lacks AVX512_BF16 (on the emulation); a scorer runs in the
// bundle's precision by default, in the other when told, and falls back to
// fp32 without the instructions; the two precisions' scores agree within
// the tolerance docs/serving.md states.
func TestBundlePrecision(t *testing.T) {
	fpDir := writePrecisionBundle(t, t.TempDir(), 9, "")
	bfDir := writePrecisionBundle(t, t.TempDir(), 9, "bf16")
	fp, err := LoadBundle(fpDir)
	if err != nil {
		t.Fatal(err)
	}
	bf, err := LoadBundle(bfDir)
	if err != nil {
		t.Fatal(err)
	}
	if fp.Precision != kernels.FP32 || bf.Precision != kernels.BF16 {
		t.Fatalf("bundle precisions %v and %v", fp.Precision, bf.Precision)
	}
	if bf.SampleCheck != SampleExact {
		t.Fatalf("the bf16 bundle's sample was compared %q by the build that wrote it", bf.SampleCheck)
	}
	d, same := maxDiff(sampleOf(fp), sampleOf(bf))
	if same {
		t.Fatal("the bf16 bundle's sample has the fp32 scores")
	}
	if d > 0.01 {
		t.Fatalf("bf16 and fp32 sample scores differ by %g", d)
	}
	newScorer := func(b *Bundle, p string) *Scorer {
		t.Helper()
		sc, err := NewScorer(b, ScorerConfig{Precision: p})
		if err != nil {
			t.Fatal(err)
		}
		return sc
	}
	for _, p := range []string{"", PrecisionBundle} {
		if fsc, bsc := newScorer(fp, p), newScorer(bf, p); fsc.Precision() != kernels.FP32 || bsc.Precision() != kernels.BF16.Effective() {
			t.Fatalf("precision %q: the fp32 bundle is served in %v, the bf16 one in %v", p, fsc.Precision(), bsc.Precision())
		}
	}
	if sc := newScorer(bf, ""); sc.Precision() != kernels.BF16.Effective() {
		t.Fatalf("default scorer of a bf16 bundle runs in %v", sc.Precision())
	} else if kernels.NativeBF16() {
		if _, same := maxDiff(scoresOf(t, sc), sampleOf(bf)); !same {
			t.Fatal("serving a bf16 bundle in bf16 does not give its sample's bits")
		}
	}
	if _, same := maxDiff(scoresOf(t, newScorer(bf, "fp32")), sampleOf(fp)); !same {
		t.Fatal("serving a bf16 bundle in fp32 does not give the fp32 scores")
	}
	if kernels.NativeBF16() {
		if _, same := maxDiff(scoresOf(t, newScorer(fp, "bf16")), sampleOf(bf)); !same {
			t.Fatal("serving an fp32 bundle in bf16 does not give the bf16 scores")
		}
	}

	// Without AVX512_BF16: the bf16 bundle still passes its bit-exact
	// check, and is served in fp32.
	was := kernels.SetNativeBF16(false)
	defer kernels.SetNativeBF16(was)
	bf2, err := LoadBundle(bfDir)
	if err != nil {
		t.Fatalf("without AVX512_BF16: %v", err)
	}
	if bf2.SampleCheck != SampleExact {
		t.Fatalf("without AVX512_BF16 the bf16 sample was compared %q", bf2.SampleCheck)
	}
	sc := newScorer(bf2, "")
	if sc.Precision() != kernels.FP32 {
		t.Fatalf("without AVX512_BF16 a bf16 bundle is served in %v", sc.Precision())
	}
	if _, same := maxDiff(scoresOf(t, sc), sampleOf(fp)); !same {
		t.Fatal("the fp32 fallback does not give the fp32 scores")
	}
	kernels.SetNativeBF16(was)

	if _, err := NewScorer(bf, ScorerConfig{Precision: "fp16"}); err == nil {
		t.Fatal("NewScorer took precision fp16")
	}
	p := filepath.Join(bfDir, bundle.ManifestFile)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	resealManifest(t, bfDir, []byte(strings.Replace(string(data), `"precision": "bf16"`, `"precision": "fp16"`, 1)))
	if _, err := LoadBundle(bfDir); err == nil || !strings.Contains(err.Error(), "precision") {
		t.Fatalf("a manifest with precision fp16: %v", err)
	}
}
