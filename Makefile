# xlb: the two entry points are `make demo` and `make test`; both install
# what they need on a fresh Debian machine (run as root).
GO       ?= go
BIN      := bin/xlb
APT_PKGS := clang llvm libbpf-dev iproute2 ethtool iputils-ping tcpdump nftables iperf3 wrk netsniff-ng frr

.PHONY: all build install deps demo test unit e2e fuzz bench bench-quick generate pgo lint clean

all: build

# deps installs the system packages and Go modules the demo, tests and
# benchmarks use. Packages already present are skipped quickly.
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	$(GO) mod download

build:
	$(GO) build -o $(BIN) ./cmd/xlb

# install: bin/xlb as $(PREFIX)/sbin/xlb and an ipvsadm link to it (run
# as ipvsadm, xlb is ipvsadm 1.31). DESTDIR stages a package root.
PREFIX ?= /usr/local
install: build
	install -d $(DESTDIR)$(PREFIX)/sbin
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/sbin/xlb
	ln -sf xlb $(DESTDIR)$(PREFIX)/sbin/ipvsadm

# demo: namespace topologies, xlb in DR, NAT, TUN and FULLNAT with rr, 300 HTTP requests on
# new connections and 300 UDP queries, a table of where they went.
demo: deps build
	$(GO) run ./testenv/demo -xlb $(BIN)

# test: every unit test, the root end-to-end tests (never skipped here:
# XLB_REQUIRE_E2E makes a skip a failure), and each benchmark once.
# TestSYNFlood runs on its own after the rest: it measures the longest
# pause of established connections under a flood generated on the same
# 2 CPUs, and other packages' tests running beside it (go test runs
# packages in parallel) would be measured too. -pgo=off: cmd/xlb's race
# test binary would otherwise build every dependency, the standard
# library included, a second time with cmd/xlb/default.pgo; the daemon the
# end-to-end tests run is built by `go build` (TestMain), with the profile.
test: deps lint
	XLB_REQUIRE_E2E=1 $(GO) test -race -pgo=off -count=1 -skip '^TestSYNFlood$$' ./...
	XLB_REQUIRE_E2E=1 $(GO) test -race -pgo=off -count=1 -run '^TestSYNFlood$$' ./cmd/xlb
	$(GO) test -count=1 -run '^$$' -bench . -benchtime=1x ./...
	$(MAKE) bench-quick

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 60s ./internal/packet

# bench: every configuration, 3 rounds, then the real-server and queue
# scaling (bench/doc.go), under 15 minutes on 2 quiet CPUs; add
# BENCH_ARGS='-out bench/RESULTS.md -chart bench/rate' to record a run.
# bench-quick (in make test): one short round that fails unless every
# configuration forwarded traffic in every test (under 2 minutes), then
# one with the xdp generator over the kernel baselines and xlb with and
# without the offload (under a minute).
bench: deps build
	$(GO) run ./bench -xlb $(BIN) $(BENCH_ARGS)

bench-quick: build
	$(GO) run ./bench -quick -xlb $(BIN)
	$(GO) run ./bench -quick -gen xdp -xlb $(BIN) -rs-counts '' -queue-scaling 0 \
		-dataplanes ip-forward,nft-fwd,nft-dnat,xlb-dr,xlb-dr-offload-generic,xlb-nat-offload-generic

generate:
	$(GO) generate ./bpf

# pgo refreshes cmd/xlb/default.pgo, the CPU profile every `go build
# ./cmd/xlb` uses (-pgo=auto): the worker benchmarks on the fake kernel
# (every forwarding method, both families, established frames and new
# connections), one process per benchmark family, merged. Refresh it
# when the per-packet path (dataplane, modes, conntrack, internal/packet)
# changes much; a stale profile still builds, it only optimizes less.
PGO_BENCH := WorkerMethods WorkerNewConn WorkerPoll
pgo:
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(GO) test -c -o $$tmp/dataplane.test ./dataplane && \
	for b in $(PGO_BENCH); do \
		$$tmp/dataplane.test -test.run '^$$' -test.bench "^Benchmark$$b$$" -test.benchtime 200000x \
			-test.cpuprofile $$tmp/$$b.prof >/dev/null || exit 1; \
	done && \
	$(GO) tool pprof -proto $$tmp/*.prof > cmd/xlb/default.pgo
	@ls -l cmd/xlb/default.pgo

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfel.go$$')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

clean:
	rm -rf bin
