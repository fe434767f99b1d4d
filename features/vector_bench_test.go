package features_test

import (
	"math/rand/v2"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/onestone/onestone/features"
)

// BenchmarkTransformVector transforms 4096 rows of a 64-number vector
// field, list<float> as pyarrow writes it, per normalisation.
func BenchmarkTransformVector(b *testing.B) {
	const rows, dim = 4096, 64
	lb := array.NewListBuilder(memory.DefaultAllocator, arrow.PrimitiveTypes.Float32)
	vb := lb.ValueBuilder().(*array.Float32Builder)
	r := rand.New(rand.NewPCG(1, 1))
	for range rows {
		lb.Append(true)
		for range dim {
			vb.Append(float32(r.NormFloat64()))
		}
	}
	col := lb.NewArray()
	lb.Release()
	rec := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "v", Type: col.DataType(), Nullable: true}}, nil), []arrow.Array{col}, rows)
	col.Release()
	defer rec.Release()
	for _, norm := range []string{"none", "per_dim", "global"} {
		b.Run(norm, func(b *testing.B) {
			spec := mustParse(b, "fields:\n  - {name: v, kind: vector, dim: 64, normalize: "+norm+"}\n"+noLabel)
			fit, _ := features.NewFitter(spec, features.FitConfig{})
			if err := fit.Add(rec); err != nil {
				b.Fatal(err)
			}
			st, _ := fit.Finish()
			tr, err := features.NewTransformer(spec, st, features.TransformerConfig{})
			if err != nil {
				b.Fatal(err)
			}
			var batch features.Batch
			b.ReportAllocs()
			for b.Loop() {
				if err := tr.TransformTo(&batch, rec); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)*rows/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(b.Elapsed().Seconds()*1e9/(float64(b.N)*rows*dim), "ns/item")
		})
	}
}
