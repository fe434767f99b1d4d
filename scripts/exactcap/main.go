// Command exactcap prints the exact table of the memory of a hash field,
// for scripts/exact-vs-hash.sh: the largest capacity whose embedding rows
// (1 + shared + capacity, features.Exact.Rows) and id map
// (features.Exact.MapBytes) fit in the buckets + 1 rows of the hash
// field, as the spec's `exact:` value. shared is -shared, or the default
// (capacity/100) for 0; with admit_after > 1 waiting is capacity/2.
//
//	go run ./scripts/exactcap -buckets 50000 -row 132 -admit 1 -evict lfu
//	exact: {capacity: 34199, shared: 341, admit_after: 1, evict: lfu}
//	go run ./scripts/exactcap -buckets 50000 -shared 1
//	exact: {capacity: 34444, shared: 1, admit_after: 1, evict: lfu}
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/onestone/onestone/features"
)

func main() {
	buckets := flag.Int("buckets", 0, "buckets of the hash field (required)")
	row := flag.Int("row", 132, "bytes of an embedding row with its optimizer state (dim 32 and row-wise Adagrad: 4·32 + 4)")
	admit := flag.Int("admit", 1, "admit_after")
	evict := flag.String("evict", "lfu", "evict: lru, lfu or none")
	shared := flag.Int("shared", 0, "shared rows (1: a single default row); 0 for the default, capacity/100")
	flag.Parse()
	if *buckets < 1 || *row < 1 || *shared < 0 {
		fmt.Fprintln(os.Stderr, "exactcap: -buckets and -row must be >= 1, -shared >= 0")
		os.Exit(2)
	}
	ev := features.Evict(*evict)
	if ev == "none" {
		ev = features.EvictNone
	}
	table := func(c int) features.Exact {
		e := features.Exact{Capacity: c, AdmitAfter: *admit, Evict: ev}
		e.Shared = *shared
		if *admit > 1 {
			e.Waiting = max(1, c/2)
		}
		return e.WithDefaults()
	}
	budget := int64(*buckets+1) * int64(*row)
	size := func(c int) int64 {
		e := table(c)
		return int64(e.Rows())*int64(*row) + e.MapBytes()
	}
	lo, hi := 1, *buckets
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if size(mid) <= budget {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	e := table(lo)
	if err := e.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "exactcap:", err)
		os.Exit(1)
	}
	fmt.Printf("exact: {capacity: %d, shared: %d, admit_after: %d", e.Capacity, e.Shared, e.AdmitAfter)
	if *admit > 1 {
		fmt.Printf(", waiting: %d", e.Waiting)
	}
	if ev != features.EvictNone {
		fmt.Printf(", evict: %s", ev)
	}
	fmt.Println("}")
}
