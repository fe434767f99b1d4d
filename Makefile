# onestone — see README.md. `make test` is what CI runs.
GO      ?= go
BIN     := bin/onestone
PKGS    := ./...
# Packages cheap enough to run under the race detector within the CI budget.
RACE_PKGS ?= ./ingest/... ./features/... ./serving/... ./pipelines/...

.PHONY: all build test vet fmtcheck demo bench lint loadtest clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/onestone

vet:
	$(GO) vet $(PKGS)

fmtcheck:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

test: vet fmtcheck
	$(GO) test -count=1 -timeout 8m $(PKGS)
	$(GO) test -count=1 -timeout 5m -tags noasm ./internal/...
	$(GO) test -count=1 -timeout 8m -race $(RACE_PKGS)

demo: build
	./scripts/demo.sh

bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count 1 -timeout 30m $(PKGS)
	./$(BIN) bench

lint:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest $(PKGS)

# HTTP load on loopback (installs hey from Debian's packages if missing).
loadtest: build
	./scripts/loadtest.sh

clean:
	rm -rf bin data/demo models/demo
