package mmoe

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestAITConfigErrors(t *testing.T) {
	heads := []string{"ctr", "cart", "buy"}
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"aitm without a chain", Config{Arch: ArchAITM}, "arch aitm with ait: no task has a parent"},
		{"ait without a chain", Config{Arch: ArchMMoE, AIT: true}, "arch mmoe with ait: no task has a parent"},
		{"transfer without ait", Config{Arch: ArchMMoE, Transfer: map[string]string{"cart": "ctr"}}, "without ait"},
		{"unknown head", Config{Arch: ArchAITM, Transfer: map[string]string{"cart": "click"}}, "both must be heads"},
		{"self", Config{Arch: ArchAITM, Transfer: map[string]string{"cart": "cart"}}, "transfers to itself"},
		{"cycle", Config{Arch: ArchAITM, Transfer: map[string]string{"cart": "buy", "buy": "cart"}}, "cycle"},
		{"aitm experts", Config{Arch: ArchAITM, Experts: 2, Transfer: map[string]string{"cart": "ctr"}}, "arch aitm: experts 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.cfg, smallLayout(), heads)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrConfig containing %q", err, c.want)
			}
		})
	}
}

// TestAITWeights: a head that receives the transfer reports attention
// weights that sum to 1 per row; a head that does not reports none. A
// model's configuration keeps its transfer (bundles carry it).
func TestAITWeights(t *testing.T) {
	heads := []string{"ctr", "cvr"}
	cfg := Config{Arch: ArchAITM, EmbeddingDim: 3, ExpertHidden: []int{5}, Tower: []int{4}, Seed: 1, Transfer: map[string]string{"cvr": "ctr"}}
	m, err := New(cfg, smallLayout(), heads)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Config(); !got.AIT || got.Transfer["cvr"] != "ctr" || len(got.Transfer) != 1 {
		t.Fatalf("config %+v", got)
	}
	ws := m.NewWorkspace(7)
	if err := m.Forward(ws, randomBatch(smallLayout(), 7, rand.New(rand.NewPCG(1, 1)))); err != nil {
		t.Fatal(err)
	}
	if ws.AITWeights(0) != nil {
		t.Error("the root head reports attention weights")
	}
	w := ws.AITWeights(1)
	if len(w) != 14 {
		t.Fatalf("%d weights, want 7 rows x 2", len(w))
	}
	for r := range 7 {
		if s := w[2*r] + w[2*r+1]; math.Abs(float64(s)-1) > 1e-6 || w[2*r] <= 0 || w[2*r+1] <= 0 {
			t.Errorf("row %d: weights %v, %v", r, w[2*r], w[2*r+1])
		}
	}
	for i, p := range m.Params() {
		if strings.HasPrefix(p.Name, "ait.cvr.") && m.TaskOf(i) != 1 {
			t.Errorf("%s belongs to task %d, want 1 (cvr)", p.Name, m.TaskOf(i))
		}
	}
}
