package features

import (
	"math"
	"math/bits"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// XXH64 primes.
const (
	prime1 uint64 = 11400714785074694791
	prime2 uint64 = 14029467366897019727
	prime3 uint64 = 1609587929392839161
	prime4 uint64 = 9650029242287828579
	prime5 uint64 = 2870177450012600261
)

// FieldSeed returns the hash seed of a column: xxhash64 of its name with
// seed 0. Every categorical field, and the group key, hashes its values with
// the seed of its own column name, so equal values in different fields get
// unrelated ids.
func FieldSeed(name string) uint64 { return xxhash.Sum64String(name) }

// HashText returns xxhash64 of text with the given seed; it equals
// cespare/xxhash/v2's NewWithSeed(seed) after Write(text), Sum64().
func HashText(text string, seed uint64) uint64 { return xxh64(text, seed) }

// HashID returns the embedding id of a value in a hash-bucket field:
// 1 + xxhash64(text, FieldSeed(field)) % buckets. Id 0 is reserved for null.
// text is the value's canonical text (see docs/spec.md): the UTF-8 bytes of a
// string, the base-10 form of an integer, "true"/"false" for a bool, Go's
// shortest 'g' form of a float.
func HashID(field, text string, buckets int) int32 {
	return int32(1 + xxh64(text, FieldSeed(field))%uint64(buckets))
}

func u64le[T string | []byte](b T, p int) uint64 {
	return uint64(b[p]) | uint64(b[p+1])<<8 | uint64(b[p+2])<<16 | uint64(b[p+3])<<24 |
		uint64(b[p+4])<<32 | uint64(b[p+5])<<40 | uint64(b[p+6])<<48 | uint64(b[p+7])<<56
}

func u32le[T string | []byte](b T, p int) uint64 {
	return uint64(b[p]) | uint64(b[p+1])<<8 | uint64(b[p+2])<<16 | uint64(b[p+3])<<24
}

func xxround(acc, input uint64) uint64 {
	acc += input * prime2
	acc = bits.RotateLeft64(acc, 31)
	return acc * prime1
}

func xxmerge(acc, val uint64) uint64 {
	acc ^= xxround(0, val)
	return acc*prime1 + prime4
}

// xxh64 is the XXH64 hash of b with a seed, computed in one shot without
// allocating (the streaming Digest of cespare/xxhash gives the same value).
func xxh64[T string | []byte](b T, seed uint64) uint64 {
	n := len(b)
	p := 0
	var h uint64
	if n >= 32 {
		v1 := seed + prime1 + prime2
		v2 := seed + prime2
		v3 := seed
		v4 := seed - prime1
		for ; p+32 <= n; p += 32 {
			v1 = xxround(v1, u64le(b, p))
			v2 = xxround(v2, u64le(b, p+8))
			v3 = xxround(v3, u64le(b, p+16))
			v4 = xxround(v4, u64le(b, p+24))
		}
		h = bits.RotateLeft64(v1, 1) + bits.RotateLeft64(v2, 7) + bits.RotateLeft64(v3, 12) + bits.RotateLeft64(v4, 18)
		h = xxmerge(h, v1)
		h = xxmerge(h, v2)
		h = xxmerge(h, v3)
		h = xxmerge(h, v4)
	} else {
		h = seed + prime5
	}
	h += uint64(n)
	for ; p+8 <= n; p += 8 {
		h ^= xxround(0, u64le(b, p))
		h = bits.RotateLeft64(h, 27)*prime1 + prime4
	}
	if p+4 <= n {
		h ^= u32le(b, p) * prime1
		h = bits.RotateLeft64(h, 23)*prime2 + prime3
		p += 4
	}
	for ; p < n; p++ {
		h ^= uint64(b[p]) * prime5
		h = bits.RotateLeft64(h, 11) * prime1
	}
	h ^= h >> 33
	h *= prime2
	h ^= h >> 29
	h *= prime3
	h ^= h >> 32
	return h
}

const digitPairs = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"

// formatDec writes the base-10 text of u (with a leading '-' when neg) at
// the end of buf and returns its start.
func formatDec(buf *[24]byte, u uint64, neg bool) int {
	i := len(buf)
	for u >= 100 {
		q := u / 100
		r := (u - q*100) * 2
		i -= 2
		buf[i], buf[i+1] = digitPairs[r], digitPairs[r+1]
		u = q
	}
	if u >= 10 {
		i -= 2
		buf[i], buf[i+1] = digitPairs[u*2], digitPairs[u*2+1]
	} else {
		i--
		buf[i] = byte('0' + u)
	}
	if neg {
		i--
		buf[i] = '-'
	}
	return i
}

// hashSmall hashes the base-10 text of v < 1e8 without writing it to
// memory: the digits are computed in parallel in the bytes of one word
// (first character in the low byte) and fed to XXH64's tail steps. The
// digit count and the last byte steps are conditional moves, not
// branches: ids of 4 and 5 digits alternate at random in a column, which
// a branch predictor cannot follow.
func hashSmall(v uint64, seed uint64) uint64 {
	n := uint64(1)
	if v >= 10 {
		n++
	}
	if v >= 100 {
		n++
	}
	if v >= 1000 {
		n++
	}
	if v >= 10000 {
		n++
	}
	if v >= 100000 {
		n++
	}
	if v >= 1000000 {
		n++
	}
	if v >= 10000000 {
		n++
	}
	hi4 := v / 10000
	x := hi4 | (v-hi4*10000)<<32 // two lanes of 4 digits
	hi2 := (x * 5243 >> 19) & 0x0000007F0000007F
	x = hi2 | (x-hi2*100)<<16 // four lanes of 2 digits
	hi1 := (x * 103 >> 10) & 0x000F000F000F000F
	x = hi1 | (x-hi1*10)<<8 // eight digits
	x += 0x3030303030303030
	x >>= 8 * (8 - n) // drop the leading zeros
	h := seed + prime5 + n
	if n == 8 {
		h ^= xxround(0, x)
		h = bits.RotateLeft64(h, 27)*prime1 + prime4
	} else {
		if n >= 4 {
			h ^= (x & 0xffffffff) * prime1
			h = bits.RotateLeft64(h, 23)*prime2 + prime3
			x >>= 32
			n -= 4
		}
		// Up to 3 single bytes remain.
		for i := range uint64(3) {
			next := bits.RotateLeft64(h^(x&0xff)*prime5, 11) * prime1
			if i < n {
				h = next
			}
			x >>= 8
		}
	}
	h ^= h >> 33
	h *= prime2
	h ^= h >> 29
	h *= prime3
	h ^= h >> 32
	return h
}

// hashInt hashes the base-10 text of v.
func hashInt(v int64, seed uint64) uint64 {
	if uint64(v) < 1e8 {
		return hashSmall(uint64(v), seed)
	}
	var buf [24]byte
	u := uint64(v)
	if v < 0 {
		u = -u
	}
	i := formatDec(&buf, u, v < 0)
	return xxh64(buf[i:], seed)
}

// hashUint hashes the base-10 text of v.
func hashUint(v uint64, seed uint64) uint64 {
	if v < 1e8 {
		return hashSmall(v, seed)
	}
	var buf [24]byte
	i := formatDec(&buf, v, false)
	return xxh64(buf[i:], seed)
}

// hashFloat hashes Go's shortest 'g' text of v (bitSize 32 or 64). Integral
// floats below 1e21 format as integers ("3", not "3.0"), so a float column
// holding whole numbers hashes like an integer column.
func hashFloat(v float64, bitSize int, seed uint64) uint64 {
	var buf [32]byte
	if v == 0 {
		v = 0 // -0 -> "0"
	}
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return xxh64(strconv.AppendFloat(buf[:0], v, 'g', -1, 64), seed)
	}
	return xxh64(strconv.AppendFloat(buf[:0], v, 'g', -1, bitSize), seed)
}

// hashBool hashes "true" or "false".
func hashBool(v bool, seed uint64) uint64 {
	if v {
		return xxh64("true", seed)
	}
	return xxh64("false", seed)
}
