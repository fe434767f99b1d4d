package features_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/onestone/onestone/features"
)

// idRecord is a record of one id column of n rows drawn from distinct ids,
// Zipf-distributed (s = 1.1) or uniform, as int64 or as decimal strings.
func idRecord(n, distinct int, zipf, str bool, seed uint64) arrow.RecordBatch {
	return idRecordOf(n, distinct, zipf, str, seed, false)
}

// idRecordOf is idRecord; with all it holds every id once, in order.
func idRecordOf(n, distinct int, zipf, str bool, seed uint64, all bool) arrow.RecordBatch {
	r := rand.New(rand.NewPCG(seed, seed))
	z := rand.NewZipf(r, 1.1, 1, uint64(distinct-1))
	var b array.Builder
	var typ arrow.DataType
	if str {
		b, typ = array.NewStringBuilder(memory.DefaultAllocator), arrow.BinaryTypes.String
	} else {
		b, typ = array.NewInt64Builder(memory.DefaultAllocator), arrow.PrimitiveTypes.Int64
	}
	defer b.Release()
	for i := range n {
		// Ids are spread over a wide range, as real ids are.
		var x uint64
		if all {
			x = uint64(i)
		} else if zipf {
			x = z.Uint64()
		} else {
			x = r.Uint64N(uint64(distinct))
		}
		id := int64(x*2654435761 + 1_000_000_007)
		if str {
			b.(*array.StringBuilder).Append(fmt.Sprint(id))
		} else {
			b.(*array.Int64Builder).Append(id)
		}
	}
	arr := b.NewArray()
	defer arr.Release()
	return array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "id", Type: typ}}, nil), []arrow.Array{arr}, int64(n))
}

// BenchmarkTransformIDs measures the transform of one id column on one
// core, in ids per second: hash buckets against an exact table of the
// same number of rows holding every id (admitted before the timing), over
// 100,000 or a million distinct ids (a map of 3.2 or 32 MB), Zipf-
// distributed or uniform, int64 or string.
// The exact lookup hashes the id as hash mode does, then probes the map.
func BenchmarkTransformIDs(b *testing.B) {
	const rows = 8192
	for _, distinct := range []int{100_000, 1_000_000} {
		for _, typ := range []string{"int64", "string"} {
			for _, dist := range []string{"zipf", "uniform"} {
				for _, mode := range []string{"hash", "exact"} {
					b.Run(fmt.Sprintf("ids=%d/%s/%s/%s", distinct, typ, dist, mode), func(b *testing.B) {
						defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
						field := fmt.Sprintf("buckets: %d", distinct)
						if mode == "exact" {
							field = fmt.Sprintf("exact: {capacity: %d}", distinct)
						}
						spec := mustParse(b, fmt.Sprintf("fields:\n  - {name: id, kind: categorical, %s}\ntasks:\n  - {name: ctr, kind: binary, label: click}\n", field))
						tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{})
						if err != nil {
							b.Fatal(err)
						}
						recs := make([]arrow.RecordBatch, 16)
						for i := range recs {
							recs[i] = idRecord(rows, distinct, dist == "zipf", typ == "string", uint64(i))
							defer recs[i].Release()
						}
						var batch features.Batch
						if mode == "exact" {
							// Admit every id of the distribution.
							all := idRecordOf(distinct, distinct, false, typ == "string", 0, true)
							defer all.Release()
							for lo := int64(0); lo < all.NumRows(); lo += 65536 {
								sl := all.NewSlice(lo, min(lo+65536, all.NumRows()))
								if err := tr.TransformTo(&batch, sl); err != nil {
									b.Fatal(err)
								}
								if _, err := tr.IDs().Admit(&batch); err != nil {
									b.Fatal(err)
								}
								sl.Release()
							}
							b.ReportMetric(float64(tr.IDs().Stats()[0].MapBytes)/float64(distinct), "mapB/id")
						}
						b.ReportAllocs()
						b.ResetTimer()
						cpu0 := cpuTime()
						i := 0
						for b.Loop() {
							if err := tr.TransformTo(&batch, recs[i%len(recs)]); err != nil {
								b.Fatal(err)
							}
							i++
						}
						cpu := cpuTime() - cpu0
						b.ReportMetric(float64(rows*i)/b.Elapsed().Seconds(), "ids/s")
						if cpu > 0 {
							b.ReportMetric(float64(rows*i)/cpu.Seconds(), "ids/cpu-s")
						}
					})
				}
			}
		}
	}
}

// BenchmarkIDTableMemory measures the heap a new exact table of a million
// rows allocates (runtime.MemStats, not the formula), per row, with and
// without a waiting set (admit_after 1, and 2 with waiting = capacity):
// what docs/spec.md gives as the map's memory per id. Exact.MapBytes
// must bound it.
func BenchmarkIDTableMemory(b *testing.B) {
	const capacity = 1 << 20
	for _, admit := range []int{1, 2} {
		b.Run(fmt.Sprintf("admit_after=%d", admit), func(b *testing.B) {
			spec := mustParse(b, fmt.Sprintf("fields:\n  - {name: id, kind: categorical, exact: {capacity: %d, admit_after: %d}}\ntasks:\n  - {name: ctr, kind: binary, label: click}\n", capacity, admit))
			var perRow float64
			for b.Loop() {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				ids, err := features.NewIDTables(spec)
				if err != nil {
					b.Fatal(err)
				}
				runtime.ReadMemStats(&after)
				got := int64(after.TotalAlloc - before.TotalAlloc)
				if bound := spec.Fields[0].Exact.MapBytes(); got > bound+1<<16 {
					b.Fatalf("allocated %d bytes, Exact.MapBytes says at most %d", got, bound)
				}
				perRow = float64(got) / capacity
				runtime.KeepAlive(ids)
			}
			b.ReportMetric(perRow, "B/row")
		})
	}
}

// BenchmarkIDTableAdmit measures the admission of training batches of
// 1024 ids, Zipf-distributed (s = 1.1) over a million distinct ids, to a
// full exact table of 100,000 rows, in ids per second on one core: the
// part of a training step that an exact table adds to a lookup, for each
// eviction policy (per CPU-second too, which a loaded host disturbs
// less).
func BenchmarkIDTableAdmit(b *testing.B) {
	const batch, distinct, capacity = 1024, 1_000_000, 100_000
	r := rand.New(rand.NewPCG(9, 9))
	keys := zipfKeys(r, 1<<20, distinct)
	for _, evict := range []string{"lru", "lfu"} {
		b.Run(evict, func(b *testing.B) {
			spec := exactSpec(b, fmt.Sprintf("{capacity: %d, evict: %s}", capacity, evict))
			ts, err := features.NewIDTables(spec)
			if err != nil {
				b.Fatal(err)
			}
			var bt features.Batch
			step := func(i int) {
				lo := (i * batch) % len(keys)
				keyBatch(&bt, keys[lo:lo+batch])
				if _, err := ts.Admit(&bt); err != nil {
					b.Fatal(err)
				}
			}
			for i := range 2 * len(keys) / batch { // fill the table and age it
				step(i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := range b.N {
				step(i)
			}
			cpu := cpuTime() - cpu0
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "ids/s")
			if cpu > 0 {
				b.ReportMetric(float64(b.N*batch)/cpu.Seconds(), "ids/cpu-s")
			}
		})
	}
}
