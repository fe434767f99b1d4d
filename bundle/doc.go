// Package bundle is the contract between training and serving: the on-disk
// format of model bundles and training checkpoints, and the places their
// versions live. docs/formats.md describes the format byte by byte; this
// package is the one that writes and reads it.
//
// A bundle is a directory <root>/<version>/ holding bundle.json (the
// Manifest: feature spec, fitted statistics, model configuration, tasks,
// objectives, metrics, data position, and a few sample events with the
// scores the model gave them) and weights.safetensors (the model's
// tensors, mmoe.Model.SaveSafetensors). Versions are named "v" and eight
// digits, counting up from v00000001; a version is complete once it holds
// bundle.json. <root>/latest is a symlink naming the version a trainer
// published last.
//
// A checkpoint is a bundle with the training state beside it:
// trainer.json (Checkpoint: optimizer scalars, loss weighting, step,
// epoch, data position) and optimizer.bin (the optimizer tensors). The
// checkpoints of an output root live in <root>/checkpoints/, numbered as
// bundles are.
//
// A Store is where the versions of one root live: Dir, a local
// directory, or Bucket, a prefix of an S3-compatible object store
// (OpenStore takes a path or a URL). A Bucket publishes without a rename:
// a claim, the files, the manifest last, then the latest pointer by
// compare-and-swap; Fetch copies a version into a local Dir, checking
// every checksum, for the readers that work on directories. Write and
// WriteCheckpoint publish a version whole or not at all (in a Dir: files
// in a temporary directory, each fsynced, then renamed into place and the
// root fsynced); Newest, Prune and Resolve find and retire versions. ReadManifest and ReadCheckpoint read one
// back. Building a scorer from a bundle, and checking that it reproduces
// its sample's scores, is serving's (serving.LoadBundle).
package bundle
