# CloudPods — see README.md.
GO      ?= go
BIN     := bin
DEMO    := .demo
PKGS    := ./...

.PHONY: all build test demo bench fixtures generate vet clean

all: build

build:
	$(GO) build -o $(BIN)/cloudpod ./cmd/cloudpod
	ln -f $(BIN)/cloudpod $(BIN)/cloudpod-create  # the sudo entry point: the same program under its own name
	$(GO) build -o $(BIN)/pvesim ./cmd/pvesim

# The test suite: offline, against the simulator and recorded fixtures.
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 10m $(PKGS)

# Provision CT 9101 against the simulator on loopback, with visible progress.
demo: build
	@bash fixtures/demo.sh $(BIN) $(DEMO)

# N pods against pvesim with realistic (scaled) task durations.
bench: build
	$(GO) test -run '^$$' -bench BenchmarkBatchCreate -benchtime 1x -count 1 ./cmd/cloudpod/

# Re-record the HTTP fixtures (against pvesim unless PVE_URL is set).
fixtures:
	PVE_FIXTURE_MODE=record $(GO) test -count=1 -run 'TestReplay' ./provisioner/...

# Regenerate the PVE schema extract from ../shared/pve-api.
generate:
	$(GO) generate ./fixtures/pvesim/schema/...

clean:
	rm -rf $(BIN) $(DEMO)
