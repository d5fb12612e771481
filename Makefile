# The targets a developer and CI use. `make test` is the README's test command: it installs what
# the tests need (valkey-server from Debian's bookworm-backports) and runs every test with the race
# detector. The Valkey tests start their own valkey-server processes (standalone and a three-node
# cluster) on spare loopback ports and stop them when they end.

GO        ?= go
FUZZTIME  ?= 10s
STATICCHECK_VERSION ?= v0.8.2

.PHONY: all build test test-short test-js vet staticcheck lint lint-openapi fuzz deps run clean

all: build

build:
	$(GO) build ./...

deps:
	bash .ci/install-deps

test: deps
	$(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) test-js

# The JavaScript SDK (sdk/js): builds it, then tests it against a real herald in Node.js and in
# headless chromium. `make deps` installs what it needs (chromium, the npm devDependencies).
test-js:
	@[ -d sdk/js/node_modules ] || npm --prefix sdk/js ci --no-audit --no-fund
	npm --prefix sdk/js test

# Without the 4,000-connection idle test and without the race detector: a quick loop.
test-short:
	$(GO) test -short -count=1 ./...

vet:
	$(GO) vet ./...

staticcheck:
	@command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" staticcheck ./...

lint: vet staticcheck lint-openapi

# Lints openapi/openapi.yaml with Redocly CLI (the version pinned in .ci/redocly; `make deps`
# installs it): openapi/redocly.yaml fails on any finding, openapi/.redocly.lint-ignore.yaml
# keeps the few that are true of herald, with their reasons.
lint-openapi:
	@[ -d .ci/redocly/node_modules ] || npm --prefix .ci/redocly ci --no-audit --no-fund
	cd openapi && ../.ci/redocly/node_modules/.bin/redocly lint --config redocly.yaml openapi.yaml

# Runs every fuzz target for FUZZTIME each. Go 1.26's fuzz coordinator can report a bare
# "context deadline exceeded" when -fuzztime ends while a worker is mid-input (golang/go#75804,
# fixed in Go 1.27): such a run, with no failing input written, is retried once.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; \
	    for try in 1 2; do \
	      if out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg 2>&1); then break; fi; \
	      if [ $$try = 1 ] && echo "$$out" | grep -q 'context deadline exceeded' && \
	         ! echo "$$out" | grep -q 'Failing input written'; then \
	        echo "  deadline race at -fuzztime's end, no failing input (golang/go#75804): again"; continue; fi; \
	      echo "$$out" | tail -40; echo "FAIL $$pkg $$f"; exit 1; \
	    done; \
	  done; \
	done

run:
	$(GO) run ./cmd/herald serve

clean:
	rm -f herald herald-bench
