// Package serving loads model bundles and scores candidates with them,
// online over HTTP and offline over records.
//
// A bundle is a directory <root>/<version>/ holding bundle.json (the
// manifest: feature spec, fitted stats, model config, tasks, objectives,
// metrics, data position, and a few sample events with the scores the model
// gave them) and weights.safetensors; package bundle owns that format
// (docs/formats.md) and publishes versions. LoadBundle reads one back and
// validates it completely, down to re-scoring the sample events bit for
// bit through the serving path; FillSampleScores records those scores
// before a trainer publishes.
//
// A Scorer turns a request — one context and many candidates, as raw JSON
// objects keyed by the spec's columns — into one score per objective per
// candidate: the JSON is decoded straight into the model's input
// (features.JSONRows, the rules of features.Transformer as in training,
// without Arrow arrays; a candidate's values override the context's),
// run through the model in passes of ScorerConfig.BatchRows
// rows, mapped to objectives by the tasks (ctr, cvr, ctcvr = ctr x cvr),
// then ranked by a formula fixed at start-up and cut at top_k. With
// ScorerConfig.Workers > 1 the decoding and the passes of one request are
// shared by several goroutines, which Helpers can keep ready between
// requests (docs/serving.md).
// ScoreRecordTo runs the same code on records read from files, so offline
// and online scores of an event agree to the last bit.
//
// Server is the HTTP service around a Scorer:
//
//	POST /v1/score          {"context": {...}, "candidates": [{...}, ...], "objectives": ["ctr"], "top_k": 50}
//	                        -> {"model_version": "v00000003", "results": [{"index": 4, "scores": {"ctr": 0.031}, "rank_score": 0.031}, ...]}
//	GET  /v1/model          version, tasks, objectives, rank formula, spec, metrics
//	GET  /healthz           200 while the process runs
//	GET  /readyz            200 once a model is loaded, else 503
//	GET  /metrics           Prometheus text format
//	POST /v1/admin/reload   with "Authorization: Bearer <token>", only when a token is configured
//
// Bad requests get 400 (413 for a body over the size limit, 408 for one
// that did not arrive in time) with {"error": "...", "field":
// "candidates[3].price"} naming the offending field. A body is read
// before its request takes an in-flight slot; overload gets 429 (queue
// full) or 503 (waited too long) with Retry-After. The server polls its bundle root and swaps newer bundles in
// atomically after validating them off the request path; a refused bundle
// is logged, counted and remembered, and the previous model keeps serving.
package serving
