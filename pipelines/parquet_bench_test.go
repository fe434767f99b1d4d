//go:build unix

package pipelines

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/internal/gen"
)

// BenchmarkParquetToBatch measures training's data path as one piece: the
// generated train file (220k rows of gen's default world, one file, gen's
// row groups) read with the spec's columns (ingest.ParquetSource, with 1
// and 2 column-decoding workers, strings plain and as dictionaries, as
// training reads them) and transformed into feature batches of 8192 rows
// (features.Transformer). One op is one batch. It reports rows
// per wall second and per CPU second of the process (all threads, GC
// included): docs/benchmarks.md's target is 5 M rows/s on one core, which
// the CPU figure judges on a shared machine. With enough ops to read the
// file more than once, it also reports the fastest whole pass over the
// file per CPU second (rows/cpu-s-best-pass), the figure least
// disturbed by other processes. gen writes zstd; the
// snappy/ runs read the same rows recompressed with snappy (DuckDB's
// and pyarrow's default codec).
func BenchmarkParquetToBatch(b *testing.B) {
	dir := b.TempDir()
	if _, err := gen.Generate(context.Background(), gen.Config{Dir: dir, Rows: 220_000, TestFrac: 1.0 / 11, Files: 1, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	paths := []string{filepath.Join(dir, "train-*.parquet")}
	s, err := LoadSetup(filepath.Join(dir, "spec.yaml"), fitForTraining(context.Background(), paths, nil, false, nil))
	if err != nil {
		b.Fatal(err)
	}
	snappy := filepath.Join(dir, "snappy.parquet")
	if err := recompress(filepath.Join(dir, "train-00000.parquet"), snappy, &parquet.Snappy); err != nil {
		b.Fatal(err)
	}
	for _, codec := range []struct{ prefix, path string }{{"", paths[0]}, {"snappy/", snappy}} {
		for _, dict := range []bool{false, true} {
			for _, w := range []int{1, 2} {
				b.Run(fmt.Sprintf("%sdict=%v/workers=%d", codec.prefix, dict, w), func(b *testing.B) {
					cfg := ingest.ParquetConfig{Paths: []string{codec.path}, Columns: s.Spec.Columns(true), BatchSize: 8192, Workers: w, Dictionary: dict, ReuseBuffers: true}
					benchParquetToBatch(b, s, cfg)
				})
			}
		}
	}
}

// recompress copies gen's Parquet file src to dst with another codec,
// the same row groups, encodings and page layout otherwise.
func recompress(src, dst string, codec compress.Codec) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	r := parquet.NewGenericReader[gen.Event](in)
	defer r.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	w := parquet.NewGenericWriter[gen.Event](out, parquet.Compression(codec), parquet.MaxRowsPerRowGroup(131072))
	buf := make([]gen.Event, 4096)
	for {
		n, err := r.Read(buf)
		if _, werr := w.Write(buf[:n]); werr != nil {
			return werr
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return out.Close()
}

func benchParquetToBatch(b *testing.B, s *Setup, cfg ingest.ParquetConfig) {
	ctx := context.Background()
	src, err := ingest.NewParquetSource(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { src.Close() }()
	var batch features.Batch
	rows := 0
	// best is the fastest whole pass over the file, in rows per CPU
	// second: other sessions' load only ever slows a pass, so the best
	// of a dozen varies much less than the mean does.
	best, passRows := 0.0, 0
	b.ReportAllocs()
	cpu0 := processCPU()
	pass0 := cpu0
	b.ResetTimer()
	for range b.N {
		rec, err := src.Next(ctx)
		if err == io.EOF {
			if cpu := processCPU() - pass0; cpu > 0 {
				best = max(best, float64(passRows)/cpu.Seconds())
			}
			b.StopTimer()
			src.Close()
			if src, err = ingest.NewParquetSource(ctx, cfg); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			pass0, passRows = processCPU(), 0
			rec, err = src.Next(ctx)
		}
		if err != nil {
			b.Fatal(err)
		}
		err = s.Transformer.TransformTo(&batch, rec)
		rec.Release()
		if err != nil {
			b.Fatal(err)
		}
		rows += batch.Rows
		passRows += batch.Rows
	}
	cpu := processCPU() - cpu0
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	if cpu > 0 {
		b.ReportMetric(float64(rows)/cpu.Seconds(), "rows/cpu-s")
	}
	if best > 0 {
		b.ReportMetric(best, "rows/cpu-s-best-pass")
	}
}

// processCPU is the process's user and system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
