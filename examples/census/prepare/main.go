// Command prepare converts the UCI Census-Income (KDD) test split in
// examples/census/data/census-income.test.gz into typed Parquet files
// train.parquet and test.parquet, split 80/20 by a seeded hash of each row.
//
//	go run ./examples/census/prepare -out data/census
//
// Columns keep the UCI names (snake_case); numeric columns are int32 or
// double, coded columns (industry, occupation, year, ...) int32, the rest
// nullable dictionary-encoded strings where "?" is null. The income column
// becomes the label income_50k (1 for "50000+."), and never_married (1 when
// marital_stat is "Never married") is the second label; marital_stat stays
// in the file but must not be a feature.
package main

import (
	"bufio"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/parquet-go/parquet-go"
)

// row is one census record with its two labels.
type row struct {
	Age            int32   `parquet:"age"`
	ClassWorker    *string `parquet:"class_worker,optional,dict"`
	DetIndCode     int32   `parquet:"det_ind_code"`
	DetOccCode     int32   `parquet:"det_occ_code"`
	Education      *string `parquet:"education,optional,dict"`
	WagePerHour    float64 `parquet:"wage_per_hour"`
	HsCollege      *string `parquet:"hs_college,optional,dict"`
	MaritalStat    *string `parquet:"marital_stat,optional,dict"`
	MajorIndCode   *string `parquet:"major_ind_code,optional,dict"`
	MajorOccCode   *string `parquet:"major_occ_code,optional,dict"`
	Race           *string `parquet:"race,optional,dict"`
	HispOrigin     *string `parquet:"hisp_origin,optional,dict"`
	Sex            *string `parquet:"sex,optional,dict"`
	UnionMember    *string `parquet:"union_member,optional,dict"`
	UnempReason    *string `parquet:"unemp_reason,optional,dict"`
	FullOrPartEmp  *string `parquet:"full_or_part_emp,optional,dict"`
	CapitalGains   float64 `parquet:"capital_gains"`
	CapitalLosses  float64 `parquet:"capital_losses"`
	StockDividends float64 `parquet:"stock_dividends"`
	TaxFilerStat   *string `parquet:"tax_filer_stat,optional,dict"`
	RegionPrevRes  *string `parquet:"region_prev_res,optional,dict"`
	StatePrevRes   *string `parquet:"state_prev_res,optional,dict"`
	DetHhFamStat   *string `parquet:"det_hh_fam_stat,optional,dict"`
	DetHhSumm      *string `parquet:"det_hh_summ,optional,dict"`
	InstanceWeight float64 `parquet:"instance_weight"`
	MigChgMsa      *string `parquet:"mig_chg_msa,optional,dict"`
	MigChgReg      *string `parquet:"mig_chg_reg,optional,dict"`
	MigMoveReg     *string `parquet:"mig_move_reg,optional,dict"`
	MigSame        *string `parquet:"mig_same,optional,dict"`
	MigPrevSunbelt *string `parquet:"mig_prev_sunbelt,optional,dict"`
	NumEmp         int32   `parquet:"num_emp"`
	FamUnder18     *string `parquet:"fam_under_18,optional,dict"`
	CountryFather  *string `parquet:"country_father,optional,dict"`
	CountryMother  *string `parquet:"country_mother,optional,dict"`
	CountrySelf    *string `parquet:"country_self,optional,dict"`
	Citizenship    *string `parquet:"citizenship,optional,dict"`
	OwnOrSelf      int32   `parquet:"own_or_self"`
	VetQuestion    *string `parquet:"vet_question,optional,dict"`
	VetBenefits    int32   `parquet:"vet_benefits"`
	WeeksWorked    int32   `parquet:"weeks_worked"`
	Year           int32   `parquet:"year"`
	Income50k      int32   `parquet:"income_50k"`
	NeverMarried   int32   `parquet:"never_married"`
}

// numColumns is the number of comma-separated columns of a census line.
const numColumns = 42

// Stats counts what prepare wrote.
type Stats struct {
	Train, Test                 int
	TrainIncome, TrainNeverMarr int
	TestIncome, TestNeverMarr   int
}

func main() {
	in := flag.String("in", "examples/census/data/census-income.test.gz", "census-income file (gzip, no header)")
	out := flag.String("out", "data/census", "output directory for train.parquet and test.parquet")
	seed := flag.Uint64("seed", 42, "seed of the row hash that makes the 80/20 split")
	flag.Parse()
	st, err := prepare(*in, *out, *seed)
	if err != nil {
		fmt.Fprintln(os.Stderr, "census prepare:", err)
		os.Exit(1)
	}
	fmt.Printf("train.parquet: %d rows (income>50k %d, never married %d)\n", st.Train, st.TrainIncome, st.TrainNeverMarr)
	fmt.Printf("test.parquet:  %d rows (income>50k %d, never married %d)\n", st.Test, st.TestIncome, st.TestNeverMarr)
}

// inTrain reports whether a line goes to the train split: xxhash64 of the
// line's bytes with the seed, modulo 10, below 8.
func inTrain(line []byte, seed uint64) bool {
	h := xxhash.NewWithSeed(seed)
	h.Write(line)
	return h.Sum64()%10 < 8
}

func prepare(in, outDir string, seed uint64) (st Stats, err error) {
	f, err := os.Open(in)
	if err != nil {
		return st, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return st, fmt.Errorf("%s: %w", in, err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return st, err
	}
	train, err := newWriter(filepath.Join(outDir, "train.parquet"))
	if err != nil {
		return st, err
	}
	defer train.abort()
	test, err := newWriter(filepath.Join(outDir, "test.parquet"))
	if err != nil {
		return st, err
	}
	defer test.abort()

	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var r row
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		if err := parseRow(&r, string(line)); err != nil {
			return st, fmt.Errorf("%s line %d: %w", in, lineNo, err)
		}
		if inTrain(line, seed) {
			st.Train++
			st.TrainIncome += int(r.Income50k)
			st.TrainNeverMarr += int(r.NeverMarried)
			err = train.write(&r)
		} else {
			st.Test++
			st.TestIncome += int(r.Income50k)
			st.TestNeverMarr += int(r.NeverMarried)
			err = test.write(&r)
		}
		if err != nil {
			return st, err
		}
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("%s: %w", in, err)
	}
	if err := train.close(); err != nil {
		return st, err
	}
	return st, test.close()
}

// writer buffers rows and writes them to one Parquet file.
type writer struct {
	path string
	f    *os.File
	w    *parquet.GenericWriter[row]
	buf  []row
}

func newWriter(path string) (*writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	w := parquet.NewGenericWriter[row](f, parquet.Compression(&parquet.Zstd), parquet.MaxRowsPerRowGroup(32768))
	return &writer{path: path, f: f, w: w}, nil
}

func (w *writer) write(r *row) error {
	w.buf = append(w.buf, *r)
	if len(w.buf) < 1024 {
		return nil
	}
	return w.flush()
}

func (w *writer) flush() error {
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("%s: %w", w.path, err)
	}
	w.buf = w.buf[:0]
	return nil
}

func (w *writer) close() error {
	if w.f == nil {
		return nil
	}
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.w.Close(); err != nil {
		return fmt.Errorf("%s: %w", w.path, err)
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// abort closes and removes a file that was not closed successfully.
func (w *writer) abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.path)
		w.f = nil
	}
}

// parseRow parses one line of 42 comma-separated columns into r.
func parseRow(r *row, line string) error {
	f := strings.Split(line, ",")
	if len(f) != numColumns {
		return fmt.Errorf("want %d columns, found %d", numColumns, len(f))
	}
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	var err error
	if r.Age, err = integer(f[0], "age"); err != nil {
		return err
	}
	r.ClassWorker = str(f[1])
	if r.DetIndCode, err = integer(f[2], "det_ind_code"); err != nil {
		return err
	}
	if r.DetOccCode, err = integer(f[3], "det_occ_code"); err != nil {
		return err
	}
	r.Education = str(f[4])
	if r.WagePerHour, err = num(f[5], "wage_per_hour"); err != nil {
		return err
	}
	r.HsCollege = str(f[6])
	r.MaritalStat = str(f[7])
	r.MajorIndCode = str(f[8])
	r.MajorOccCode = str(f[9])
	r.Race = str(f[10])
	r.HispOrigin = str(f[11])
	r.Sex = str(f[12])
	r.UnionMember = str(f[13])
	r.UnempReason = str(f[14])
	r.FullOrPartEmp = str(f[15])
	if r.CapitalGains, err = num(f[16], "capital_gains"); err != nil {
		return err
	}
	if r.CapitalLosses, err = num(f[17], "capital_losses"); err != nil {
		return err
	}
	if r.StockDividends, err = num(f[18], "stock_dividends"); err != nil {
		return err
	}
	r.TaxFilerStat = str(f[19])
	r.RegionPrevRes = str(f[20])
	r.StatePrevRes = str(f[21])
	r.DetHhFamStat = str(f[22])
	r.DetHhSumm = str(f[23])
	if r.InstanceWeight, err = num(f[24], "instance_weight"); err != nil {
		return err
	}
	r.MigChgMsa = str(f[25])
	r.MigChgReg = str(f[26])
	r.MigMoveReg = str(f[27])
	r.MigSame = str(f[28])
	r.MigPrevSunbelt = str(f[29])
	if r.NumEmp, err = integer(f[30], "num_emp"); err != nil {
		return err
	}
	r.FamUnder18 = str(f[31])
	r.CountryFather = str(f[32])
	r.CountryMother = str(f[33])
	r.CountrySelf = str(f[34])
	r.Citizenship = str(f[35])
	if r.OwnOrSelf, err = integer(f[36], "own_or_self"); err != nil {
		return err
	}
	r.VetQuestion = str(f[37])
	if r.VetBenefits, err = integer(f[38], "vet_benefits"); err != nil {
		return err
	}
	if r.WeeksWorked, err = integer(f[39], "weeks_worked"); err != nil {
		return err
	}
	if r.Year, err = integer(f[40], "year"); err != nil {
		return err
	}
	switch f[41] {
	case "50000+.":
		r.Income50k = 1
	case "- 50000.":
		r.Income50k = 0
	default:
		return fmt.Errorf("column income: want \"- 50000.\" or \"50000+.\", found %q", f[41])
	}
	r.NeverMarried = 0
	if f[7] == "Never married" {
		r.NeverMarried = 1
	}
	return nil
}

// str maps "?" (unknown) to null.
func str(s string) *string {
	if s == "?" || s == "" {
		return nil
	}
	return &s
}

var errEmpty = errors.New("empty value")

func num(s, col string) (float64, error) {
	if s == "" {
		return 0, fmt.Errorf("column %s: %w", col, errEmpty)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("column %s: want a number, found %q", col, s)
	}
	return v, nil
}

func integer(s, col string) (int32, error) {
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("column %s: want an integer, found %q", col, s)
	}
	return int32(v), nil
}
