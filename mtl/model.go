package mtl

import (
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/kernels"
)

// Model is what a Trainer trains: a network with one output (a logit) per
// task, dense parameters and embedding tables, whose forward and backward
// passes run in replicas, one per data-parallel worker. R is the model's
// replica type, which NewTrainer infers from the model: *mmoe.Model is a
// Model[*mmoe.Replica].
type Model[R Replica] interface {
	Network
	// NewReplica returns a replica for batches of up to maxRows rows.
	NewReplica(maxRows int) R
}

// Network is the part of a Model the trainer reads once, when it is built:
// the parameters, and what the multi-task machinery (loss weightings, soft
// sharing, freezing) needs to know of the structure. Parameters are
// identified by their index in DenseParams.
type Network interface {
	// Heads names the outputs, one per task, in the order of the logits.
	Heads() []string
	// Arch names the architecture (for messages).
	Arch() string
	// DenseParams returns the names and values of the dense parameters.
	// The values alias the model: the optimizer writes into them.
	DenseParams() (names []string, values [][]float32)
	// EmbeddingTables returns the names, values (rows x dim, row-major,
	// aliasing the model) and row widths of the embedding tables.
	EmbeddingTables() (names []string, values [][]float32, dims []int)
	// TaskOf returns the task (head index) dense parameter i belongs to,
	// or -1 if it is shared by all tasks.
	TaskOf(i int) int
	// LastSharedLayer returns the dense parameters of the last layer all
	// tasks share (GradNorm's W); empty if the tasks share none.
	LastSharedLayer() []int
	// SoftSharing reports whether the tasks have networks of their own,
	// tied by the soft-sharing penalty over MatchingLayers.
	SoftSharing() bool
	// MatchingLayers returns groups of dense parameters that correspond
	// across tasks, one entry per task in head order, equal sizes.
	MatchingLayers() [][]int
}

// Replica is one worker's forward and backward state. The trainer calls
// its methods a few times per step (once per pass, and SparseGrad once per
// table), never per row. A Replica is used by one goroutine at a time.
type Replica interface {
	// Forward runs the model on b and returns the logits, one slice of
	// b.Rows values per head, valid until the next Forward.
	Forward(b *features.Batch) ([][]float32, error)
	// Backward computes, for the batch of the last Forward, the gradient
	// of Σ_t Σ_r dLogits[t][r]·logit[t][r] with respect to every parameter,
	// overwriting the replica's gradients.
	Backward(b *features.Batch, dLogits [][]float32) error
	// DenseGrads returns the dense gradients, aligned with
	// Network.DenseParams. The slices stay the same for the replica's
	// life; Backward overwrites their values.
	DenseGrads() [][]float32
	// SparseGrad returns the gradient of embedding table f from the last
	// Backward: the distinct rows it touched and their gradients,
	// len(rows) x dim row-major.
	SparseGrad(f int) (rows []int32, grad []float32)
}

// PrecisionReplica is a Replica that can run its products in bf16: the
// trainer calls SetPrecision on every replica when train.precision is
// bf16 and the CPU has it (a model whose replicas lack the method is then
// refused). *mmoe.Replica is one.
type PrecisionReplica interface {
	SetPrecision(kernels.Precision)
}
