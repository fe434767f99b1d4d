package tensorfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"runtime"
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

// TestHugeHeaderAllocatesNothing: a header claiming more data than the
// file holds is refused before its vectors are allocated, from a file
// (whose size is checked) and from a stream (whose vectors grow with the
// data read).
func TestHugeHeaderAllocatesNothing(t *testing.T) {
	const cnt = 1 << 28 // 1 GiB of float32
	hdr := fmt.Sprintf(`{"a":{"dtype":"F32","shape":[%d],"data_offsets":[0,%d]}}`, cnt, 4*cnt)
	for len(hdr)%8 != 0 {
		hdr += " "
	}
	file := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	file = append(file, hdr...)
	file = append(file, make([]byte, 4096)...)
	for _, r := range []io.Reader{bytes.NewReader(file), struct{ io.Reader }{bytes.NewReader(file)}} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _, err := Read(r)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrFormat) {
			t.Errorf("%T: err %v, want ErrFormat", r, err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
			t.Errorf("%T: allocated %d MiB before refusing", r, n>>20)
		}
	}
}
