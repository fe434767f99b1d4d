package mmoe_test

import (
	"fmt"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
)

// A two-task MMoE over one categorical field and one dense column: its
// parameters, and the logits of a one-row batch.
func ExampleNew() {
	layout := features.Layout{
		Sparse: []features.SparseField{{Name: "item", Cardinality: 10}},
		Dense:  []features.DenseField{{Name: "price"}},
	}
	cfg := mmoe.Config{Experts: 2, EmbeddingDim: 4, ExpertHidden: []int{8}, Tower: []int{}, Seed: 1}
	m, err := mmoe.New(cfg, layout, []string{"ctr", "cvr"})
	if err != nil {
		panic(err)
	}
	for _, p := range m.Params() {
		fmt.Println(p.Name, p.Shape)
	}
	fmt.Println("input width", m.InputWidth(), "parameters", m.NumParams())

	ws := m.NewWorkspace(1)
	b := &features.Batch{Rows: 1, Sparse: []features.SparseColumn{{IDs: []int32{3}}}, Dense: []float32{0.5}, DenseWidth: 1}
	if err := m.Forward(ws, b); err != nil {
		panic(err)
	}
	fmt.Println("logits per head:", len(ws.Logits), "rows:", len(ws.Logits[0]))
	// Output:
	// experts.0.layers.0.weight [8 5]
	// experts.1.layers.0.weight [8 5]
	// gates.ctr.weight [2 5]
	// gates.cvr.weight [2 5]
	// experts.0.layers.0.bias [8]
	// experts.1.layers.0.bias [8]
	// gates.ctr.bias [2]
	// gates.cvr.bias [2]
	// heads.ctr.weight [1 8]
	// heads.ctr.bias [1]
	// heads.cvr.weight [1 8]
	// heads.cvr.bias [1]
	// input width 5 parameters 178
	// logits per head: 2 rows: 1
}
