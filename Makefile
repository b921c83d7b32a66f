# Marina: `make run` starts a local 3-node cluster, `make test` runs the tests.
export PATH := $(PATH):/usr/local/go/bin
GO ?= go

.PHONY: run test build deps bench lint clean

build:
	$(GO) build -o bin/marina ./cmd/marina

deps:
	@./scripts/deps.sh

run: deps build
	./bin/marina up --nodes 3 --dir .marina

test: deps lint
	$(GO) test -race -count=1 -timeout 15m ./...

lint:
	@test -z "$$(gofmt -l cmd internal bench)" || { echo "gofmt needed:"; gofmt -l cmd internal bench; exit 1; }
	$(GO) vet ./...

bench: deps build
	$(GO) run ./bench/provision --marina bin/marina
	$(GO) run ./bench/failover --marina bin/marina
	$(GO) run ./bench/proxy --marina bin/marina
	$(GO) run ./bench/partition --marina bin/marina
	$(GO) run ./bench/scale --marina bin/marina

clean:
	rm -rf bin .marina
