package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onestone/onestone/bundle"
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
