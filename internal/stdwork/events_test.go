package stdwork

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
)

// TestWriteEvents: the events read back through the Parquet source with
// the std spec's columns, transform into std batches, and carry labels
// at the rates WriteEvents promises.
func TestWriteEvents(t *testing.T) {
	dir := t.TempDir()
	const rows = 20000
	paths, err := WriteEvents(context.Background(), EventsConfig{Dir: dir, Rows: rows, Files: 3, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 {
		t.Fatalf("%d files, want 3", len(paths))
	}
	text, err := os.ReadFile(filepath.Join(dir, SpecFile))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := features.ParseSpec(strings.NewReader(string(text)))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{Labels: true})
	if err != nil {
		t.Fatal(err)
	}
	src, err := ingest.NewParquetSource(context.Background(), ingest.ParquetConfig{Paths: []string{filepath.Join(dir, "train-*.parquet")}, Columns: spec.Columns(true)})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var n, clicks, convs, convNoClick int
	distinct := make([]map[int32]bool, Fields)
	for i := range distinct {
		distinct[i] = map[int32]bool{}
	}
	var b features.Batch
	for rec, err := range ingest.Records(context.Background(), src) {
		if err != nil {
			t.Fatal(err)
		}
		err = tr.TransformTo(&b, rec)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Sparse) != Fields || b.DenseWidth != Dense || len(b.Labels) != 2 {
			t.Fatalf("batch of %d sparse, %d dense, %d labels", len(b.Sparse), b.DenseWidth, len(b.Labels))
		}
		for i, c := range b.Sparse {
			for _, id := range c.IDs {
				distinct[i][id] = true
			}
		}
		for r := range b.Rows {
			click, conv := b.Labels[0][r], b.Labels[1][r]
			clicks += int(click)
			convs += int(conv)
			if conv == 1 && click == 0 {
				convNoClick++
			}
		}
		n += b.Rows
	}
	if n != rows {
		t.Fatalf("read %d rows, wrote %d", n, rows)
	}
	if ctr := float64(clicks) / rows; ctr < 0.02 || ctr > 0.1 {
		t.Errorf("click rate %.3f, want about 0.05", ctr)
	}
	if cvr := float64(convs) / float64(clicks); cvr < 0.1 || cvr > 0.35 {
		t.Errorf("conversions per click %.3f, want about 0.2", cvr)
	}
	if convNoClick > 0 {
		t.Errorf("%d conversions without a click", convNoClick)
	}
	// Later fields have more distinct ids (skewed with larger means).
	if len(distinct[0]) >= len(distinct[Fields-1]) {
		t.Errorf("distinct ids: c0 %d, c%d %d: want more in the later field", len(distinct[0]), Fields-1, len(distinct[Fields-1]))
	}
}
