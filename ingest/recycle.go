package ingest

import (
	"math/bits"
	"sync"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// recycler is the memory.Allocator of a ParquetSource's column buffers
// with ParquetConfig.ReuseBuffers: a buffer freed (its batch released)
// goes to a free list of its power-of-two size class and serves a later
// batch, so a steady stream of batches allocates nothing and keeps
// touching the same, cache- and TLB-warm memory instead of fresh pages
// the garbage collector must then reclaim.
//
// Buffers come from mem, uninitialised when reused: every user (acc's
// growBufs) writes each byte it hands over. After close, freed buffers go
// back to mem. Safe for concurrent use (columns are decoded on several
// goroutines, and batches released on others).
type recycler struct {
	mem    memory.Allocator
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

var _ memory.Allocator = (*recycler)(nil)

func newRecycler(mem memory.Allocator) *recycler { return &recycler{mem: mem} }

// class returns the size class holding size bytes.
func class(size int) int {
	if size <= 1<<minClass {
		return minClass
	}
	return bits.Len(uint(size - 1))
}

// Allocate returns a buffer of size bytes whose capacity is its class's
// size.
func (r *recycler) Allocate(size int) []byte {
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
		return b[:size]
	}
	r.mu.Unlock()
	b := r.mem.Allocate(1 << c)
	return b[: size : 1<<c]
}

// Reallocate grows b to size bytes, keeping its contents.
func (r *recycler) Reallocate(size int, b []byte) []byte {
	if cap(b) >= size {
		return b[:size]
	}
	nb := r.Allocate(size)
	copy(nb, b)
	r.Free(b)
	return nb
}

// Free keeps b for reuse (or hands it back to mem).
func (r *recycler) Free(b []byte) {
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

// close hands the free buffers back to mem; buffers freed later go there
// directly.
func (r *recycler) close() {
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
