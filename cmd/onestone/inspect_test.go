package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenThenInspect(t *testing.T) {
	dir := t.TempDir()
	if _, errOut, code := onestone(t, "gen", "--rows", "3000", "--users", "100", "--items", "100", "--files", "2", "--row-group", "1000", "--out", dir); code != 0 {
		t.Fatal(errOut)
	}
	out, errOut, code := onestone(t, "inspect", filepath.Join(dir, "*.parquet"))
	if code != 0 {
		t.Fatal(errOut)
	}
	for _, want := range []string{"test-00000.parquet", "train-00001.parquet", "300 rows, 1 row groups", "1350 rows, 2 row groups", "ZSTD", "user_tags.list.element", "optional"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	// Flags may follow the arguments.
	out, errOut, code = onestone(t, "inspect", filepath.Join(dir, "train-00000.parquet"), "--json")
	if code != 0 {
		t.Fatal(errOut)
	}
	var infos []struct {
		Rows      int64   `json:"rows"`
		RowGroups []int64 `json:"row_groups"`
		Columns   []struct {
			Path  string `json:"path"`
			Nulls int64  `json:"nulls"`
		} `json:"columns"`
	}
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if len(infos) != 1 || infos[0].Rows != 1350 || len(infos[0].RowGroups) != 2 {
		t.Errorf("--json: %+v", infos)
	}
	for _, c := range infos[0].Columns {
		if c.Path == "age" && c.Nulls == 0 {
			t.Error("age has no nulls")
		}
	}
	if _, errOut, code := onestone(t, "inspect", filepath.Join(dir, "nothing-*.parquet")); code != exitFail || !strings.Contains(errOut, "nothing-*.parquet") {
		t.Errorf("empty glob: exit %d, %s", code, errOut)
	}
}
