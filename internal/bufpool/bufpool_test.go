package bufpool

import (
	"sync"
	"testing"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// TestPool: a freed buffer serves the next allocation of its size class
// (zeroed or not, as asked), Reallocate keeps the contents, buffers above
// the largest class pass through, and after Close every buffer, freed
// before or after, is back in the wrapped allocator.
func TestPool(t *testing.T) {
	for _, zero := range []bool{false, true} {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		p := New(mem, zero)
		a := p.Allocate(100)
		if len(a) != 100 || cap(a) != 128 {
			t.Fatalf("Allocate(100): len %d cap %d, want 100 and 128", len(a), cap(a))
		}
		if uintptr(unsafe.Pointer(&a[0]))%64 != 0 {
			t.Error("buffer not 64-byte aligned")
		}
		for i := range a {
			a[i] = 7
		}
		p.Free(a)
		b := p.Allocate(120)
		if &b[0] != &a[0] {
			t.Error("a freed buffer did not serve the next allocation of its class")
		}
		if got := b[99]; zero && got != 0 || !zero && got != 7 {
			t.Errorf("zero=%v: reused byte %d", zero, got)
		}
		b[0] = 42
		c := p.Reallocate(1000, b)
		if len(c) != 1000 || c[0] != 42 {
			t.Errorf("Reallocate: len %d, first byte %d", len(c), c[0])
		}
		if d := p.Allocate(100); &d[0] != &b[0] { // b went back on Reallocate
			t.Error("Reallocate did not free the old buffer")
		} else {
			p.Free(d)
		}
		big := p.Allocate(1<<maxClass + 1)
		p.Free(big)
		p.Close()
		p.Free(c) // after Close: straight back
		mem.AssertSize(t, 0)
	}
}

// TestPoolConcurrent: allocations and frees from several goroutines (run
// with -race) leave nothing behind.
func TestPoolConcurrent(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	p := New(mem, true)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				b := p.Allocate(64 + (i*37+g)%5000)
				b[0] = byte(i)
				p.Free(b)
			}
		}()
	}
	wg.Wait()
	p.Close()
	mem.AssertSize(t, 0)
}
