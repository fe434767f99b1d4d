// Command prepare converts the AliExpress multi-task sample
// (examples/aliexpress/data/{train,test}.csv) to Parquet, written with
// arrow-go's pqarrow writer:
//
//	go run ./examples/aliexpress/prepare -out data/aliexpress
//
// Column types: search_id and categorical_* as int64, numerical_* as double,
// click and conversion as int32. Any other column, a missing one, or a value
// that does not parse is an error naming the file, line and column.
package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

func main() {
	in := flag.String("in", "examples/aliexpress/data", "directory holding train.csv and test.csv")
	out := flag.String("out", "data/aliexpress", "output directory for train.parquet and test.parquet")
	flag.Parse()
	for _, name := range []string{"train", "test"} {
		st, err := convert(filepath.Join(*in, name+".csv"), filepath.Join(*out, name+".parquet"), memory.DefaultAllocator)
		if err != nil {
			fmt.Fprintln(os.Stderr, "aliexpress prepare:", err)
			os.Exit(1)
		}
		fmt.Printf("%s.parquet: %d rows, %d clicks, %d conversions\n", name, st.Rows, st.Clicks, st.Conversions)
	}
}

// Stats counts what convert wrote.
type Stats struct{ Rows, Clicks, Conversions int }

// columnType gives the Arrow type of a column of the AliExpress format.
func columnType(name string) (arrow.DataType, error) {
	switch {
	case name == "search_id", strings.HasPrefix(name, "categorical_"):
		return arrow.PrimitiveTypes.Int64, nil
	case strings.HasPrefix(name, "numerical_"):
		return arrow.PrimitiveTypes.Float64, nil
	case name == "click", name == "conversion":
		return arrow.PrimitiveTypes.Int32, nil
	}
	return nil, fmt.Errorf("unknown column %q (want search_id, categorical_N, numerical_N, click, conversion)", name)
}

// convert reads one CSV file with a header and writes it as Parquet.
func convert(in, out string, mem memory.Allocator) (st Stats, err error) {
	f, err := os.Open(in)
	if err != nil {
		return st, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return st, fmt.Errorf("%s: header: %w", in, err)
	}
	header = append([]string(nil), header...)
	fields := make([]arrow.Field, len(header))
	seen := map[string]bool{}
	for i, name := range header {
		typ, err := columnType(name)
		if err != nil {
			return st, fmt.Errorf("%s: column %d: %w", in, i+1, err)
		}
		if seen[name] {
			return st, fmt.Errorf("%s: column %q appears twice", in, name)
		}
		seen[name] = true
		fields[i] = arrow.Field{Name: name, Type: typ}
	}
	for _, need := range []string{"click", "conversion"} {
		if !seen[need] {
			return st, fmt.Errorf("%s: no %q column", in, need)
		}
	}
	schema := arrow.NewSchema(fields, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return st, fmt.Errorf("%s: %w", in, err)
		}
		for i, v := range rec {
			if err := appendValue(b.Field(i), v); err != nil {
				return st, fmt.Errorf("%s line %d column %q: %w", in, line, header[i], err)
			}
			switch header[i] {
			case "click":
				st.Clicks += int(b.Field(i).(*array.Int32Builder).Value(st.Rows))
			case "conversion":
				st.Conversions += int(b.Field(i).(*array.Int32Builder).Value(st.Rows))
			}
		}
		st.Rows++
	}
	batch := b.NewRecordBatch()
	defer batch.Release()

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return st, err
	}
	w, err := os.Create(out)
	if err != nil {
		return st, err
	}
	defer w.Close()
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Zstd), parquet.WithAllocator(mem))
	fw, err := pqarrow.NewFileWriter(schema, w, props, pqarrow.NewArrowWriterProperties(pqarrow.WithAllocator(mem)))
	if err != nil {
		return st, fmt.Errorf("%s: %w", out, err)
	}
	if err := fw.Write(batch); err != nil {
		fw.Close()
		return st, fmt.Errorf("%s: %w", out, err)
	}
	if err := fw.Close(); err != nil {
		return st, fmt.Errorf("%s: %w", out, err)
	}
	return st, nil
}

func appendValue(b array.Builder, v string) error {
	switch b := b.(type) {
	case *array.Int64Builder:
		x, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("want an integer, found %q", v)
		}
		b.Append(x)
	case *array.Float64Builder:
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("want a number, found %q", v)
		}
		b.Append(x)
	case *array.Int32Builder:
		if v != "0" && v != "1" {
			return fmt.Errorf("want a 0/1 label, found %q", v)
		}
		b.Append(int32(v[0] - '0'))
	}
	return nil
}
