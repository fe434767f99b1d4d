//go:build unix

package ingest

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/onestone/onestone/internal/gen"
	"github.com/onestone/onestone/internal/s3test"
)

// benchData writes 200k train rows of the standard synthetic log into a
// temporary directory of this run of the benchmark.
func benchData(b *testing.B) string {
	b.StopTimer()
	defer b.StartTimer()
	dir := filepath.Join(b.TempDir(), "gen")
	if _, err := gen.Generate(context.Background(), gen.Config{Dir: dir, Rows: 220_000, TestFrac: 1.0 / 11, Files: 1, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkParquetSource reads the columns the demo spec needs from the
// generated train file; one op is one batch of 8192 rows.
func BenchmarkParquetSource(b *testing.B) {
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) { benchParquetSource(b, w) })
	}
}

// BenchmarkParquetSourceObjectStore is BenchmarkParquetSource on the same
// file in the S3 test server on loopback, read through ranged requests:
// its figures against BenchmarkParquetSource's are the cost of the store.
func BenchmarkParquetSourceObjectStore(b *testing.B) {
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			b.StopTimer()
			dir := benchData(b)
			obj := uploadDir(b, s3test.URL(b), dir)
			b.StartTimer()
			benchParquetSourceAt(b, obj("train-*.parquet"), w)
		})
	}
}

func benchParquetSource(b *testing.B, workers int) {
	benchParquetSourceAt(b, filepath.Join(benchData(b), "train-*.parquet"), workers)
}

func benchParquetSourceAt(b *testing.B, pattern string, workers int) {
	cfg := ParquetConfig{
		Paths: []string{pattern},
		Columns: []string{"user_id", "item_id", "category", "brand", "device", "hour", "position",
			"price", "age", "user_tags", "user_activity", "item_popularity", "click", "conversion"},
		BatchSize: 8192,
		Workers:   workers,
	}
	ctx := context.Background()
	src, err := NewParquetSource(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	rows := 0
	b.ReportAllocs()
	cpu0 := cpuSeconds()
	b.ResetTimer()
	for range b.N {
		rec, err := src.Next(ctx)
		if err == io.EOF {
			b.StopTimer()
			src.Close()
			if src, err = NewParquetSource(ctx, cfg); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			rec, err = src.Next(ctx)
		}
		if err != nil {
			b.Fatal(err)
		}
		rows += int(rec.NumRows())
		rec.Release()
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	// On a shared machine wall time drifts; rows per CPU second (all
	// threads, GC included) is the steadier figure.
	b.ReportMetric(float64(rows)/(cpuSeconds()-cpu0), "rows/cpu-s")
	src.Close()
}

// cpuSeconds returns the process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
