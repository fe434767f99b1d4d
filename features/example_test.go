package features_test

import (
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/onestone/onestone/features"
)

func Example() {
	spec, err := features.ParseSpec(strings.NewReader(`
fields:
  - {name: user_id, kind: categorical, buckets: 1000}
  - {name: price, kind: numeric, transform: log1p, side: candidate}
tasks:
  - {name: ctr, kind: binary, label: click}
group_key: user_id
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	// No field needs fitted statistics, so stats may be nil.
	tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{Labels: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	// A record as the JSON decoder builds it: spec.Schema(true).
	rec, _, err := array.RecordFromJSON(memory.DefaultAllocator, spec.Schema(true), strings.NewReader(
		`[{"user_id": "42", "price": 9, "click": 1}, {"user_id": null, "price": null, "click": 0}]`))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rec.Release()
	var b features.Batch
	if err := tr.TransformTo(&b, rec); err != nil {
		fmt.Println(err)
		return
	}
	lay := tr.Layout()
	fmt.Println("sparse:", lay.Sparse[0].Name, lay.Sparse[0].Cardinality)
	fmt.Println("dense:", lay.Dense[0].Name, lay.Dense[1].Name)
	fmt.Println("ids:", b.Sparse[0].IDs, b.Sparse[0].IDs[0] == features.HashID("user_id", "42", 1000))
	fmt.Printf("dense: %.4f\n", b.Dense)
	fmt.Println("labels:", b.Labels[0])
	fmt.Println("schema:", spec.Schema(true).Field(0).Type, spec.Schema(true).Field(1).Type == arrow.PrimitiveTypes.Float64)
	// Output:
	// sparse: user_id 1001
	// dense: price price.missing
	// ids: [679 0] true
	// dense: [2.3026 0.0000 0.0000 1.0000]
	// labels: [1 0]
	// schema: utf8 true
}
