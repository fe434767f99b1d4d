package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/internal/gen"
)

// copyVersion copies the files of the bundle directory src to dst.
func copyVersion(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestVerify: verify names the refused version and why, passes the good
// one, and exits 1.
func TestVerify(t *testing.T) {
	src, err := bundle.Resolve("../../serving/testdata/portable")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	copyVersion(t, src, filepath.Join(root, "v00000001"))
	copyVersion(t, src, filepath.Join(root, "v00000002"))
	if _, errOut, code := onestone(t, "verify", root); code != 0 {
		t.Fatalf("good versions: exit %d: %s", code, errOut)
	}
	p := filepath.Join(root, "v00000002", bundle.WeightsFile)
	data, _ := os.ReadFile(p)
	data[len(data)-3] ^= 1
	os.WriteFile(p, data, 0o644)
	out, errOut, code := onestone(t, "verify", "--json", root)
	if code != 1 || !strings.Contains(errOut, "1 of 2 versions refused") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var vs []verdict
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(vs) != 2 || !vs[0].OK || !vs[0].Verified || vs[1].OK || !strings.Contains(vs[1].Error, "does not match its checksum") {
		t.Fatalf("verdicts %+v", vs)
	}
}

// TestVerifyExactTables: verify checks the id maps (ids.bin) of a model
// with an exact table, in its bundles and checkpoints, and refuses a
// version whose map was changed.
func TestVerifyExactTables(t *testing.T) {
	dir := t.TempDir()
	sum, err := gen.Generate(context.Background(), gen.Config{Dir: dir, Rows: 20_000, Users: 300, Items: 300, Seed: 5, Files: 1, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(sum.Spec)
	if err != nil {
		t.Fatal(err)
	}
	spec := regexp.MustCompile(`name: user_id, kind: categorical, buckets: \d+`).ReplaceAll(text,
		[]byte("name: user_id, kind: categorical, exact: {capacity: 100, admit_after: 2, evict: lru}"))
	if bytes.Equal(spec, text) {
		t.Fatal("the generated spec has no hashed user_id")
	}
	specPath := filepath.Join(dir, "exact.yaml")
	if err := os.WriteFile(specPath, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	models := filepath.Join(dir, "models")
	if _, errOut, code := onestone(t, "train", "--spec", specPath, "--data", filepath.Join(dir, "train-*.parquet"),
		"--out", models, "--max-steps", "8", "--eval-every", "4", "--quiet"); code != 0 {
		t.Fatal(errOut)
	}
	out, errOut, code := onestone(t, "verify", "--json", models)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var vs []verdict
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	cks := 0
	for _, v := range vs {
		if !v.OK || !v.Verified {
			t.Errorf("%s: %+v", v.Dir, v)
		}
		if _, err := os.Stat(filepath.Join(v.Dir, bundle.IDsFile)); err != nil {
			t.Errorf("%s has no %s: %v", v.Dir, bundle.IDsFile, err)
		}
		if strings.Contains(v.Dir, "checkpoints") {
			cks++
		}
	}
	if cks == 0 || cks == len(vs) {
		t.Fatalf("verified %d checkpoints of %d versions, want bundles and checkpoints: %+v", cks, len(vs), vs)
	}
	for _, v := range vs[:1] {
		p := filepath.Join(v.Dir, bundle.IDsFile)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 1
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code = onestone(t, "verify", "--json", models)
	if code != 1 || !strings.Contains(errOut, fmt.Sprintf("1 of %d versions refused", len(vs))) {
		t.Fatalf("a changed %s: exit %d: %s", bundle.IDsFile, code, errOut)
	}
	vs = nil
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if vs[0].OK || !strings.Contains(vs[0].Error, bundle.IDsFile) || !strings.Contains(vs[0].Error, "does not match its checksum") {
		t.Fatalf("the changed version: %+v", vs[0])
	}
}
