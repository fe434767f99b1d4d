package ingest

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/onestone/onestone/features"
)

// TestParquetSourceCheck reads two files of 300 rows in row groups of 100,
// in batches of 128 that span row groups and files, with four rows whose
// f64 is beyond float32. Without SkipBadRows the first one stops Next with
// its file, row group, row and column; with it, the four are left out,
// reported at their exact places, and every other row arrives once.
func TestParquetSourceCheck(t *testing.T) {
	dir := t.TempDir()
	rows := makeRows(5, 600, 0)
	bad := map[int64]BadRow{}
	for _, id := range []int64{5, 250, 251, 420} {
		rows[id].F64 = 1e300
		file, local := filepath.Join(dir, "a.parquet"), id
		if id >= 300 {
			file, local = filepath.Join(dir, "b.parquet"), id-300
		}
		bad[id] = BadRow{File: file, RowGroup: int(local / 100), Row: local % 100, Column: "f64", Fault: features.FaultRange}
	}
	writeParquetGo(t, filepath.Join(dir, "a.parquet"), rows[:300], "zstd", 100)
	writeParquetGo(t, filepath.Join(dir, "b.parquet"), rows[300:], "zstd", 100)
	spec, err := features.ParseSpec(strings.NewReader(`fields:
  - {name: f64, kind: numeric}
  - {name: s, kind: categorical, buckets: 10}
tasks: [{name: ctr, kind: binary, label: b}]
`))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{Labels: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	cfg := ParquetConfig{Paths: []string{filepath.Join(dir, "*.parquet")}, Columns: []string{"id", "f64", "s", "b"}, BatchSize: 128, Allocator: mem, Check: tr.Checker()}

	src, err := NewParquetSource(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.Next(ctx)
	var br *BadRow
	if !errors.As(err, &br) || !errors.Is(err, features.ErrValue) {
		t.Fatalf("Next = %v, want a *BadRow", err)
	}
	want := bad[5]
	want.Detail = br.Detail
	if *br != want || !strings.Contains(br.Detail, "1e+300") {
		t.Errorf("bad row %+v, want %+v", *br, want)
	}
	if pos := src.Position(); pos.File != want.File || pos.RowGroup != 0 || pos.Row != 0 {
		t.Errorf("position %+v after the error, want the start of the failed batch", pos)
	}
	src.Close()

	// With SkipBadRows, reading strings plain and as dictionaries (the
	// rows left out of a batch spanning row groups, so of two
	// dictionaries' indexes).
	for _, dict := range []bool{false, true} {
		cfg.SkipBadRows, cfg.Dictionary = true, dict
		var got []BadRow
		cfg.OnBadRow = func(b BadRow) {
			b.Detail = ""
			got = append(got, b)
		}
		if src, err = NewParquetSource(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		var ids []int64
		var ss []string
		for {
			rec, err := src.Next(ctx)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, rec.Column(0).(*array.Int64).Int64Values()...)
			sc := undict(t, mem, rec.Column(2))
			for i := range sc.Len() {
				ss = append(ss, sc.(*array.String).Value(i))
			}
			sc.Release()
			rec.Release()
		}
		src.Close()
		var wantIDs []int64
		var wantS []string
		for id := range int64(600) {
			if _, isBad := bad[id]; !isBad {
				wantIDs = append(wantIDs, id)
				wantS = append(wantS, rows[id].S)
			}
		}
		if !reflect.DeepEqual(ids, wantIDs) {
			t.Errorf("dictionary %v: read %d rows, want the %d good ones in order", dict, len(ids), len(wantIDs))
		}
		if !reflect.DeepEqual(ss, wantS) {
			t.Errorf("dictionary %v: the good rows' strings differ from those written", dict)
		}
		wantBad := []BadRow{bad[5], bad[250], bad[251], bad[420]}
		if !reflect.DeepEqual(got, wantBad) {
			t.Errorf("dictionary %v: bad rows\n%+v\nwant\n%+v", dict, got, wantBad)
		}
	}
}
