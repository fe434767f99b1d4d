package pipelines

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
)

// writeWithFaults copies a Parquet file into dir/bad.parquet (row groups of
// rowGroup rows) with values set at some rows: set[column][row] = value.
// It returns the new file and its row count.
func writeWithFaults(t *testing.T, src, dir string, rowGroup int64, set map[string]map[int]float64) (string, int64) {
	t.Helper()
	ctx := context.Background()
	ps, err := ingest.NewParquetSource(ctx, ingest.ParquetConfig{Paths: []string{src}, BatchSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	rec, err := ps.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	mem := memory.NewGoAllocator()
	cols := make([]arrow.Array, rec.NumCols())
	for i := range cols {
		name := rec.ColumnName(i)
		vals, ok := set[name]
		if !ok {
			cols[i] = rec.Column(i)
			cols[i].Retain()
			continue
		}
		switch a := rec.Column(i).(type) {
		case *array.Float64:
			b := array.NewFloat64Builder(mem)
			for r := range a.Len() {
				v, bad := vals[r]
				if !bad {
					v = a.Value(r)
				}
				if a.IsNull(r) && !bad {
					b.AppendNull()
				} else {
					b.Append(v)
				}
			}
			cols[i] = b.NewArray()
			b.Release()
		case *array.Int32:
			b := array.NewInt32Builder(mem)
			for r := range a.Len() {
				if v, bad := vals[r]; bad {
					b.Append(int32(v))
				} else {
					b.Append(a.Value(r))
				}
			}
			cols[i] = b.NewArray()
			b.Release()
		default:
			t.Fatalf("column %s is %s", name, a.DataType())
		}
	}
	out := array.NewRecordBatch(rec.Schema(), cols, rec.NumRows())
	for _, c := range cols {
		c.Release()
	}
	defer out.Release()
	path := filepath.Join(dir, "bad.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pqarrow.NewFileWriter(out.Schema(), f, parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(rowGroup)), pqarrow.DefaultWriterProps())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(out); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path, out.NumRows()
}

// TestBatchTrainingStopsOnOrSkipsBadRows writes a training file with a
// price of 1e300 at rows 100 and 5000 and a click of 2 at row 3000, in row
// groups of 4096. Fit and train stop at the first with an error naming
// the file, row group, row and column; with SkipBadRows they leave the
// three out, count them by fault, and train on the rest.
func TestBatchTrainingStopsOnOrSkipsBadRows(t *testing.T) {
	dir, spec := genData(t, 12000, "")
	bad, rows := writeWithFaults(t, filepath.Join(dir, "train-00000.parquet"), t.TempDir(), 4096, map[string]map[int]float64{
		"price": {100: 1e300, 5000: -1e300},
		"click": {3000: 2},
	})
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		var br *ingest.BadRow
		if !errors.As(err, &br) || !errors.Is(err, features.ErrValue) {
			t.Fatalf("%s: %v, want an *ingest.BadRow", what, err)
		}
		if br.File != bad || br.RowGroup != 0 || br.Row != 100 || br.Column != "price" || br.Fault != features.FaultRange {
			t.Errorf("%s: bad row %+v, want %s row group 0 row 100 column price", what, *br, bad)
		}
		for _, s := range []string{bad, "row group 0", "row 100", `column "price"`} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not name %s", what, err, s)
			}
		}
	}
	s, err := features.LoadSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Fit(ctx, s, FitConfig{Paths: []string{bad}})
	check("fit", err)
	cfg := TrainBatchConfig{SpecPath: spec, Data: []string{bad}, Out: t.TempDir(), BatchSize: 512}
	_, err = TrainBatch(ctx, cfg)
	check("train's fit", err)

	cfg.SkipBadRows = true
	var prog syncBuffer
	cfg.Progress = &prog
	res, err := TrainBatch(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{features.FaultRange: 2, features.FaultLabel: 1}
	if !maps.Equal(res.BadRows, want) || res.Examples != rows-3 {
		t.Errorf("skipping: bad rows %v and %d examples, want %v and %d", res.BadRows, res.Examples, want, rows-3)
	}
	for _, s := range []string{"fit: left out 3 bad rows", "row group 1, row 904", `column "click"`, "left out 3 bad training rows (bad_label=1 out_of_range=2)"} {
		if !strings.Contains(prog.String(), s) {
			t.Errorf("the progress output lacks %q:\n%s", s, prog.String())
		}
	}
	// The statistics are fitted now: training itself stops at the row.
	cfg.SkipBadRows, cfg.Progress, cfg.Out = false, nil, t.TempDir()
	_, err = TrainBatch(ctx, cfg)
	check("train", err)
}
