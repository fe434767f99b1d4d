package gen

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/internal/auc"
	"github.com/parquet-go/parquet-go"
)

func TestGenerateWritesLearnableData(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, Rows: 120_000, Users: 2000, Items: 2000, Seed: 7, TaskCorr: 0.5, Files: 2, RowGroupRows: 16384}
	sum, err := Generate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Train) != 2 || sum.Train[0].Rows+sum.Train[1].Rows+sum.Test.Rows != cfg.Rows || sum.Test.Rows != 12000 {
		t.Fatalf("row split %+v", sum)
	}
	if sum.CeilingCTRAUC < 0.72 || sum.CeilingCTRAUC > 0.88 {
		t.Errorf("ceiling CTR AUC %v outside the intended 0.72-0.88", sum.CeilingCTRAUC)
	}
	if sum.CeilingCTCVRAUC < 0.75 || sum.CeilingCTCVRAUC > 0.97 {
		t.Errorf("ceiling CTCVR AUC %v outside 0.75-0.97", sum.CeilingCTCVRAUC)
	}
	for _, fs := range append(sum.Train, sum.Test) {
		if fs.CTR < 0.02 || fs.CTR > 0.05 {
			t.Errorf("%s: CTR %v outside 2-5%%", fs.Path, fs.CTR)
		}
		if fs.CVR < 0.08 || fs.CVR > 0.22 {
			t.Errorf("%s: CVR given click %v outside 8-22%%", fs.Path, fs.CVR)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "spec.yaml")); err != nil {
		t.Error(err)
	}

	// Row groups of the configured size, zstd.
	f, err := os.Open(filepath.Join(dir, "train-00000.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	rgs := pf.Metadata().RowGroups
	if len(rgs) != 4 || rgs[0].NumRows != 16384 {
		t.Errorf("train-00000 has %d row groups, first %d rows; want 4 of 16384", len(rgs), rgs[0].NumRows)
	}
	if c := rgs[0].Columns[0].MetaData.Codec.String(); c != "ZSTD" {
		t.Errorf("codec %s, want ZSTD", c)
	}

	// Read the test file back: types, nulls, label logic, and the AUC.
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	src, err := ingest.NewParquetSource(context.Background(), ingest.ParquetConfig{
		Paths: []string{filepath.Join(dir, "test-*.parquet")}, Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	want := map[string]arrow.DataType{
		"user_id": arrow.PrimitiveTypes.Int64, "item_id": arrow.PrimitiveTypes.Int64,
		"category": arrow.BinaryTypes.String, "brand": arrow.BinaryTypes.String, "device": arrow.BinaryTypes.String,
		"hour": arrow.PrimitiveTypes.Int32, "position": arrow.PrimitiveTypes.Int32, "price": arrow.PrimitiveTypes.Float64,
		"age": arrow.PrimitiveTypes.Int32, "user_tags": arrow.ListOf(arrow.BinaryTypes.String),
		"user_activity": arrow.PrimitiveTypes.Float64, "item_popularity": arrow.PrimitiveTypes.Float64,
		"click": arrow.PrimitiveTypes.Int32, "conversion": arrow.PrimitiveTypes.Int32,
		"true_ctr": arrow.PrimitiveTypes.Float64, "true_cvr": arrow.PrimitiveTypes.Float64,
	}
	sch := src.Schema()
	if len(sch.Fields()) != len(want) {
		t.Errorf("%d columns, want %d: %s", len(sch.Fields()), len(want), sch)
	}
	for name, typ := range want {
		idx := sch.FieldIndices(name)
		if len(idx) != 1 || !arrow.TypeEqual(sch.Field(idx[0]).Type, typ) {
			t.Errorf("column %s: want one of type %s in %s", name, typ, sch)
		}
	}
	var rows, ageNulls, tagLists, tagsTotal int
	var ctr, ctcvr []float64
	var click, conv []float32
	for rec, err := range ingest.Records(context.Background(), src) {
		if err != nil {
			t.Fatal(err)
		}
		col := func(name string) arrow.Array { return rec.Column(sch.FieldIndices(name)[0]) }
		age := col("age").(*array.Int32)
		tags := col("user_tags").(*array.List)
		cl := col("click").(*array.Int32).Int32Values()
		cv := col("conversion").(*array.Int32).Int32Values()
		pc := col("true_ctr").(*array.Float64).Float64Values()
		pv := col("true_cvr").(*array.Float64).Float64Values()
		for i := range int(rec.NumRows()) {
			if age.IsNull(i) {
				ageNulls++
			} else if a := age.Value(i); a < 16 || a > 80 {
				t.Fatalf("age %d", a)
			}
			s, e := tags.ValueOffsets(i)
			if n := int(e - s); n > 5 {
				t.Fatalf("%d tags", n)
			} else if n > 0 {
				tagLists++
				tagsTotal += n
			}
			if cv[i] == 1 && cl[i] == 0 {
				t.Fatalf("row %d converts without a click", rows+i)
			}
			if pc[i] <= 0 || pc[i] >= 1 || pv[i] <= 0 || pv[i] >= 1 {
				t.Fatalf("probabilities %v %v", pc[i], pv[i])
			}
			ctr = append(ctr, pc[i])
			ctcvr = append(ctcvr, pc[i]*pv[i])
			click = append(click, float32(cl[i]))
			conv = append(conv, float32(cv[i]))
		}
		rows += int(rec.NumRows())
		rec.Release()
	}
	if rows != 12000 {
		t.Fatalf("read %d test rows, want 12000", rows)
	}
	if share := float64(ageNulls) / float64(rows); share < 0.02 || share > 0.09 {
		t.Errorf("age null share %v, want about 5%%", share)
	}
	if share := float64(tagLists) / float64(rows); share < 0.85 || share > 0.95 {
		t.Errorf("share of rows with tags %v, want about 90%%", share)
	}
	a := auc.AUC(nil, ctr, click, nil)
	b := auc.AUC(nil, ctcvr, conv, nil)
	if a != sum.CeilingCTRAUC || b != sum.CeilingCTCVRAUC {
		t.Errorf("AUC of the file read back %v, %v; summary says %v, %v", a, b, sum.CeilingCTRAUC, sum.CeilingCTCVRAUC)
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	gen := func(seed uint64, workers int) map[string][]byte {
		dir := t.TempDir()
		if _, err := Generate(context.Background(), Config{Dir: dir, Rows: 6000, Users: 300, Items: 300, Seed: seed, Files: 3, Workers: workers}); err != nil {
			t.Fatal(err)
		}
		out := map[string][]byte{}
		for _, n := range []string{"train-00000.parquet", "train-00002.parquet", "test-00000.parquet", "spec.yaml"} {
			b, err := os.ReadFile(filepath.Join(dir, n))
			if err != nil {
				t.Fatal(err)
			}
			out[n] = b
		}
		return out
	}
	a, b, c := gen(3, 1), gen(3, 4), gen(4, 2)
	for n := range a {
		if !bytes.Equal(a[n], b[n]) {
			t.Errorf("%s differs between two runs with seed 3", n)
		}
	}
	if bytes.Equal(a["train-00000.parquet"], c["train-00000.parquet"]) {
		t.Error("seeds 3 and 4 wrote the same file")
	}
}

// TestTaskCorr checks that the correlation flag moves the correlation of the
// two logits the way it says.
func TestTaskCorr(t *testing.T) {
	corrOf := func(c float64) float64 {
		w, err := NewWorld(5, 1000, 1000, c)
		if err != nil {
			t.Fatal(err)
		}
		s := w.NewStream(5, 0)
		var e Event
		const n = 20000
		x, y := make([]float64, n), make([]float64, n)
		for k := range n {
			s.Next(&e)
			x[k] = math.Log(e.TrueCTR/(1-e.TrueCTR)) + 0.55*math.Log(float64(e.Position))
			y[k] = math.Log(e.TrueCVR / (1 - e.TrueCVR))
		}
		return pearson(x, y)
	}
	neg, zero, pos := corrOf(-0.9), corrOf(0), corrOf(0.9)
	if !(neg < -0.6 && math.Abs(zero) < 0.2 && pos > 0.6) {
		t.Errorf("logit correlations for task-corr -0.9, 0, 0.9: %.2f %.2f %.2f", neg, zero, pos)
	}
}

func pearson(x, y []float64) float64 {
	mx, sx := meanStd(x)
	my, sy := meanStd(y)
	var c float64
	for i := range x {
		c += (x[i] - mx) * (y[i] - my)
	}
	return c / float64(len(x)) / (sx * sy)
}

func TestStreamNextDoesNotAllocate(t *testing.T) {
	w, err := NewWorld(1, 100, 100, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	s := w.NewStream(1, 1)
	var e Event
	if a := testing.AllocsPerRun(1000, func() { s.Next(&e) }); a != 0 {
		t.Errorf("Stream.Next allocates %v times", a)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{},
		{Dir: "x", Rows: -1},
		{Dir: "x", TaskCorr: 1.5},
		{Dir: "x", TaskCorr: math.NaN()},
		{Dir: "x", TestFrac: 1},
		{Dir: "x", Files: -2},
		{Dir: "x", Skew: Skew{Users: -1}},
		{Dir: "x", Skew: Skew{Items: math.NaN()}},
		{Dir: "x", IDEffects: -0.5},
		{Dir: "x", IDEffects: MaxIDEffects + 1},
		{Dir: "x", IDEffects: math.NaN()},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted a bad config", c)
		}
	}
	if _, err := Generate(context.Background(), Config{Dir: t.TempDir(), Rows: 3, Files: 4}); err == nil {
		t.Error("3 rows over 4 files accepted")
	}
	if _, err := NewWorld(1, 0, 10, 0); err == nil {
		t.Error("0 users accepted")
	}
}

// TestStreamCart: the three-step funnel draws the same impressions as the
// two-step one up to its first cart (which draws once more), a cart only
// after a click and a conversion only after a cart,
// with true_cart >= true_cvr; the conversions given a click keep their
// rate, and the cart rate is between it and 1.
func TestStreamCart(t *testing.T) {
	w, err := NewWorld(3, 500, 500, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	two, three := w.NewStream(3, 1), w.NewStream(3, 1)
	var e Event
	var c CartEvent
	var clicks, carts, convs, expConv float64
	same := 0
	for range 200_000 {
		three.NextCart(&c)
		if carts == 0 {
			two.Next(&e)
			if e.Click != c.Click || e.UserID != c.UserID || e.ItemID != c.ItemID || e.TrueCTR != c.TrueCTR || e.TrueCVR != c.TrueCVR {
				t.Fatalf("row %d: the streams diverged before a cart: %+v, %+v", same, e, c.Event)
			}
			same++
		}
		if c.Cart > c.Click || c.Conversion > c.Cart || c.TrueCart < c.TrueCVR || c.TrueCart > 1 {
			t.Fatalf("funnel out of order: %+v", c)
		}
		if c.Click == 1 {
			clicks++
			carts += float64(c.Cart)
			convs += float64(c.Conversion)
			expConv += c.TrueCVR
		}
	}
	if same < 2 {
		t.Errorf("only %d rows before the first cart", same)
	}
	if d := (convs - expConv) / math.Sqrt(expConv); math.Abs(d) > 4 {
		t.Errorf("%v conversions, expected %.0f given the clicks", convs, expConv)
	}
	if !(carts/clicks > 1.5*convs/clicks && carts/clicks < 0.9) {
		t.Errorf("cart rate %.3f, conversion rate %.3f given a click", carts/clicks, convs/clicks)
	}
}

// TestGenerateCart writes the three-step funnel's columns and its spec.
func TestGenerateCart(t *testing.T) {
	dir := t.TempDir()
	sum, err := Generate(context.Background(), Config{Dir: dir, Rows: 20_000, Users: 500, Items: 500, Seed: 2, Files: 1, Cart: true})
	if err != nil {
		t.Fatal(err)
	}
	if fs := sum.Train[0]; !(fs.Carts > fs.Conversions && fs.Carts < fs.Clicks) {
		t.Errorf("train file: %+v", fs)
	}
	f, err := os.Open(filepath.Join(dir, "test-00000.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	for _, col := range []string{"click", "cart", "conversion", "true_cart"} {
		if _, ok := pf.Schema().Lookup(col); !ok {
			t.Errorf("no column %s", col)
		}
	}
	spec, err := os.ReadFile(sum.Spec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(spec, []byte("label: cart, parent: ctr")) || !bytes.Contains(spec, []byte("arch: aitm")) {
		t.Errorf("spec:\n%s", spec)
	}
}
