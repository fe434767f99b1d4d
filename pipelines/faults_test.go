package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/mmoe"
)

// flipByte flips one bit of the byte at the middle of a file.
func flipByte(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x04
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies the files of a version directory.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLoadsRefuseBadBundles: evaluation, batch scoring, --init-from and
// --resume read bundles and checkpoints through the same checks as the
// server: a flipped byte, and a manifest asking for 2,000,000,000 rows,
// are refused, the latter before anything is allocated.
func TestLoadsRefuseBadBundles(t *testing.T) {
	dir, spec := genData(t, 6000, "")
	data := []string{filepath.Join(dir, "train-*.parquet")}
	out := filepath.Join(t.TempDir(), "models")
	res, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Out: out, Epochs: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	fresh := func(src string) string { // a copy to break
		dst := filepath.Join(t.TempDir(), filepath.Base(src))
		copyDir(t, src, dst)
		return dst
	}

	// A flipped byte in the weights: eval, score and --init-from refuse.
	bad := fresh(res.Bundle)
	flipByte(t, filepath.Join(bad, bundle.WeightsFile))
	if _, err := LoadModel(bad); !errors.Is(err, bundle.ErrCorrupt) {
		t.Errorf("eval's LoadModel: %v, want ErrCorrupt", err)
	}
	_, err = Score(ctx, ScoreConfig{Model: bad, Data: data, Out: filepath.Join(t.TempDir(), "s.parquet")})
	if !errors.Is(err, bundle.ErrCorrupt) {
		t.Errorf("score: %v, want ErrCorrupt", err)
	}
	_, err = TrainBatch(ctx, TrainBatchConfig{SpecPath: spec, Data: data, Out: filepath.Join(t.TempDir(), "m"), InitFrom: bad, MaxSteps: 1})
	if !errors.Is(err, bundle.ErrCorrupt) {
		t.Errorf("--init-from: %v, want ErrCorrupt", err)
	}

	// A flipped byte in the optimizer state: --resume refuses.
	cks, err := bundle.Checkpoints(out).Versions(ctx)
	if err != nil || len(cks) == 0 {
		t.Fatalf("checkpoints %v %v", cks, err)
	}
	flipByte(t, filepath.Join(bundle.Checkpoints(out).Path(cks[len(cks)-1]), bundle.OptimizerFile))
	_, err = TrainBatch(ctx, TrainBatchConfig{SpecPath: spec, Data: data, Out: out, Resume: true, Epochs: 2})
	if !errors.Is(err, bundle.ErrCorrupt) || !regexp.MustCompile(`optimizer.bin: \d+ bytes of CRC-32C`).MatchString(err.Error()) {
		t.Errorf("--resume: %v, want ErrCorrupt naming optimizer.bin", err)
	}

	// A manifest (checksums intact) asking for a table of 2,000,000,000
	// rows: over the budget, and with a budget it fits, the weights do not
	// agree. Neither allocates it.
	huge := fresh(res.Bundle)
	p := filepath.Join(huge, bundle.ManifestFile)
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	edited := regexp.MustCompile(`(user_id, kind: categorical, buckets: )\d+`).ReplaceAll(raw, []byte("${1}2000000000"))
	if string(edited) == string(raw) {
		t.Fatal("no user_id buckets in the manifest")
	}
	sum := bundle.FileSum{Size: int64(len(edited)), CRC32C: fmt.Sprintf("%08x", crc32.Checksum(edited, crc32.MakeTable(crc32.Castagnoli)))}
	side, _ := json.Marshal(sum)
	os.WriteFile(p, edited, 0o644)
	os.WriteFile(filepath.Join(huge, bundle.ManifestSumFile), side, 0o644)
	for _, tc := range []struct {
		lim  bundle.Limits
		want error
	}{{bundle.Limits{}, bundle.ErrTooLarge}, {bundle.Limits{MaxBytes: 1 << 50}, mmoe.ErrFormat}} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := LoadModelLimits(huge, tc.lim)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, tc.want) {
			t.Errorf("budget %d: %v, want %v", tc.lim.MaxBytes, err, tc.want)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
			t.Errorf("budget %d: allocated %d MiB before refusing", tc.lim.MaxBytes, n>>20)
		}
	}
	_, err = Score(ctx, ScoreConfig{Model: huge, Data: data, Out: filepath.Join(t.TempDir(), "s.parquet")})
	if !errors.Is(err, bundle.ErrTooLarge) {
		t.Errorf("score: %v, want ErrTooLarge", err)
	}
}
