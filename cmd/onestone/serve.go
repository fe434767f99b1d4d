package main

import (
	"context"
	"flag"
	"io"
	"os"
	"runtime"

	"github.com/onestone/onestone/serving"
)

func init() {
	register(command{
		name:    "serve",
		summary: "serve the newest model bundle over HTTP, reloading newer ones",
		usage: `onestone serve --models DIR|URL [flags]

Serves POST /v1/score, GET /v1/model, /healthz, /readyz, /metrics on --addr.
DIR is a bundle root (its newest valid version is served, and newer ones
are loaded, validated and swapped in as they appear; a refused version is
tried again when its files change) or one bundle. See docs/operations.md.

URL is an object store prefix a trainer publishes to,
s3://BUCKET/PREFIX?endpoint=...&region=..., gs://BUCKET/PREFIX or
azblob://CONTAINER/PREFIX (docs/object-storage.md): its latest
pointer is polled, each version it names is copied into --cache with its
checksums checked, then loaded; while the store fails the model served
keeps serving. Credentials come from the provider's environment or
standard chain, never the URL. See
docs/scale-out.md.

The rank formula is a product of objectives, candidate fields and numbers,
each optionally raised to a power: 'ctr^1 * cvr^0.5 * price'. Names that
are not objectives are numeric keys of the candidate (else the context).`,
		flags: serveFlags,
	})
}

func serveFlags(fs *flag.FlagSet) runFunc {
	var (
		cfg        serving.ServerConfig
		cpuProfile string
	)
	fs.StringVar(&cfg.Models, "models", "", "bundle root or bundle `dir`, or an object store URL (required)")
	fs.StringVar(&cfg.Cache, "cache", "", "with an object store: the local `dir` its versions are copied to (default: a temporary one)")
	fs.DurationVar(&cfg.FetchTimeout, "fetch-timeout", serving.DefaultFetchTimeout, "with an object store: the longest look at it (pointer and copy)")
	fs.StringVar(&cfg.Addr, "addr", serving.DefaultAddr, "listen `address` (loopback unless told otherwise)")
	fs.StringVar(&cfg.Scorer.Rank, "rank", "", "ranking `formula`, e.g. 'ctr^1 * cvr^0.5 * price' (default: the first objective)")
	fs.IntVar(&cfg.Scorer.MaxCandidates, "max-candidates", serving.DefaultMaxCandidates, "most candidates per request (more: 400)")
	fs.IntVar(&cfg.Scorer.BatchRows, "batch-rows", serving.DefaultBatchRows(), "candidates per forward pass (the workers share a request's passes)")
	precisionVar(fs, &cfg.Scorer.Precision)
	fs.IntVar(&cfg.Scorer.Workers, "workers", runtime.GOMAXPROCS(0), "goroutines sharing one request's candidates (requests under 2 x 64 candidates use one)")
	listVar(fs, &cfg.Scorer.Required, "require", "feature `columns` every candidate must have (itself or via the context)")
	fs.BoolVar(&cfg.Scorer.Strict, "strict", false, "answer 400 to a context or candidate key the model does not know, naming it (default: skip it and count it in onestone_score_unknown_keys_total)")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body", serving.DefaultMaxBodyBytes, "largest request body in `bytes` (more: 413)")
	fs.DurationVar(&cfg.BodyTimeout, "body-timeout", serving.DefaultBodyTimeout, "longest time a score request's body may take to arrive (then 408); bodies are read before a request takes an in-flight slot")
	fs.IntVar(&cfg.MaxInFlight, "max-inflight", 0, "score requests worked on at once (default 2 x GOMAXPROCS)")
	fs.IntVar(&cfg.MaxQueue, "max-queue", 0, "score requests waiting for a slot before 429 (default 4 x max-inflight)")
	fs.DurationVar(&cfg.QueueWait, "queue-wait", serving.DefaultQueueWait, "longest wait for a slot before 503")
	// The token's default comes from the environment after parsing, so
	// that -h never prints a secret.
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "enables POST /v1/admin/reload with 'Authorization: Bearer `token`' (default $ONESTONE_ADMIN_TOKEN; empty: disabled)")
	fs.DurationVar(&cfg.Poll, "poll", serving.DefaultPoll, "how often to look for a newer bundle, and for changes in refused ones (negative: never)")
	maxModelBytesVar(fs, &cfg.Limits.MaxBytes)
	fs.DurationVar(&cfg.HelperSpin, "spin", serving.DefaultHelperSpin, "with --workers > 1: how long the helper workers poll for the next request before sleeping (keeps their cores awake, at low priority; negative: sleep at once)")
	spare := fs.Bool("spare", true, "keep a second model's memory resident (the model replaced, or memory reserved once the first is served), so that a reload writes into it instead of faulting in new memory while requests are served; false: free a replaced model")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", serving.DefaultShutdownTimeout, "longest wait for in-flight requests on SIGTERM")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to `file` (go tool pprof)")
	var imp serving.ImpressionLogConfig
	fs.StringVar(&imp.Topic, "log-impressions", "", "log served impressions to this Kafka `topic` (off by default; needs --brokers)")
	listVar(fs, &imp.Brokers, "brokers", "Kafka `host:port` addresses for --log-impressions")
	fs.StringVar(&imp.KeyField, "log-impressions-key", "user_id", "the field whose text keys each impression message (as the click and conversion topics are keyed)")
	fs.Var(bytesFlag{&imp.QueueBytes}, "log-impressions-queue", "most bytes of impressions waiting to be written before requests' impressions are dropped (default 64MiB)")
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		if cfg.Models == "" {
			return usagef("--models is required")
		}
		cfg.NoSpare = !*spare
		if cfg.AdminToken == "" {
			cfg.AdminToken = os.Getenv("ONESTONE_ADMIN_TOKEN")
		}
		switch {
		case imp.Topic != "" && len(imp.Brokers) == 0:
			return usagef("--log-impressions needs --brokers")
		case imp.Topic == "" && len(imp.Brokers) > 0:
			return usagef("--brokers is only for --log-impressions")
		case imp.Topic != "":
			cfg.ImpressionLog = &imp
		}
		s, err := serving.NewServer(cfg)
		if err != nil {
			return err
		}
		if cpuProfile != "" {
			stop, err := startCPUProfile(cpuProfile, stderr)
			if err != nil {
				return err
			}
			defer stop()
		}
		return s.Run(ctx)
	}
}
