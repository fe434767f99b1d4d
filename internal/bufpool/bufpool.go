// Package bufpool provides Pool, an Arrow memory.Allocator that keeps the
// buffers freed to it (when the arrays holding them are released) and
// hands them out again, so that a steady stream of record batches of
// similar sizes allocates nothing.
package bufpool

import (
	"math/bits"
	"sync"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Pool keeps freed buffers in free lists by power-of-two size class and
// serves later allocations from them: the memory stays cache- and
// TLB-warm and the garbage collector has nothing to reclaim. Its users
// must not touch a buffer after releasing the array that holds it (the
// usual Arrow contract, which a garbage-collected allocator forgives).
//
// Buffers come from the wrapped allocator. A reused buffer is zeroed when
// the Pool was made with zero set, as Arrow's allocators zero new memory
// and its builders may rely on it; a Pool whose users write every byte
// they hand over may skip that. After Close, freed buffers go back to the
// wrapped allocator. A Pool is safe for concurrent use.
type Pool struct {
	mem    memory.Allocator
	zero   bool
	mu     sync.Mutex
	free   [maxClass + 1][][]byte
	closed bool
}

// Size classes 2^minClass .. 2^maxClass bytes; larger buffers are not kept.
const (
	minClass = 6
	maxClass = 30
	// maxFreePerClass bounds the free list of a class: enough for the
	// columns of a few batches in flight.
	maxFreePerClass = 256
)

var _ memory.Allocator = (*Pool)(nil)

// New returns a Pool of buffers from mem (memory.DefaultAllocator when
// nil); with zero set, reused buffers are zeroed.
func New(mem memory.Allocator, zero bool) *Pool {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	return &Pool{mem: mem, zero: zero}
}

// class returns the size class holding size bytes.
func class(size int) int {
	if size <= 1<<minClass {
		return minClass
	}
	return bits.Len(uint(size - 1))
}

// Allocate returns a buffer of size bytes whose capacity is its class's
// size.
func (r *Pool) Allocate(size int) []byte {
	c := class(size)
	if c > maxClass {
		return r.mem.Allocate(size)
	}
	r.mu.Lock()
	if l := r.free[c]; len(l) > 0 {
		b := l[len(l)-1]
		l[len(l)-1] = nil
		r.free[c] = l[:len(l)-1]
		r.mu.Unlock()
		if r.zero {
			clear(b[:size])
		}
		return b[:size]
	}
	r.mu.Unlock()
	b := r.mem.Allocate(1 << c)
	return b[: size : 1<<c]
}

// Reallocate grows b to size bytes, keeping its contents.
func (r *Pool) Reallocate(size int, b []byte) []byte {
	if cap(b) >= size {
		return b[:size]
	}
	nb := r.Allocate(size)
	copy(nb, b)
	r.Free(b)
	return nb
}

// Free keeps b for reuse (or hands it back to mem).
func (r *Pool) Free(b []byte) {
	n := cap(b)
	c := class(n)
	if n != 1<<c || c > maxClass {
		r.mem.Free(b) // not one of ours: a size class is a power of two
		return
	}
	r.mu.Lock()
	if r.closed || len(r.free[c]) >= maxFreePerClass {
		r.mu.Unlock()
		r.mem.Free(b[:n])
		return
	}
	r.free[c] = append(r.free[c], b[:n])
	r.mu.Unlock()
}

// Close hands the free buffers back to the wrapped allocator; buffers
// freed later go there directly.
func (r *Pool) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for c := range r.free {
		for _, b := range r.free[c] {
			r.mem.Free(b)
		}
		r.free[c] = nil
	}
}
