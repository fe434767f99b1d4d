package bundle

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/onestone/onestone/internal/tensorfile"
)

// shuffle4 and unshuffle4 are inverses, tails shorter than a word
// included, and shuffle4 groups the bytes by their place in the word.
func TestShuffle4(t *testing.T) {
	for _, n := range []int{0, 1, 3, 4, 5, 8, 1023} {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(i*7 + 1)
		}
		sh, back := make([]byte, n), make([]byte, n)
		shuffle4(sh, src)
		unshuffle4(back, sh)
		if !bytes.Equal(back, src) {
			t.Fatalf("%d bytes: unshuffle4(shuffle4(x)) != x", n)
		}
		if w := n / 4; w > 1 && (sh[1] != src[4] || sh[w] != src[1]) {
			t.Fatalf("%d bytes: shuffled %v from %v", n, sh, src)
		}
	}
}

// A chain of compressed deltas reads back bit for bit as the full
// bundle of the same weights; their manifests name the codec and the
// decoded checksum, and the bytes stored are fewer. Deltas without a
// codec have manifests without the members, as before they existed.
func TestDeltaCompressed(t *testing.T) {
	d, want := deltaChainCodec(t, CodecZstd)
	m3, got, err := readBack(t, d.Path("v00000003"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sameBits(t, "v3 from its compressed chain", got, want)
	_, full, err := readBack(t, d.Path("v00000004"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sameBits(t, "v3 against the full v4", got, full)
	if m3.Delta.Codec != CodecZstd || m3.Delta.Decoded == nil || m3.Files[DeltaFile].Size >= m3.Delta.Decoded.Size {
		t.Fatalf("v3: delta %+v, stored %+v", m3.Delta, m3.Files[DeltaFile])
	}

	plain, _ := deltaChain(t)
	data, err := os.ReadFile(filepath.Join(plain.Path("v00000003"), ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(`"codec"`)) || bytes.Contains(data, []byte(`"decoded"`)) {
		t.Fatalf("a delta without a codec names one: %s", data)
	}
}

// A compressed delta whose stored bytes changed is refused by their
// checksum, as any file; one whose bytes decode to other contents than
// the manifest's decoded checksum, or that do not decode, or of a codec
// this build does not know, is refused too. All wrap ErrChain.
func TestDeltaCompressedCorrupt(t *testing.T) {
	d, _ := deltaChainCodec(t, CodecZstd)
	p := filepath.Join(d.Path("v00000003"), DeltaFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x04
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readBack(t, d.Path("v00000003"), nil); !errors.Is(err, ErrChain) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a flipped bit in a compressed delta: %v", err)
	}

	// Below the stored checksum: readDeltaFile on bytes of our making.
	dir := t.TempDir()
	var raw, other bytes.Buffer
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]float32, 4096)
	for i := range vals {
		vals[i] = float32(r.NormFloat64())
	}
	if err := tensorfile.Write(&raw, tensorfile.Tensors{F32: map[string][]float32{"a": vals}}); err != nil {
		t.Fatal(err)
	}
	vals[17]++
	if err := tensorfile.Write(&other, tensorfile.Tensors{F32: map[string][]float32{"a": vals}}); err != nil {
		t.Fatal(err)
	}
	write := func(stored []byte) FileSum {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, DeltaFile), stored, 0o644); err != nil {
			t.Fatal(err)
		}
		return sumOf(stored)
	}
	good, err := encodeDelta(CodecZstd, raw.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	decoded := sumOf(raw.Bytes())
	want := write(good)
	if _, err := readDeltaFile(dir, &Delta{Codec: CodecZstd, Decoded: &decoded}, want, Limits{}); err != nil {
		t.Fatalf("the good bytes: %v", err)
	}
	swapped, err := encodeDelta(CodecZstd, other.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		stored []byte
		delta  Delta
	}{
		{"other contents", swapped, Delta{Codec: CodecZstd, Decoded: &decoded}},
		{"not zstd", raw.Bytes(), Delta{Codec: CodecZstd, Decoded: &decoded}},
		{"truncated frame", good[:len(good)-9], Delta{Codec: CodecZstd, Decoded: &decoded}},
		{"no decoded checksum", good, Delta{Codec: CodecZstd}},
		{"unknown codec", good, Delta{Codec: "lz5", Decoded: &decoded}},
	} {
		want := write(c.stored)
		_, err := readDeltaFile(dir, &c.delta, want, Limits{})
		if !errors.Is(err, ErrChain) {
			t.Errorf("%s: %v, want a broken chain", c.name, err)
		}
		if c.name != "unknown codec" && !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", c.name, err)
		}
	}
	// A decoded size past the budget is refused before decoding.
	big := FileSum{Size: 1 << 40, CRC32C: decoded.CRC32C}
	if _, err := readDeltaFile(dir, &Delta{Codec: CodecZstd, Decoded: &big}, write(good), Limits{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a decoded size of 1 TiB: %v, want ErrTooLarge", err)
	}
}
