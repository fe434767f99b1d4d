package kernels_test

import (
	"fmt"

	"github.com/onestone/onestone/internal/kernels"
)

// A dense layer's forward pass, y = x·Wᵀ, with W stored [out, in].
func ExampleSgemm() {
	x := []float32{ // 2 examples x 3 inputs
		1, 2, 3,
		4, 5, 6,
	}
	w := []float32{ // 2 outputs x 3 inputs
		1, 0, -1,
		0.5, 0.5, 0.5,
	}
	y := make([]float32, 2*2)
	kernels.Sgemm(false, true, 2, 2, 3, 1, x, 3, w, 3, 0, y, 2)
	fmt.Println(y)
	// Output: [-2 3 -2 7.5]
}

// The same product in mixed precision: the operands are rounded to bf16
// (8 significant bits), the sums kept in float32. 1.001 is not a bf16: it
// is multiplied as 1.
func ExampleGemmBF16() {
	x := []float32{1.001, 2, 3, 4, 5, 6}
	w := []float32{1, 0, -1, 0.5, 0.5, 0.5}
	y := make([]float32, 4)
	kernels.GemmBF16(false, true, 2, 2, 3, 1, x, 3, w, 3, 0, y, 2)
	fmt.Println(y, kernels.RoundBF16(1.001))
	// Output: [-2 3 -2 7.5] 1
}

// The same layer with a bias and ReLU fused into the product.
func ExampleLinearTo() {
	x := []float32{1, 2, 3, 4, 5, 6}
	w := []float32{1, 0, -1, 0.5, 0.5, 0.5}
	bias := []float32{3, -5}
	y := make([]float32, 4)
	kernels.LinearTo(1, kernels.ActReLU, y, 2, x, 3, 2, 3, 2, w, bias)
	fmt.Println(y)
	// Output: [1 0 1 2.5]
}

func ExampleGatherPooled() {
	table := []float32{ // 3 embeddings of dim 2
		1, 1,
		2, 4,
		3, 9,
	}
	ids := []int32{0, 2, 1}
	offsets := []int32{0, 2, 3} // row 0: ids 0 and 2; row 1: id 1
	dst := make([]float32, 2*2)
	kernels.GatherPooled(dst, 2, table, 2, ids, offsets, true)
	fmt.Println(dst)
	// Output: [2 5 2 4]
}
