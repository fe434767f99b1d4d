# onestone — see README.md. `make test` is what CI runs.
GO      ?= go
BIN     := bin/onestone
PKGS    := ./...
# NOASM_PKGS are the packages the noasm tag changes: those under internal/
# that import the kernels (the only code built differently without
# assembly). Other packages would only repeat the first test line.
NOASM_PKGS = $(shell $(GO) list -f '{{.ImportPath}}{{range .Deps}} {{.}}{{end}}' ./internal/... | awk '{for (i = 1; i <= NF; i++) if ($$i ~ /\/internal\/kernels$$/) { print $$1; break }}')
# Packages cheap enough to run under the race detector within the CI budget.
RACE_PKGS ?= ./ingest/... ./features/... ./bundle/... ./internal/fileutil/... ./serving/... ./pipelines/...

.PHONY: all build test test-go vet fmtcheck demo bench lint loadtest chaos stream-demo join-freshness delta-bytes std-freshness stream-scaling delayed-feedback replicas-demo kcat-interop bench-vs-pytorch report-check clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/onestone

vet:
	$(GO) vet $(PKGS)

fmtcheck:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

# The object store test servers (S3, GCS, Azure) start once for all the
# test runs below (scripts/with-stores.sh), not once per test process.
test: vet fmtcheck
	./scripts/with-stores.sh $(MAKE) --no-print-directory test-go

# The tests alone; without scripts/with-stores.sh around it, each test
# process starts the store servers it needs.
test-go:
	$(GO) test -count=1 -timeout 8m $(PKGS)
	$(GO) test -count=1 -timeout 5m -tags noasm $(NOASM_PKGS)
	$(GO) test -count=1 -timeout 5m -tags noasm -run TestPortableBundle ./serving/
	$(GO) test -count=1 -timeout 8m -race $(RACE_PKGS)

demo: build
	./scripts/demo.sh

bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count 1 -timeout 30m $(PKGS)
	./$(BIN) bench
	[ -f data/census/train.parquet ] || $(GO) run ./examples/census/prepare -out data/census
	cp examples/census/spec.yaml data/census/spec.yaml
	./$(BIN) compare --quiet --spec data/census/spec.yaml --seeds 3 \
		--data data/census/train.parquet --valid data/census/test.parquet

# staticcheck at the version go.mod's tool directive pins.
lint:
	$(GO) tool staticcheck $(PKGS)

# HTTP load on loopback (installs hey from Debian's packages if missing).
loadtest: build
	./scripts/loadtest.sh

# Fault injection with the real binaries on loopback (docs/operations.md):
# scripts/chaos.sh runs every scripts/chaos-*.sh part (poison events and
# SIGKILLs of the stream, bundle faults under load) and merges their
# results into one JSON summary; it fails when a fault does.
chaos: build
	BIN=$(BIN) ./scripts/chaos.sh

# The streaming loop on one machine: broker + serve + stream + produce.
stream-demo: build
	./scripts/stream-demo.sh

# Freshness with the join at the real pace (docs/streaming.md): clicks
# replayed in real time, event -> served p50 and max (about 4 minutes).
join-freshness: build
	./scripts/join-freshness.sh

# Bytes a stream publishes with deltas against full bundles, on the stream
# demo's workload (about 2 minutes).
delta-bytes: build
	./scripts/delta-bytes.sh

# Freshness (event -> served by 3 replicas, p50 and max), where the time
# goes, and bytes per hour at std size: std events, a stream publishing
# deltas to the S3 test server, 3 serve replicas (about 5 minutes).
std-freshness: build
	./scripts/std-freshness.sh

# Data-parallel stream consumption: 1 trainer on 2 cores against 2
# trainers on 1 core each, one group, std events (docs/scale-out.md;
# about 4 minutes).
stream-scaling: build
	./scripts/stream-scaling.sh

# The delayed-feedback table of docs/streaming.md: oracle, naive, resend
# and FNW on the generated streams, 5 seeds (about 10 minutes on 2 cores).
delayed-feedback:
	$(GO) run ./examples/delayedfeedback -impressions 400000 -seeds 5

# One stream trainer, serving replicas following one object store, and the
# store frozen for 30 s (installs the S3 test server if missing).
replicas-demo: build
	./scripts/replicas-demo.sh

# kcat (librdkafka) producing snappy/lz4/zstd events that onestone consumes.
kcat-interop: build
	./scripts/kcat-interop.sh

# onestone beside PyTorch 1.13 (Debian's python3-torch) on the std workload.
bench-vs-pytorch: build
	./scripts/bench-vs-pytorch.sh

# A small training run with --report, its page rendered in headless Chromium
# (installs Debian's chromium if missing).
report-check:
	./scripts/report-check.sh

clean:
	rm -rf bin data/demo models/demo
