package tensorfile

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	f := map[string][]float32{"a.m": {1, -2.5, float32(math.Inf(1))}, "b": {}}
	i := map[string][]int32{"c.steps": {7, -1, 1 << 30}}
	var buf bytes.Buffer
	if err := Write(&buf, f, i); err != nil {
		t.Fatal(err)
	}
	gf, gi, err := Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gf, f) || !reflect.DeepEqual(gi, i) {
		t.Fatalf("round trip: got %v %v", gf, gi)
	}
	for cut := 1; cut < buf.Len(); cut += 7 {
		if _, _, err := Read(bytes.NewReader(buf.Bytes()[:cut])); !errors.Is(err, ErrFormat) {
			t.Fatalf("truncated at %d: err %v, want ErrFormat", cut, err)
		}
	}
}
