package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenThenInspect(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if err := runGen(ctx, []string{"--rows", "3000", "--users", "100", "--items", "100", "--files", "2", "--row-group", "1000", "--out", dir}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runInspect(ctx, []string{filepath.Join(dir, "*.parquet")}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"test-00000.parquet", "train-00001.parquet", "300 rows, 1 row groups", "1350 rows, 2 row groups", "ZSTD", "user_tags.list.element", "optional"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := runInspect(ctx, []string{"--json", filepath.Join(dir, "train-00000.parquet")}, &out); err != nil {
		t.Fatal(err)
	}
	var infos []struct {
		Rows      int64   `json:"rows"`
		RowGroups []int64 `json:"row_groups"`
		Columns   []struct {
			Path  string `json:"path"`
			Nulls int64  `json:"nulls"`
		} `json:"columns"`
	}
	if err := json.Unmarshal(out.Bytes(), &infos); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if len(infos) != 1 || infos[0].Rows != 1350 || len(infos[0].RowGroups) != 2 {
		t.Errorf("--json: %+v", infos)
	}
	for _, c := range infos[0].Columns {
		if c.Path == "age" && c.Nulls == 0 {
			t.Error("age has no nulls")
		}
	}
	if err := runInspect(ctx, []string{filepath.Join(dir, "nothing-*.parquet")}, &out); err == nil || !strings.Contains(err.Error(), "nothing-*.parquet") {
		t.Errorf("empty glob: %v", err)
	}
}
