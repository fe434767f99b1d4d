package mtl

import (
	"fmt"
	"math/rand/v2"
)

// PCGrad is gradient surgery for multi-task learning (Yu et al., NeurIPS
// 2020): each task's gradient on the shared parameters is projected onto
// the normal plane of every other task's gradient it conflicts with
// (negative dot product), in a random task order, and the projected
// gradients are summed. It is applied by the trainer to the per-task
// gradients of the shared parameters. Not safe for concurrent use.
type PCGrad struct {
	rng   *rand.Rand
	order []int
	buf   []float32
	dots  []float64
}

// NewPCGrad returns a PCGrad for `tasks` tasks (at least 2) with shared
// gradients of `size` values; rng chooses the projection order.
func NewPCGrad(tasks, size int, rng *rand.Rand) (*PCGrad, error) {
	if tasks < 2 {
		return nil, fmt.Errorf("mtl: pcgrad needs at least 2 tasks, have %d: %w", tasks, ErrConfig)
	}
	if size <= 0 || rng == nil {
		return nil, fmt.Errorf("mtl: pcgrad: size %d and rng %v: want size > 0 and an rng: %w", size, rng != nil, ErrConfig)
	}
	return &PCGrad{rng: rng, order: make([]int, tasks), buf: make([]float32, size), dots: make([]float64, tasks)}, nil
}

// ProjectTo writes Σ_t g'_t into dst, where g'_t is taskGrads[t] with its
// conflicting components removed. taskGrads are not modified. It returns
// the number of projections made (how often tasks conflicted).
func (p *PCGrad) ProjectTo(dst []float32, taskGrads [][]float32) (int, error) {
	if len(taskGrads) != len(p.order) {
		return 0, fmt.Errorf("mtl: pcgrad: %d task gradients, want %d: %w", len(taskGrads), len(p.order), ErrShape)
	}
	n := len(p.buf)
	if len(dst) != n {
		return 0, fmt.Errorf("mtl: pcgrad: dst has %d values, want %d: %w", len(dst), n, ErrShape)
	}
	for t, g := range taskGrads {
		if len(g) != n {
			return 0, fmt.Errorf("mtl: pcgrad: gradient of task %d has %d values, want %d: %w", t, len(g), n, ErrShape)
		}
		p.dots[t] = dot32(g, g)
	}
	clear(dst)
	projections := 0
	for i, gi := range taskGrads {
		copy(p.buf, gi)
		for k := range p.order {
			p.order[k] = k
		}
		p.rng.Shuffle(len(p.order), func(a, b int) { p.order[a], p.order[b] = p.order[b], p.order[a] })
		for _, j := range p.order {
			if j == i || p.dots[j] == 0 {
				continue
			}
			d := dot32(p.buf, taskGrads[j])
			if d >= 0 {
				continue
			}
			projections++
			f := float32(d / p.dots[j])
			for k, x := range taskGrads[j] {
				p.buf[k] -= f * x
			}
		}
		for k, x := range p.buf {
			dst[k] += x
		}
	}
	return projections, nil
}

func dot32(a, b []float32) float64 {
	var s float64
	b = b[:len(a)]
	for i, x := range a {
		s += float64(x) * float64(b[i])
	}
	return s
}
