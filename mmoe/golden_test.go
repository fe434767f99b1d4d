package mmoe

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// goldenConfig is a small model of arch with more than one of everything the
// architecture allows (experts, task experts, levels, expert layers), so that
// the golden files pin down every kind of tensor name.
func goldenConfig(arch string) Config {
	c := Config{Arch: arch, EmbeddingDim: 2, ExpertHidden: []int{3, 2}, Tower: []int{2}, Seed: 7}
	switch arch {
	case ArchMMoE, ArchOMoE:
		c.Experts = 2
	case ArchCGC:
		c.Experts, c.TaskExperts = 2, 2
	case ArchPLE:
		c.Experts, c.TaskExperts, c.Levels = 2, 2, 3
	}
	return chained(c, goldenHeads)
}

var goldenHeads = []string{"ctr", "cvr", "dwell"}

// describe lists what a saved model's readers depend on: the safetensors
// header (tensor names, shapes and byte ranges, in file order) and what the
// trainer reads from the names (the task of each dense parameter, the last
// shared layer, the matching layers of soft sharing).
func describe(t *testing.T, m *Model) string {
	t.Helper()
	entries, _, _, err := readHeader(bytes.NewReader(saved(t, m)))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# arch %s, heads %v: name shape [begin, end) (bytes)\n", m.cfg.Arch, m.heads)
	for _, e := range entries {
		fmt.Fprintf(&b, "%s %v [%d, %d)\n", e.name, e.Shape, e.DataOffsets[0], e.DataOffsets[1])
	}
	b.WriteString("# task of each dense parameter (-1: shared)\n")
	for i, p := range m.Params() {
		fmt.Fprintf(&b, "%s %d\n", p.Name, m.TaskOf(i))
	}
	b.WriteString("# last shared layer\n")
	for _, i := range m.LastSharedLayer() {
		fmt.Fprintf(&b, "%s\n", m.params[i].name)
	}
	b.WriteString("# matching layers\n")
	for _, g := range m.MatchingLayers() {
		var names []string
		for _, i := range g {
			names = append(names, m.params[i].name)
		}
		fmt.Fprintf(&b, "%s\n", strings.Join(names, " "))
	}
	return b.String()
}

// TestGoldenLayout checks, per architecture, that a model has the tensor
// names, shapes, file layout and initial weights that the golden files
// written by an earlier version record, and that the golden safetensors
// file (a saved model of that version) loads. Run with -update to rewrite
// them after an intended change of format (old bundles then no longer
// load: say so where the format is documented).
func TestGoldenLayout(t *testing.T) {
	for _, arch := range Archs {
		t.Run(arch, func(t *testing.T) {
			m, err := New(goldenConfig(arch), smallLayout(), goldenHeads)
			if err != nil {
				t.Fatal(err)
			}
			text, bin := describe(t, m), saved(t, m)
			textPath := filepath.Join("testdata", "layout", arch+".txt")
			binPath := filepath.Join("testdata", "layout", arch+".safetensors")
			if *update {
				if err := os.MkdirAll(filepath.Dir(textPath), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(textPath, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(binPath, bin, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			wantText, err := os.ReadFile(textPath)
			if err != nil {
				t.Fatal(err)
			}
			if text != string(wantText) {
				t.Errorf("layout differs from %s:\n got:\n%s\nwant:\n%s", textPath, text, wantText)
			}
			wantBin, err := os.ReadFile(binPath)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(bin, wantBin) {
				t.Errorf("saved model differs from %s (names, layout or initial weights changed)", binPath)
			}
			f, err := os.Open(binPath)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			loaded, err := NewFromSafetensors(goldenConfig(arch), smallLayout(), goldenHeads, f)
			if err != nil {
				t.Fatalf("load %s: %v", binPath, err)
			}
			if !bitsEqual(logitsOf(t, loaded, 3), logitsOf(t, m, 3)) {
				t.Errorf("the model loaded from %s computes other logits", binPath)
			}
		})
	}
}
