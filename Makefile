# CloudPods — see README.md.
GO      ?= go
BIN     := bin
DEMO    := .demo
PKGS    := ./...

.PHONY: all build test e2e demo bench bench-cluster bench-ansible fixtures generate vet clean

all: build

build:
	$(GO) build -o $(BIN)/cloudpod ./cmd/cloudpod
	ln -f $(BIN)/cloudpod $(BIN)/cloudpod-create  # the sudo entry point: the same program under its own name
	$(GO) build -o $(BIN)/pvesim ./cmd/pvesim

# The test suite: offline, against the simulator and recorded fixtures.
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 10m $(PKGS)

# Real guests (root, LXC): pvesim --guests lxc runs unprivileged LXC containers
# booting a Debian template built once with debootstrap (cached under
# /var/cache/cloudpods/pvesim). PVE's hooks on real containers (clone,
# update_ipconfig, template, ct create), the differential test of the in-pod
# commands, then the CLI end to end: the seed's examples with health --deep,
# backup and destroy, --count 10, kill -9 mid-create, and a netplan 1.0 template.
e2e: build
	CLOUDPODS_BIN=$(abspath $(BIN)) $(GO) test -tags realguests -p 1 -count=1 -timeout 80m -v \
		-run 'TestRealGuestHooks|TestGuestDifferential|TestSeedExamples|TestCount10|TestKillMidCreate|TestNetplan10|TestCrashCleanup' \
		./fixtures/pvesim/ ./provisioner/ ./cmd/cloudpod/e2e/

# Provision CT 9101 against the simulator on loopback, with visible progress.
demo: build
	@bash fixtures/demo.sh $(BIN) $(DEMO)

# Issue 15's benchmark (about 8 minutes): cloudpod create --count 20 against pvesim at realistic durations
# (clone 3 s, start 1 s, scale 1) on an empty cluster and on 1000 existing guests, and the same batch through
# Ansible's Proxmox module where Ansible is installed (else its rows say why not). Markdown to stdout, JSON
# to bin/bench.json. BENCH_FLAGS passes more flags (bin/cloudpod-bench --help).
BENCH_FLAGS ?=
bench: build
	$(GO) build -o $(BIN)/cloudpod-bench ./cmd/cloudpod-bench
	$(BIN)/cloudpod-bench --cloudpod $(BIN)/cloudpod --json $(BIN)/bench.json $(BENCH_FLAGS)

# Issue 19's benchmark (about a minute): cloudpod create --count 9 --node auto on a 3-node pvesim cluster
# with the template on shared storage (clone 3 s, start 1 s, scale 1), with the template alone and with a
# copy per node, against the one-node lower bound for 9 clones; exits 1 unless the copies' makespan is below
# it. Markdown to stdout, JSON to bin/bench-cluster.json.
bench-cluster: build
	$(GO) build -o $(BIN)/cloudpod-bench ./cmd/cloudpod-bench
	$(BIN)/cloudpod-bench --cluster pve,pve2,pve3 --pods 9 --check-targets --cloudpod $(BIN)/cloudpod \
		--json $(BIN)/bench-cluster.json $(BENCH_FLAGS)

# The same with Ansible required: installs Debian's ansible, python3-proxmoxer and python3-requests first
# when they are missing (as root, with apt-get).
bench-ansible:
	@if ! command -v ansible-playbook >/dev/null || ! /usr/bin/python3 -c 'import proxmoxer, requests' 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      ansible python3-proxmoxer python3-requests >/dev/null; \
	  else echo "bench-ansible: install ansible, python3-proxmoxer and python3-requests (apt-get, as root)"; exit 1; fi; \
	fi
	$(MAKE) bench BENCH_FLAGS="--ansible require $(BENCH_FLAGS)"

# Re-record the HTTP fixtures (against pvesim unless PVE_URL is set).
fixtures:
	PVE_FIXTURE_MODE=record $(GO) test -count=1 -run 'TestReplay' ./provisioner/...

# Regenerate the PVE schema extract from ../shared/pve-api.
generate:
	$(GO) generate ./fixtures/pvesim/schema/...

clean:
	rm -rf $(BIN) $(DEMO)
