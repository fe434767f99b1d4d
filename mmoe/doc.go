// Package mmoe is onestone's network family: per-field embedding tables,
// expert MLPs, softmax gates, task towers and linear heads, with their forward
// and backward passes, the parameter layout and safetensors save/load.
//
// Every architecture is a configuration of one block, the CGC extraction
// level: S shared experts plus K task-specific experts per task, and per task
// a gate softmax(W·in + b) over the shared experts and that task's own
// experts whose output is the gate-weighted sum of the expert outputs:
//
//	mmoe           one level, S shared experts, one gate per task
//	omoe           one level, S shared experts, one gate shared by all tasks
//	shared_bottom  one level, one shared expert (the bottom MLP), no gate
//	single, soft   one level, one task expert per task, no gates
//	cgc            one level, S shared + K task experts, one gate per task
//	ple            Levels stacked CGC levels; every level but the last also
//	               has a shared gate over all its experts that feeds the next
//	               level's shared experts, while task t's gate feeds the next
//	               level's task-t experts and gate
//	aitm           single, with AIT's information transfer (ait.go) between
//	               the towers of adjacent funnel steps
//
// A gate over a single expert has no parameters (its weight is 1). After the
// last level each task has a tower MLP and a linear head with one output, the
// logit. With Config.AIT (any arch; aitm always) the head of a task with a
// parent in Config.Transfer reads an attention over its own tower's output
// and what its parent's head passes on, instead of its tower's output alone.
// The model outputs logits only: link functions, ESMM and losses belong to
// package mtl.
//
// # Input layout
//
// The first-layer input x of every row is the concatenation of the field
// embeddings in Layout.Sparse order (field f at columns [f*Dim, (f+1)*Dim)),
// followed by the dense block (Layout.Dense order), so its width is
// len(Sparse)*EmbeddingDim + len(Dense). Single-id fields look their row up;
// pooled fields take the mean or sum of their ids' rows (the mean of an empty
// list is zero). Because the first layer is linear in x, it splits by Side:
// Split computes the context columns' share once per request and multiplies
// only the candidate columns per candidate.
//
// # Parameters
//
// All dense parameters are float32, Linear weights are [out, in] row-major
// (PyTorch layout) and biases [out]. Names:
//
//	embeddings.<field>.weight                        [Cardinality, Dim]
//	[levels.<i>.]experts.<e>.layers.<l>.weight|bias   shared experts
//	[levels.<i>.]task_experts.<task>.<k>.layers.<l>.weight|bias
//	[levels.<i>.]gates.<task>.weight|bias             a task's gate
//	[levels.<i>.]gates.shared.weight|bias             omoe's gate; ple's shared gate
//	towers.<task>.layers.<l>.weight|bias
//	heads.<task>.weight|bias                          [1, in] and [1]
//	ait.<task>.info|query|key|value.weight, ait.<task>.info.bias   AIT only
//
// where <task> is the head name and the levels.<i>. prefix is used by ple
// only. The first layers of all experts and gates that read the same input
// are stored next to each other, so one matrix product computes them all.
//
// # Training on several cores
//
// Forward and Backward run on the calling goroutine (kernels.Sgemm is
// single-threaded). To use several cores, give each worker a SliceTo view of
// the batch, its own Workspace and Grads, and add the workers' gradients with
// Grads.AddFrom; the result is the gradient of the whole batch. A Replica
// bundles one worker's Workspace and Grads behind the methods a trainer
// calls (package mtl's Trainer uses them through its Model interface).
//
// Concurrency: a Model is safe for concurrent Forward calls with separate
// Workspaces; Backward only reads the Model and writes into its Grads. Nothing
// in this package changes parameters: the optimizer (package mtl) writes into
// the slices returned by Params and Embeddings, and must not do so while a
// Forward or Backward is running.
package mmoe
