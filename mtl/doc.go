// Package mtl holds the multi-task learning machinery of onestone: task
// definitions and their losses (binary logloss, regression squared error and
// ESMM's CTCVR = CTR x CVR over the entire impression space), loss weighting
// (fixed, uncertainty, GradNorm, PCGrad, MetaBalance), the soft-sharing
// penalty, the optimizers (dense Adam, sparse row-wise Adagrad and lazy
// Adam for embedding tables, gradient clipping, learning-rate schedules) and
// the evaluation metrics (AUC, GAUC, logloss, calibration, RMSE).
//
// Loss weightings are chosen by name (train.weighting) from
// KnownWeightings. Each lives in a file of its own (weighting_*.go) that
// holds its method, the Balancer that runs it in a training step and its
// entry; weighting.go holds the registry and the hooks a step offers,
// which let a weighting work on per-task gradients, not only on losses.
//
// The package works on plain slices so that it does not depend on the model:
// a model produces one logit per head per row ([][]float32, heads x rows) and
// takes the gradients of the loss with respect to those logits back.
// Parameters are []float32 slices; embedding gradients are sparse, one
// (rows []int32, grad []float32) pair per table. The Trainer trains any
// Model (model.go): a network that lists its heads and parameters, tells
// which parameters are shared, and runs forward and backward passes in one
// Replica per worker. *mmoe.Model is one; this package imports no model
// package (a test checks it).
//
// Floating point: parameters, logits and gradients are float32; every sum
// over rows (losses, metrics, norms) is accumulated in float64.
package mtl

import "errors"

// Sentinel errors that callers branch on. Errors returned by this package
// wrap one of these with %w and name the task, row, tensor or field involved.
var (
	// ErrConfig marks an invalid configuration (unknown kind, duplicate
	// names, missing parent, bad hyper-parameter, too few tasks ...).
	ErrConfig = errors.New("mtl: invalid configuration")
	// ErrShape marks slices whose lengths do not match the configuration.
	ErrShape = errors.New("mtl: shape mismatch")
	// ErrLabel marks a label outside the range its task accepts.
	ErrLabel = errors.New("mtl: invalid label")
	// ErrNonFinite marks a NaN or infinite loss, gradient or prediction.
	ErrNonFinite = errors.New("mtl: non-finite value")
	// ErrState marks optimizer or weighting state that does not fit the
	// object it is restored into (checkpoint of another model).
	ErrState = errors.New("mtl: state mismatch")
)
