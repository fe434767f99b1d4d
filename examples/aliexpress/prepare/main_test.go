package main

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/onestone/onestone/ingest"
)

// csvLabels counts rows, clicks and conversions straight from the CSV text.
func csvLabels(t *testing.T, path string) (rows, clicks, convs int, header []string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	header = recs[0]
	for _, r := range recs[1:] {
		rows++
		if r[len(r)-2] == "1" {
			clicks++
		}
		if r[len(r)-1] == "1" {
			convs++
		}
	}
	return rows, clicks, convs, header
}

func TestConvertRoundTrip(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	out := t.TempDir()
	for _, name := range []string{"train", "test"} {
		in := filepath.Join("..", "data", name+".csv")
		pq := filepath.Join(out, name+".parquet")
		st, err := convert(in, pq, mem)
		if err != nil {
			t.Fatal(err)
		}
		rows, clicks, convs, header := csvLabels(t, in)
		if st.Rows != rows || st.Clicks != clicks || st.Conversions != convs {
			t.Errorf("%s: stats %+v; the CSV has %d rows, %d clicks, %d conversions", name, st, rows, clicks, convs)
		}
		src, err := ingest.NewParquetSource(context.Background(), ingest.ParquetConfig{Paths: []string{pq}, Allocator: mem})
		if err != nil {
			t.Fatal(err)
		}
		sch := src.Schema()
		if len(sch.Fields()) != len(header) || len(header) != 82 {
			t.Fatalf("%s: %d columns, the CSV has %d (want 82)", name, len(sch.Fields()), len(header))
		}
		for i, f := range sch.Fields() {
			want, _ := columnType(header[i])
			if f.Name != header[i] || !arrow.TypeEqual(f.Type, want) {
				t.Errorf("column %d: %s %s, want %s %s", i, f.Name, f.Type, header[i], want)
			}
		}
		var got, gotClicks, gotConvs int
		for rec, err := range ingest.Records(context.Background(), src) {
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range rec.Columns() {
				if c.NullN() != 0 {
					t.Errorf("%s: column %s has nulls", name, rec.ColumnName(i))
				}
			}
			cl := rec.Column(80).(*array.Int32).Int32Values()
			cv := rec.Column(81).(*array.Int32).Int32Values()
			for i := range cl {
				gotClicks += int(cl[i])
				gotConvs += int(cv[i])
				if cv[i] == 1 && cl[i] == 0 {
					t.Errorf("%s row %d: conversion without click", name, got+i)
				}
			}
			got += int(rec.NumRows())
			rec.Release()
		}
		src.Close()
		if got != rows || gotClicks != clicks || gotConvs != convs {
			t.Errorf("%s: read %d rows, %d clicks, %d conversions; want %d, %d, %d", name, got, gotClicks, gotConvs, rows, clicks, convs)
		}
	}
}

func TestConvertErrors(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct{ csv, want string }{
		"unknown column": {"search_id,colour,click,conversion\n1,red,0,0\n", `unknown column "colour"`},
		"bad number":     {"search_id,numerical_1,click,conversion\n1,abc,0,0\n", `line 2 column "numerical_1": want a number, found "abc"`},
		"bad label":      {"search_id,click,conversion\n1,2,0\n", `line 2 column "click": want a 0/1 label`},
		"no conversion":  {"search_id,click\n1,0\n", `no "conversion" column`},
	}
	for name, c := range cases {
		in := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".csv")
		if err := os.WriteFile(in, []byte(c.csv), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := convert(in, filepath.Join(dir, "out.parquet"), memory.DefaultAllocator)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), in) {
			t.Errorf("%s: error %v; want it to name the file and say %q", name, err, c.want)
		}
	}
}
