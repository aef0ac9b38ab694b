# wasmguard — see README.md. Every target runs from the repository root.
GO        ?= go
WASM      := security.wasm
# The filter's own sources; security.wasm is rebuilt when one changes.
WASM_SRCS := go.mod go.sum main.go $(wildcard filter/*.go config/*.go patterns/*.go ratelimit/*.go)
FUZZTIME  ?= 15s
# Tools are pinned and run with `go run`, never installed globally.
FUNC_E    := $(GO) run github.com/tetratelabs/func-e/cmd/func-e@v1.6.0

.PHONY: all build test test-main test-e2e bench fuzz check run serve e2e soak clean

all: build

## build: compile the filter to ./security.wasm (standard Go, WASI reactor)
build: $(WASM)

$(WASM): $(WASM_SRCS)
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -o $@ .

## test: build security.wasm, then run every test (native, wasm, host, e2e module)
test: build test-main test-e2e

test-main:
	$(GO) test -count=1 ./...

test-e2e:
	cd e2e && $(GO) test -count=1 ./...

## bench: benchmarks with allocation counts
bench: build
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 ./...

## fuzz: a bounded run ($(FUZZTIME)) of every fuzz target
fuzz:
	@set -e; for pkg in ./config ./patterns ./ratelimit; do \
	  for t in $$($(GO) test -list='^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; \
	    $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; \
	done

## check: gofmt, vet (native and wasip1), the wasip1 cross-build, go mod tidy with no diff
check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./config ./patterns ./ratelimit
	GOOS=wasip1 GOARCH=wasm $(GO) build -o /dev/null . ./filter
	cd e2e && $(GO) vet ./...
	$(GO) mod tidy && (cd e2e && $(GO) mod tidy)
	git diff --exit-code -- go.mod go.sum e2e/go.mod e2e/go.sum

## run: build and serve the filter on 127.0.0.1:10000 without Envoy
run: build
	$(GO) run ./cmd/wasmguard serve --wasm $(WASM) --config testdata/config/seed.json

## e2e: the Envoy end-to-end tests; fetches Envoy 1.33 with func-e (needs internet) unless ENVOY_BIN is set or envoy is on PATH
e2e: build
	@if [ -z "$$ENVOY_BIN" ] && ! command -v envoy >/dev/null; then \
	  $(FUNC_E) use 1.33 && export ENVOY_BIN="$$($(FUNC_E) which)"; \
	fi; cd e2e && $(GO) test -count=1 -run TestEnvoy -v .

## soak: a million requests through one host; prints memory at 10k, 100k, 1M
soak: build
	$(GO) run ./cmd/wasmguard soak --wasm $(WASM) --config testdata/config/seed.json --requests 1000000

clean:
	rm -f $(WASM)
	$(GO) clean -testcache
