package features

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Evict is the eviction policy of an exact table.
type Evict string

// Eviction policies.
const (
	// EvictNone: a full table admits no more ids (unless a TTL frees rows).
	EvictNone Evict = ""
	// EvictLRU frees the least recently used rows when the table is full.
	EvictLRU Evict = "lru"
	// EvictLFU gives a full table's least frequently used row to an id
	// used clearly more often (TinyLFU's admission with a margin; see
	// lfuState and lfuWins).
	EvictLFU Evict = "lfu"
)

// Defaults and limits of Exact.
const (
	// DefaultMaxIDBytes is the default Exact.MaxIDBytes.
	DefaultMaxIDBytes = 1024
	// maxAdmitAfter bounds Exact.AdmitAfter.
	maxAdmitAfter = 1 << 20
)

// Exact configures the exact table of a categorical or multi-categorical
// field (spec key `exact:`): every id gets a row of its own, found through
// an id → row map that training grows (admission) and shrinks (eviction).
// docs/spec.md describes the policy; IDTable implements it.
//
// The field's embedding table has 1 + Shared + Capacity rows: row 0 is
// null, rows 1..Shared are the shared rows, and rows Shared+1 ..
// Shared+Capacity are the ids' own rows. An id without a row of its own
// (not admitted yet, refused by a full table, or unknown at serving time)
// uses shared row 1 + key mod Shared, where key is the id's 64-bit map key.
type Exact struct {
	// Capacity is the maximum number of ids with a row of their own.
	// Required, >= 1.
	Capacity int `json:"capacity"`
	// AdmitAfter is how many times an id must be seen in training before
	// it gets a row of its own: the AdmitAfter-th occurrence is the first
	// trained on the own row. Default: 1 (at first sight).
	AdmitAfter int `json:"admit_after"`
	// TTL frees the row of an id not seen in the last TTL training
	// examples (and forgets a waiting id not seen for as long). Default:
	// 0 (never).
	TTL int64 `json:"ttl,omitempty"`
	// Evict is what a full table does when an id is due for admission:
	// EvictNone (default: the admission is refused and counted), EvictLRU
	// (the least recently used rows are freed to make room) or EvictLFU
	// (the id takes the row of a least frequently used id if it is used
	// clearly more often, else the admission is refused and counted).
	Evict Evict `json:"evict,omitempty"`
	// Shared is the number of shared rows, hash buckets for the ids
	// without a row of their own; 1 makes it a single default row, which
	// trained best where the ids beyond the capacity are a Zipf tail:
	// capacity/100 rows mix hundreds of rare ids each, too many for any
	// id's signal and too few uses each for a precise average
	// (docs/spec.md, "Against hashing at equal memory"). Default:
	// Capacity/100, at least 1 (kept, so that specs without the key keep
	// their rows).
	Shared int `json:"shared"`
	// Waiting is how many ids waiting for admission (seen fewer than
	// AdmitAfter times) are counted at most; when full, the least
	// recently seen half is forgotten. Default: Capacity (unused when
	// AdmitAfter is 1).
	Waiting int `json:"waiting"`
	// MaxIDBytes caps the bytes of an id's text that make its map key:
	// longer ids are cut there (and counted). Default: DefaultMaxIDBytes.
	MaxIDBytes int `json:"max_id_bytes"`
}

// WithDefaults returns e with every zero field that has a default set.
func (e Exact) WithDefaults() Exact {
	if e.AdmitAfter == 0 {
		e.AdmitAfter = 1
	}
	if e.Shared == 0 {
		e.Shared = max(1, e.Capacity/100)
	}
	if e.Waiting == 0 {
		e.Waiting = e.Capacity
	}
	if e.MaxIDBytes == 0 {
		e.MaxIDBytes = DefaultMaxIDBytes
	}
	return e
}

// Validate checks the configuration after defaults are applied.
func (e Exact) Validate() error {
	e = e.WithDefaults()
	switch {
	case e.Capacity < 1 || e.Shared < 1 || int64(e.Capacity)+int64(e.Shared) > maxBuckets:
		return fmt.Errorf("exact: capacity %d and shared %d must be >= 1 with capacity + shared <= %d", e.Capacity, e.Shared, maxBuckets)
	case e.AdmitAfter < 1 || e.AdmitAfter > maxAdmitAfter:
		return fmt.Errorf("exact: admit_after %d must be in [1, %d]", e.AdmitAfter, maxAdmitAfter)
	case e.TTL < 0:
		return fmt.Errorf("exact: ttl %d must be >= 0 (0 = never)", e.TTL)
	case e.Waiting < 1 || e.Waiting > maxBuckets:
		return fmt.Errorf("exact: waiting %d must be in [1, %d]", e.Waiting, maxBuckets)
	case e.MaxIDBytes < 8:
		return fmt.Errorf("exact: max_id_bytes %d must be >= 8", e.MaxIDBytes)
	}
	switch e.Evict {
	case EvictNone, EvictLRU, EvictLFU:
	default:
		return fmt.Errorf("exact: unknown evict %q (want lru or lfu)", e.Evict)
	}
	return nil
}

// Rows is the number of rows of the field's embedding table:
// 1 + Shared + Capacity.
func (e Exact) Rows() int {
	e = e.WithDefaults()
	return 1 + e.Shared + e.Capacity
}

// MapBytes bounds the memory of the field's IDTable besides its rows:
// the map (64-byte lines of 5 slots, a line per 2 rows), the count and
// the last-use clock of each row (4 and 8 bytes), the waiting set (24
// bytes a slot, 4/3 slots per waiting id; none when AdmitAfter is 1) and
// the free list (at most 4 bytes a row), and with EvictLFU the key of
// each row's id (8 bytes) and the frequency sketch (4 bytes per power of
// two at least Capacity). About 48 bytes per row with AdmitAfter 1, 80
// with the default Waiting, 12 to 16 more with EvictLFU.
func (e Exact) MapBytes() int64 {
	e = e.WithDefaults()
	c := int64(e.Capacity)
	b := 64*int64(mapLinesFor(e.Capacity)) + 4*c + 8*c + 4*c
	if e.AdmitAfter > 1 {
		b += 24 * int64(slotsFor(e.Waiting))
	}
	if e.Evict == EvictLFU {
		b += 8*c + lfuDepth*int64(lfuWidth(e.Capacity))
	}
	return b
}

// modes counts the id modes a categorical field sets (buckets, vocab,
// exact): a valid field sets exactly one.
func modes(f *Field) int {
	n := 0
	if f.Buckets > 0 {
		n++
	}
	if f.Vocab != nil {
		n++
	}
	if f.Exact != nil {
		n++
	}
	return n
}

func parseExact(v *yaml.Node, where string) (*Exact, error) {
	if v.Kind != yaml.MappingNode {
		return nil, errorf(ErrSpec, "features: spec line %d: %s: exact: want a mapping ({capacity: N, admit_after: N, ttl: N, evict: lru}), found %s", v.Line, where, nodeKind(v))
	}
	e := &Exact{}
	seen := false
	err := eachPair(v, where+": exact", func(key string, k, val *yaml.Node) error {
		w := where + ": exact: " + key
		bad := func(format string, args ...any) error {
			return errorf(ErrSpec, "features: spec line %d: %s: exact: %s", val.Line, where, fmt.Sprintf(format, args...))
		}
		var x int64
		var err error
		switch key {
		case "capacity", "admit_after", "shared", "waiting", "max_id_bytes":
			if x, err = scalarInt(val, w); err != nil {
				return err
			}
			if x < 1 || x > maxBuckets {
				return bad("%s must be in [1, %d], found %d", key, maxBuckets, x)
			}
		}
		switch key {
		case "capacity":
			e.Capacity, seen = int(x), true
		case "admit_after":
			e.AdmitAfter = int(x)
		case "shared":
			e.Shared = int(x)
		case "waiting":
			e.Waiting = int(x)
		case "max_id_bytes":
			e.MaxIDBytes = int(x)
		case "ttl":
			if e.TTL, err = scalarInt(val, w); err != nil {
				return err
			}
			if e.TTL < 0 {
				return bad("ttl must be >= 0 training examples, found %d", e.TTL)
			}
		case "evict":
			s, err := scalarString(val, w)
			if err != nil {
				return err
			}
			e.Evict = Evict(s)
			if e.Evict != EvictLRU && e.Evict != EvictLFU {
				return bad("unknown evict %q (want lru or lfu)", s)
			}
		default:
			return errorf(ErrSpec, "features: spec line %d: %s: exact: unknown key %q (want capacity, admit_after, ttl, evict, shared, waiting, max_id_bytes)", k.Line, where, key)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !seen {
		return nil, errorf(ErrSpec, "features: spec line %d: %s: exact: missing capacity", v.Line, where)
	}
	if err := e.Validate(); err != nil {
		return nil, errorf(ErrSpec, "features: spec line %d: %s: %v", v.Line, where, err)
	}
	return e, nil
}
