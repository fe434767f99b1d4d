package features

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// The one-shot xxh64 must equal the reference streaming digest for every
// length around the 4/8/32-byte stripe boundaries and arbitrary seeds.
func TestXXH64MatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 200)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	seeds := []uint64{0, 1, 1<<63 + 12345, rng.Uint64(), FieldSeed("user_id")}
	for n := 0; n <= len(buf); n++ {
		for _, seed := range seeds {
			d := xxhash.NewWithSeed(seed)
			d.Write(buf[:n])
			want := d.Sum64()
			if got := xxh64(buf[:n], seed); got != want {
				t.Fatalf("xxh64(len %d, seed %d) = %x, want %x", n, seed, got, want)
			}
			if got := xxh64(string(buf[:n]), seed); got != want {
				t.Fatalf("xxh64(string len %d, seed %d) = %x, want %x", n, seed, got, want)
			}
		}
	}
	if xxhash.Sum64String("abc") != xxh64("abc", 0) {
		t.Fatal("seed 0 differs from Sum64String")
	}
}

func TestCanonicalTextHashes(t *testing.T) {
	seed := FieldSeed("f")
	for _, v := range []int64{0, 1, -1, 12345, -9876543210, 1<<63 - 1, -1 << 63} {
		if hashInt(v, seed) != xxh64(strconv.FormatInt(v, 10), seed) {
			t.Errorf("hashInt(%d) differs from the hash of its decimal text", v)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 200000; i++ {
		var v int64
		switch i % 4 {
		case 0:
			v = int64(i)
		case 1:
			v = rng.Int64N(1e9) - 1e8
		case 2:
			v = int64(rng.Uint64())
		default:
			p := int64(1)
			for range rng.IntN(19) {
				p *= 10
			}
			v = p + rng.Int64N(3) - 1
		}
		if got, want := hashInt(v, seed), xxh64(strconv.FormatInt(v, 10), seed); got != want {
			t.Fatalf("hashInt(%d) = %x, want the hash of its decimal text %x", v, got, want)
		}
		if v >= 0 && hashUint(uint64(v), seed) != hashInt(v, seed) {
			t.Fatalf("hashUint(%d) differs from hashInt", v)
		}
	}
	if hashUint(1<<64-1, seed) != xxh64("18446744073709551615", seed) {
		t.Error("hashUint")
	}
	if hashBool(true, seed) != xxh64("true", seed) || hashBool(false, seed) != xxh64("false", seed) {
		t.Error("hashBool")
	}
	for v, text := range map[float64]string{3: "3", 1.5: "1.5", 1e21: "1e+21", 0.1: "0.1"} {
		if hashFloat(v, 64, seed) != xxh64(text, seed) {
			t.Errorf("hashFloat(%v) differs from the hash of %q", v, text)
		}
	}
	if hashFloat(math.Copysign(0, -1), 64, seed) != xxh64("0", seed) {
		t.Error("-0 should hash as \"0\"")
	}
	if hashFloat(float64(float32(0.1)), 32, seed) != xxh64("0.1", seed) {
		t.Error("float32 0.1 should format as 0.1")
	}
}
