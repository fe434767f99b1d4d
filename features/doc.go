// Package features holds the feature spec, the statistics fitted on training
// data, and the one transform from raw Arrow records to model batches that
// training and serving share, so that there is no train/serve skew.
//
// A spec (YAML, see docs/spec.md) declares categorical fields (hash buckets
// or a fitted vocabulary), multi-categorical list fields (mean or sum
// pooling), numeric fields (none, log1p, standardize or bucketize, with a
// default and a missing indicator for null, NaN and Inf), vector fields
// (a fixed-length list of numbers, standardised per dimension or
// globally: pretrained embeddings; see vector.go), the label column of
// each task, an optional group key and an optional sample weight.
//
// The flow is:
//
//	spec, _ := features.LoadSpec("spec.yaml")
//	fit, _ := features.NewFitter(spec, features.FitConfig{Seed: 1})
//	for each record: fit.Add(rec)          // one streaming pass
//	stats, _ := fit.Finish()
//	stats.Save(features.StatsPath("spec.yaml"))
//	tr, _ := features.NewTransformer(spec, stats, features.TransformerConfig{Labels: true})
//	var b features.Batch
//	for each record: tr.TransformTo(&b, rec) // no allocation in steady state
//
// Hash ids are reproducible elsewhere: a value's canonical text (the
// string itself, base-10 for integers, "true"/"false", shortest 'g' for
// floats) is hashed with xxhash64 seeded by xxhash64 of the field name, and
// id = 1 + hash % buckets; id 0 is null (and out-of-vocabulary in
// vocabulary mode).
package features
