package mtl_test

import (
	"fmt"

	"github.com/onestone/onestone/mtl"
)

// A CTR task and an ESMM conversion task: the model has two heads (CTR and
// CVR logits) and serves three scores.
func ExampleTaskSet() {
	tasks, err := mtl.NewTaskSet([]mtl.TaskConfig{
		{Name: "ctr", Kind: mtl.KindBinary, Label: "click"},
		{Name: "cvr", Kind: mtl.KindESMM, Parent: "ctr", Label: "click_and_buy"},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(tasks.Objectives())

	logits := [][]float32{{0, 2}, {0, -1}} // [head][row]
	labels := [][]float32{{1, 0}, {1, 0}}  // click, click_and_buy
	dLogits := [][]float32{make([]float32, 2), make([]float32, 2)}
	losses, err := tasks.LossTo(nil, dLogits, logits, labels, nil, nil)
	if err != nil {
		panic(err)
	}
	fmt.Printf("losses %.4f\n", losses)
	fmt.Printf("dLogits %.4f\n", dLogits)

	scores, _ := tasks.PredictTo(nil, logits)
	fmt.Printf("scores %.4f\n", scores)
	// Output:
	// [ctr cvr ctcvr]
	// losses [1.4100 0.8283]
	// dLogits [[-0.5000 0.4589] [-0.2500 0.1135]]
	// scores [[0.5000 0.8808] [0.5000 0.2689] [0.2500 0.2369]]
}

// Progressive evaluation over a stream: the metrics of the last 4 rows.
func ExampleAccumulator() {
	acc, _ := mtl.NewAccumulator(mtl.AccumulatorConfig{Objective: "ctr", Window: 4})
	preds := []float32{0.9, 0.1, 0.8, 0.3, 0.6, 0.2}
	labels := []float32{0, 1, 1, 0, 1, 0}
	acc.AddBatch(preds, labels, nil, nil, nil) // keeps rows 2..5
	m, _ := acc.Compute()
	fmt.Printf("rows %d auc %.2f calibration %.2f\n", acc.Len(), m.AUC, m.Calibration)
	// Output:
	// rows 4 auc 1.00 calibration 0.95
}
