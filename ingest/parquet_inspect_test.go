package ingest

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestInspectParquet(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.parquet")
	rows := makeRows(3, 1000, 0)
	writeParquetGo(t, path, rows, "gzip", 300)
	info, err := InspectParquet(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Rows != 1000 || !slices.Equal(info.RowGroups, []int64{300, 300, 300, 100}) {
		t.Errorf("rows %d, row groups %v; want 1000 in 300,300,300,100", info.Rows, info.RowGroups)
	}
	if !slices.Equal(info.Codecs, []string{"GZIP"}) {
		t.Errorf("codecs %v", info.Codecs)
	}
	var nulls int64
	for _, r := range rows {
		if r.OptI == nil {
			nulls++
		}
	}
	found := map[string]ParquetColumnInfo{}
	for _, c := range info.Columns {
		found[c.Path] = c
	}
	if c := found["opt_i"]; c.Nulls != nulls || c.Repetition != "optional" || c.Physical != "INT32" || c.Arrow != "int32" {
		t.Errorf("opt_i: %+v; want %d nulls, optional INT32 read as int32", c, nulls)
	}
	if c := found["tags.list.element"]; c.Physical != "BYTE_ARRAY" || c.Logical != "STRING" || !strings.Contains(c.Arrow, "list") {
		t.Errorf("tags: %+v", c)
	}
	if c := found["s"]; !slices.Contains(c.Encodings, "RLE_DICTIONARY") {
		t.Errorf("s is not dictionary-encoded: %+v", c)
	}
	if len(info.Columns) != len(fixtureColumns) {
		t.Errorf("%d leaf columns, want %d", len(info.Columns), len(fixtureColumns))
	}

	bad := filepath.Join(dir, "bad.parquet")
	os.WriteFile(bad, []byte("PAR1 nothing"), 0o644)
	if _, err := InspectParquet(bad); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "bad.parquet") {
		t.Errorf("garbage file: %v", err)
	}
}
