# CloudPods — see README.md.
GO      ?= go
BIN     := bin
DEMO    := .demo
PKGS    := ./...

.PHONY: all build test e2e demo bench fixtures generate vet clean

all: build

build:
	$(GO) build -o $(BIN)/cloudpod ./cmd/cloudpod
	$(GO) build -o $(BIN)/pvesim ./cmd/pvesim

# The test suite: offline, against the simulator and recorded fixtures.
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 10m $(PKGS)

# Real guests (root, LXC): pvesim --guests lxc runs unprivileged LXC containers
# booting a Debian template built once with debootstrap (cached under
# /var/cache/cloudpods/pvesim). The differential test of the in-pod commands,
# then the CLI end to end: the seed's examples with health --deep, backup and
# destroy, --count 10, kill -9 mid-create, and a netplan 1.0 template.
e2e: build
	CLOUDPODS_BIN=$(abspath $(BIN)) $(GO) test -tags realguests -p 1 -count=1 -timeout 80m -v \
		-run 'TestGuestDifferential|TestSeedExamples|TestCount10|TestKillMidCreate|TestNetplan10|TestCrashCleanup' ./provisioner/ ./e2e/

# Provision CT 9101 against the simulator on loopback, with visible progress.
demo: build
	@bash fixtures/demo.sh $(BIN) $(DEMO)

# N pods against pvesim with realistic (scaled) task durations.
bench: build
	$(GO) test -run '^$$' -bench BenchmarkBatchCreate -benchtime 1x -count 1 ./provisioner/...

# Re-record the HTTP fixtures (against pvesim unless PVE_URL is set).
fixtures:
	PVE_FIXTURE_MODE=record $(GO) test -count=1 -run 'TestReplay' ./provisioner/...

# Regenerate the PVE schema extract from ../shared/pve-api.
generate:
	$(GO) generate ./fixtures/pvesim/schema/...

clean:
	rm -rf $(BIN) $(DEMO)
