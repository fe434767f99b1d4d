package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/onestone/onestone/ingest"
)

const dataFile = "../data/census-income.test.gz"

// rawCounts counts lines, labels and the train split straight from the text.
func rawCounts(t *testing.T, seed uint64) (lines, income, never, train int) {
	f, err := os.Open(dataFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), ", ")
		lines++
		if strings.TrimSpace(cols[41]) == "50000+." {
			income++
		}
		if cols[7] == "Never married" {
			never++
		}
		if inTrain(sc.Bytes(), seed) {
			train++
		}
	}
	return
}

func TestPrepareRoundTrip(t *testing.T) {
	out := t.TempDir()
	st, err := prepare(dataFile, out, 42)
	if err != nil {
		t.Fatal(err)
	}
	lines, income, never, train := rawCounts(t, 42)
	if st.Train+st.Test != lines || st.Train != train {
		t.Fatalf("wrote %d + %d rows; the file has %d lines, %d of them hash to train", st.Train, st.Test, lines, train)
	}
	if share := float64(st.Train) / float64(lines); share < 0.79 || share > 0.81 {
		t.Errorf("train share %v, want 0.8", share)
	}

	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var gotIncome, gotNever, rows int
	for _, name := range []string{"train.parquet", "test.parquet"} {
		src, err := ingest.NewParquetSource(context.Background(), ingest.ParquetConfig{
			Paths:     []string{filepath.Join(out, name)},
			Columns:   []string{"age", "education", "marital_stat", "mig_chg_msa", "capital_gains", "income_50k", "never_married"},
			Allocator: mem,
		})
		if err != nil {
			t.Fatal(err)
		}
		migNulls := 0
		for rec, err := range ingest.Records(context.Background(), src) {
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range rec.Columns() {
				if c.NullN() > 0 && rec.ColumnName(i) != "mig_chg_msa" {
					t.Errorf("%s: column %s has %d nulls", name, rec.ColumnName(i), c.NullN())
				}
			}
			migNulls += rec.Column(3).NullN()
			inc := rec.Column(5).(*array.Int32).Int32Values()
			nev := rec.Column(6).(*array.Int32).Int32Values()
			ms := rec.Column(2).(*array.String)
			for i := range inc {
				gotIncome += int(inc[i])
				gotNever += int(nev[i])
				if (nev[i] == 1) != (ms.Value(i) == "Never married") {
					t.Fatalf("never_married %d but marital_stat %q", nev[i], ms.Value(i))
				}
			}
			if !arrow.TypeEqual(rec.Column(0).DataType(), arrow.PrimitiveTypes.Int32) ||
				!arrow.TypeEqual(rec.Column(4).DataType(), arrow.PrimitiveTypes.Float64) {
				t.Errorf("age %s, capital_gains %s; want int32, float64", rec.Column(0).DataType(), rec.Column(4).DataType())
			}
			rows += int(rec.NumRows())
			rec.Release()
		}
		src.Close()
		if migNulls == 0 {
			t.Errorf("%s: no nulls in mig_chg_msa, where the data has \"?\"", name)
		}
	}
	if rows != lines || gotIncome != income || gotNever != never {
		t.Errorf("read %d rows, %d income>50k, %d never married; the text has %d, %d, %d", rows, gotIncome, gotNever, lines, income, never)
	}
}

func TestParseRowErrors(t *testing.T) {
	var r row
	if err := parseRow(&r, "1, 2, 3"); err == nil || !strings.Contains(err.Error(), "want 42 columns") {
		t.Errorf("short line: %v", err)
	}
	good := "38, Private, 6, 36, 1st 2nd 3rd or 4th grade, 0, Not in universe, Married-civilian spouse present, Manufacturing-durable goods, Machine operators assmblrs & inspctrs, White, Mexican (Mexicano), Female, Not in universe, Not in universe, Full-time schedules, 0, 0, 0, Joint one under 65 & one 65+, Not in universe, Not in universe, Spouse of householder, Spouse of householder, 1032.38, ?, ?, ?, Not in universe under 1 year old, ?, 4, Not in universe, Mexico, Mexico, Mexico, Foreign born- Not a citizen of U S , 0, Not in universe, 2, 12, 95, - 50000."
	if err := parseRow(&r, good); err != nil {
		t.Fatal(err)
	}
	if r.Age != 38 || r.InstanceWeight != 1032.38 || r.MigChgMsa != nil || *r.Sex != "Female" || r.Income50k != 0 {
		t.Errorf("parsed %+v", r)
	}
	bad := strings.Replace(good, "38,", "old,", 1)
	if err := parseRow(&r, bad); err == nil || !strings.Contains(err.Error(), "column age") {
		t.Errorf("bad age: %v", err)
	}
	bad = strings.Replace(good, "- 50000.", "rich", 1)
	if err := parseRow(&r, bad); err == nil || !strings.Contains(err.Error(), "column income") {
		t.Errorf("bad label: %v", err)
	}
}
