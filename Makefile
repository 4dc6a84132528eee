# tlszmq. `make demo` runs the main job on the embedded defaults; `make test` runs every test;
# `make lint` checks go.mod and go.sum are tidy and runs staticcheck. They install what they
# need: missing Debian packages through apt-get (`make deps` names them first), and the FIPS
# provider, built from Debian's openssl source into $(FIPS_DIR). No system configuration
# is changed: the source comes through a private apt list in a temporary directory
# (testdata/fips/build.sh), and nothing under /etc is written.

SHELL     := /bin/bash
GO        ?= go
export PATH := $(PATH):/usr/local/go/bin

# Debian packages the build and the tests need.
APT_PKGS  := libzmq3-dev libssl-dev openssl pkg-config gcc g++ cppzmq-dev make dpkg-dev perl valgrind iproute2 tshark \
             softhsm2 libengine-pkcs11-openssl
SUDO      := $(if $(filter 0,$(shell id -u)),,sudo)

# Where testdata/fips/build.sh keeps the FIPS provider it builds.
FIPS_DIR  ?= $(HOME)/.cache/tlszmq-fips
# How long `make fuzz` runs each target, and the bounded run inside `make test`. The latter is
# a count of inputs, not a duration: with a duration, Go 1.26's fuzz coordinator can report its
# own deadline as a failure without any crasher (golang/go#75804, fixed in Go 1.27). The
# minimize time is bounded too: Go's fuzzer otherwise spends up to 60 s shrinking each new
# input, with its exec counter standing still.
FUZZTIME  ?= 5m
FUZZTIME_TEST ?= 100000x
# Package:target pairs.
FUZZ_TARGETS := .:FuzzServerEngine .:FuzzClientEngine .:FuzzDeframer .:FuzzSplitEnvelope .:FuzzEnvelopeBudget \
                ./internal/cli:FuzzTLSFlags
BENCHTIME ?= 1s

FIPS_ENV  := TLSZMQ_FIPS_DIR=$(FIPS_DIR) TLSZMQ_REQUIRE_FIPS=1

# staticcheck for `make lint`, pinned: v0.8.2 is staticcheck 2026.2.2, the newest release the
# Go proxy serves, and a release line that needs and knows Go 1.26 (its go.mod says go 1.26.0).
# `go run` fetches it through the module proxy once, then builds it from the module cache; the
# module's own go.mod and go.sum are left alone.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

.PHONY: all deps build demo test test-unit test-race test-asan test-checkptr fuzz fuzz-short \
        fips vet lint bench bench-compare leakcheck soak certs clean interop cpp-peer

all: build

deps:
	@missing=$$(for p in $(APT_PKGS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "deps: installing" $$missing; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@command -v $(GO) >/dev/null || { echo "deps: Go 1.24 or newer is needed, 1.26 for make lint (go.dev/dl)" >&2; exit 1; }

build: deps
	$(GO) build ./...
	$(GO) build -o bin/ ./cmd/...

demo: build
	bin/tlszmq demo

fips: deps
	testdata/fips/build.sh $(FIPS_DIR)

vet:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt: $$unformatted" >&2; exit 1; fi
	$(GO) vet ./...

# go.mod and go.sum as `go mod tidy` would write them (-diff changes no file and prints what
# tidy would change), and staticcheck over every package, tests included. CI runs it before
# `make test` (.ci/run).
lint: deps
	$(GO) mod tidy -diff
	$(STATICCHECK) ./...

test: deps fips vet test-unit test-race test-asan test-checkptr leakcheck fuzz-short

test-unit:
	$(FIPS_ENV) $(GO) test -count=1 ./...

test-race:
	$(FIPS_ENV) $(GO) test -count=1 -race ./...

# AddressSanitizer over the cgo layer (the engine's tests; -short keeps the leak cycles small).
# AddressSanitizer and checkptr watch the C shim and the cgo crossings: the engine's tests
# (engine_*_test.go, named by layer) drive every path into C; the ZeroMQ layer's tests add
# sockets and goroutines, not C code, and run under -race above.
ENGINE_TESTS := ^($(shell grep -ho '^func Test[A-Za-z0-9_]*' engine_*_test.go | sed 's/^func //' | paste -sd'|'))$$

test-asan:
	$(FIPS_ENV) $(GO) test -count=1 -short -asan -run '$(ENGINE_TESTS)' .
	$(FIPS_ENV) $(GO) test -count=1 -short -asan ./bio/

test-checkptr:
	$(FIPS_ENV) $(GO) test -count=1 -short -gcflags=all=-d=checkptr -run '$(ENGINE_TESTS)' .
	$(FIPS_ENV) $(GO) test -count=1 -short -gcflags=all=-d=checkptr ./bio/

fuzz-short:
	@for pt in $(FUZZ_TARGETS); do p=$${pt%%:*}; t=$${pt#*:}; \
	    echo "fuzz: $$p $$t -fuzztime $(FUZZTIME_TEST)"; \
	    $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME_TEST) -fuzzminimizetime 3s $$p || exit 1; \
	done

fuzz: deps
	@for pt in $(FUZZ_TARGETS); do p=$${pt%%:*}; t=$${pt#*:}; \
	    echo "fuzz: $$p $$t for $(FUZZTIME)"; \
	    $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10s $$p || exit 1; \
	done

# The shim driven from C alone (testdata/leakcheck/driver.c): thousands of sessions opened,
# used, failed and closed under LeakSanitizer, and a few hundred under valgrind; any leak, or
# any memory error, fails. -DINJECT_LEAK builds a driver that leaks, to see the check fail.
LEAK_CC := gcc -g -O1 -Wall -Werror testdata/leakcheck/driver.c ssl.c $$(pkg-config --cflags --libs libssl libcrypto)
leakcheck: deps
	mkdir -p bin
	$(LEAK_CC) -fsanitize=address -fno-omit-frame-pointer -o bin/leakcheck-asan
	ASAN_OPTIONS=detect_leaks=1 bin/leakcheck-asan testdata/certs 4000
	$(LEAK_CC) -o bin/leakcheck
	valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
	    --show-leak-kinds=definite,indirect --error-exitcode=1 bin/leakcheck testdata/certs 200

# The soak: 500 clients × 2,000 messages of mixed sizes through a pinning device to two
# servers, with random client restarts (make test runs a short one: 40 × 250).
SOAK_CLIENTS  ?= 500
SOAK_MESSAGES ?= 2000
soak: deps
	TLSZMQ_SOAK_CLIENTS=$(SOAK_CLIENTS) TLSZMQ_SOAK_MESSAGES=$(SOAK_MESSAGES) \
	    $(GO) test -count=1 -v -timeout 60m -run '^TestSoak$$' ./internal/device/

# Performance beside plain ZeroMQ and CURVE: the whole comparison (a table; see README).
bench-compare: build
	bin/tlszmq bench

# Interoperability with peers that share no code with tlszmq (make test runs it too).
interop: deps
	$(GO) test -count=1 -v ./internal/interop/
	$(GO) test -count=1 -v -run 'DropInAgainstCppPeer' ./cmd/tlsclient/
	$(GO) test -count=1 -v -run 'Bridge' ./cmd/tlszmq/

# The C++ TLSZMQ test peer, for trying by hand: bin/tlszmq_peer --mode server|client|device.
cpp-peer: deps
	mkdir -p bin
	g++ -O2 -std=c++17 -o bin/tlszmq_peer testdata/cpp/tlszmq_peer.cpp -lzmq -lssl -lcrypto

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) . ./internal/perf/

# Regenerate the test certificates and the fuzz seed corpora.
certs:
	$(GO) run ./testdata/certs/gen.go
	$(GO) run ./testdata/fuzz/gen.go

clean:
	rm -rf bin
