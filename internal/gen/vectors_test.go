package gen

import (
	"bytes"
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/parquet-go/parquet-go"
)

func readRows[T any](t *testing.T, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := parquet.NewGenericReader[T](f)
	defer r.Close()
	out := make([]T, r.NumRows())
	n, err := r.Read(out)
	if err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return out[:n]
}

// TestGenerateItemVectors: with ItemVectors every row has the item's
// vector (the same for every row of an item), every other column is what
// the same seed writes without vectors, the spec has the vector field,
// and the vectors carry the items' hidden CTR effect.
func TestGenerateItemVectors(t *testing.T) {
	const dim = 6
	dirV, dir0 := t.TempDir(), t.TempDir()
	cfg := Config{Dir: dirV, Rows: 20_000, Users: 500, Items: 500, Seed: 3, Files: 1, ItemVectors: dim}
	sum, err := Generate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dir, cfg.ItemVectors = dir0, 0
	if _, err := Generate(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	// (Both files read as Events: parquet-go reads a null age of an
	// embedded Event as a pointer to 0.)
	withVec := readRows[VecEvent](t, filepath.Join(dirV, "test-00000.parquet"))
	same := readRows[Event](t, filepath.Join(dirV, "test-00000.parquet"))
	plain := readRows[Event](t, filepath.Join(dir0, "test-00000.parquet"))
	if len(withVec) != len(plain) || len(same) != len(plain) || len(plain) != 2000 {
		t.Fatalf("%d, %d and %d rows", len(withVec), len(same), len(plain))
	}
	byItem := map[int64][]float32{}
	for i, e := range withVec {
		if len(e.ItemVec) != dim {
			t.Fatalf("row %d: item_vec of %d", i, len(e.ItemVec))
		}
		if !reflect.DeepEqual(same[i], plain[i]) {
			t.Fatalf("row %d differs from the row written without vectors:\n%+v\n%+v", i, same[i], plain[i])
		}
		if v, ok := byItem[withVec[i].ItemID]; ok && !slices.Equal(v, withVec[i].ItemVec) {
			t.Fatalf("item %d has two vectors", withVec[i].ItemID)
		}
		byItem[withVec[i].ItemID] = withVec[i].ItemVec
	}
	spec, err := os.ReadFile(sum.Spec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(spec, []byte("{name: item_vec, kind: vector, dim: 6, normalize: per_dim, side: candidate}")) {
		t.Errorf("spec:\n%s", spec)
	}
	// The mean vector of items with a high hidden CTR effect is far from
	// that of items with a low one (in units of the noise's std, 0.5).
	w, err := NewWorld(3, 500, 500, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.DrawItemVectors(3, dim); err != nil {
		t.Fatal(err)
	}
	var hi, lo [dim]float64
	var nh, nl float64
	for i, it := range w.items {
		v := w.itemVecs[i*dim : (i+1)*dim]
		for d := range dim {
			switch {
			case it.ctr > 0.35:
				hi[d] += float64(v[d])
			case it.ctr < -0.35:
				lo[d] += float64(v[d])
			}
		}
		if it.ctr > 0.35 {
			nh++
		} else if it.ctr < -0.35 {
			nl++
		}
	}
	var dist float64
	for d := range dim {
		x := hi[d]/nh - lo[d]/nl
		dist += x * x
	}
	if dist = math.Sqrt(dist); !(dist > 1) {
		t.Errorf("high- and low-CTR items' mean vectors are %.3f apart, want > 1", dist)
	}
	if err := (&Config{Dir: "x", ItemVectors: 2, Cart: true}).Validate(); err == nil {
		t.Error("ItemVectors with Cart: no error")
	}
}
