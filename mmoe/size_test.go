package mmoe

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/onestone/onestone/features"
)

// TestSizeOf: the arithmetic footprint equals what New builds, for every
// architecture and a few shapes.
func TestSizeOf(t *testing.T) {
	cfgs := []Config{
		{EmbeddingDim: 3, ExpertHidden: []int{4, 3}, Tower: []int{5, 2}},
		{EmbeddingDim: 2, ExpertHidden: []int{6}, Tower: []int{}},
		{EmbeddingDim: 4, Experts: 3, TaskExperts: 2, Levels: 3, ExpertHidden: []int{5, 4, 3}},
	}
	// AIT as an option on a shared structure.
	cfgs = append(cfgs, Config{EmbeddingDim: 3, ExpertHidden: []int{4}, Tower: []int{3}, AIT: true})
	for _, arch := range Archs {
		for _, c := range cfgs {
			cfg := c
			cfg.Arch = arch
			switch arch {
			case ArchSingle, ArchSoft, ArchAITM:
				cfg.Experts, cfg.TaskExperts = 0, 0
			case ArchSharedBottom:
				cfg.Experts, cfg.TaskExperts = 1, 0
			case ArchMMoE, ArchOMoE:
				cfg.TaskExperts = 0
			}
			if arch != ArchPLE {
				cfg.Levels = 0
			}
			for _, heads := range [][]string{{"ctr", "cvr"}, {"a", "b", "c"}} {
				cfg := chained(cfg, heads)
				m, err := New(cfg, smallLayout(), heads)
				if err != nil {
					t.Fatalf("%s %+v: %v", arch, cfg, err)
				}
				fp, err := SizeOf(cfg, smallLayout(), heads)
				if err != nil {
					t.Fatal(err)
				}
				want := Footprint{Tensors: int64(len(m.Params()) + len(m.Embeddings())), Floats: int64(m.NumParams())}
				if fp != want {
					t.Errorf("%s %+v heads %v: SizeOf %+v, New builds %+v", arch, cfg, heads, fp, want)
				}
				if fp.Bytes() != 4*want.Floats {
					t.Errorf("Bytes %d, want %d", fp.Bytes(), 4*want.Floats)
				}
			}
		}
	}
	if _, err := SizeOf(Config{Arch: "nope"}, smallLayout(), []string{"a"}); !errors.Is(err, ErrConfig) {
		t.Errorf("bad config: %v", err)
	}
	// Sizes beyond int64 saturate instead of wrapping around.
	wide := make([]int, 100_000)
	for i := range wide {
		wide[i] = 1 << 16
	}
	fp, err := SizeOf(Config{Arch: ArchPLE, Experts: 1024, TaskExperts: 1024, Levels: 64, ExpertHidden: wide}, smallLayout(), []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if fp.Floats != math.MaxInt64 || fp.Bytes() != math.MaxInt64 || fp.Tensors < 64*(1024+2*1024)*2*100_000 {
		t.Errorf("huge model: %+v, Bytes %d: want saturated floats", fp, fp.Bytes())
	}
}

// TestSizeOfBoundsTheWiring: a configuration whose wiring alone would
// take gigabytes (thousands of tasks of 1024 experts each) is refused
// before it is wired.
func TestSizeOfBoundsTheWiring(t *testing.T) {
	heads := make([]string, 5000)
	for i := range heads {
		heads[i] = fmt.Sprintf("t%d", i)
	}
	var err error
	n := allocated(func() {
		_, err = SizeOf(Config{Arch: ArchCGC, Experts: 1024, TaskExperts: 1024, ExpertHidden: []int{4}}, smallLayout(), heads)
	})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "experts and gate candidates") {
		t.Fatalf("error %v, want ErrConfig about the wiring", err)
	}
	if n > 16<<20 {
		t.Errorf("allocated %d MiB before refusing", n>>20)
	}
}

// allocated runs f and returns the bytes it allocated on the heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestNewFromSafetensorsChecksBeforeAllocating: a configuration that
// disagrees with its file, however large, is refused before its tensors
// are allocated.
func TestNewFromSafetensorsChecksBeforeAllocating(t *testing.T) {
	cfg := Config{EmbeddingDim: 16, Experts: 2, ExpertHidden: []int{4}, Tower: []int{}, Seed: 1}
	small := smallLayout()
	file := saved(t, testModel(t, cfg))
	big := smallLayout()
	big.Sparse[0].Cardinality = 1 << 24 // 1 GiB of embeddings
	deep := cfg
	deep.ExpertHidden = make([]int, 200_000) // 2.4 million tensors
	for i := range deep.ExpertHidden {
		deep.ExpertHidden[i] = 4
	}
	for _, tc := range []struct {
		name   string
		cfg    Config
		layout features.Layout
		want   string
	}{
		{"huge table", cfg, big, `tensor "embeddings.user.weight": shape [7 16], the model has [16777216 16]`},
		{"many tensors", deep, small, "the model configuration has"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := allocated(func() {
				_, err = NewFromSafetensors(tc.cfg, tc.layout, []string{"ctr", "cvr"}, bytes.NewReader(file))
			})
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrFormat mentioning %q", err, tc.want)
			}
			if n > 16<<20 {
				t.Errorf("allocated %d MiB before refusing", n>>20)
			}
		})
	}
	// The same file loads into the configuration that wrote it.
	m, err := NewFromSafetensors(cfg, small, []string{"ctr", "cvr"}, bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(saved(t, m), file) {
		t.Error("the loaded model saves another file")
	}
}
