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
	want := Tensors{
		F32: map[string][]float32{"a.m": {1, -2.5, float32(math.Inf(1))}, "b": {}},
		I32: map[string][]int32{"c.steps": {7, -1, 1 << 30}},
		I64: map[string][]int64{"d.rows": {math.MinInt64, -1, 0, math.MaxInt64}, "e": {}},
		U64: map[string][]uint64{"d.keys": {0, 1, math.MaxUint64, 0x0123456789abcdef}},
	}
	var buf bytes.Buffer
	if err := Write(&buf, want); err != nil {
		t.Fatal(err)
	}
	got, err := Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip: got %v", got)
	}
	// The same through a reader that is not a file.
	if got, err := Read(struct{ io.Reader }{bytes.NewReader(buf.Bytes())}); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip from a stream: got %v, %v", got, err)
	}
	dup := Tensors{I64: map[string][]int64{"x": {1}}, U64: map[string][]uint64{"x": {1}}}
	if err := Write(io.Discard, dup); err == nil {
		t.Error("a name of two dtypes was written")
	}
	for cut := 1; cut < buf.Len(); cut += 7 {
		if _, err := Read(bytes.NewReader(buf.Bytes()[:cut])); !errors.Is(err, ErrFormat) {
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
		_, err := Read(r)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrFormat) {
			t.Errorf("%T: err %v, want ErrFormat", r, err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
			t.Errorf("%T: allocated %d MiB before refusing", r, n>>20)
		}
	}
}
