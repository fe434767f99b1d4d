package mmoe

import (
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/kernels"
)

// Replica is one data-parallel worker's view of a Model: a Workspace and
// Grads for batches of up to a fixed number of rows, behind the methods a
// trainer calls (it satisfies mtl.Replica, so *Model satisfies mtl.Model).
// A Replica is for one goroutine at a time; replicas of one Model may run
// concurrently.
type Replica struct {
	m  *Model
	ws *Workspace
	g  *Grads
}

// NewReplica allocates a replica for batches of up to maxRows rows (at
// least 1).
func (m *Model) NewReplica(maxRows int) *Replica {
	return &Replica{m: m, ws: m.NewWorkspace(maxRows), g: m.NewGrads(maxRows)}
}

// Forward runs Model.Forward on b and returns the logits, one slice of
// b.Rows values per head, valid until the next Forward.
func (r *Replica) Forward(b *features.Batch) ([][]float32, error) {
	if err := r.m.Forward(r.ws, b); err != nil {
		return nil, err
	}
	return r.ws.Logits, nil
}

// Backward runs Model.Backward for the batch of the last Forward,
// overwriting the replica's gradients.
func (r *Replica) Backward(b *features.Batch, dLogits [][]float32) error {
	return r.m.Backward(r.ws, b, dLogits, r.g)
}

// SetPrecision sets the precision of the replica's products
// (Workspace.SetPrecision).
func (r *Replica) SetPrecision(p kernels.Precision) { r.ws.SetPrecision(p) }

// DenseGrads returns the dense gradients, aligned with Model.Params. The
// slices are the same for the replica's life; Backward overwrites them.
func (r *Replica) DenseGrads() [][]float32 { return r.g.Dense }

// SparseGrad returns the gradient of embedding table f from the last
// Backward: the rows it touched and their gradients, len(rows) x Dim.
func (r *Replica) SparseGrad(f int) (rows []int32, grad []float32) {
	sg := &r.g.Sparse[f]
	return sg.Rows, sg.Grad
}
