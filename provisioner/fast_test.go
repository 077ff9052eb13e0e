package provisioner_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/internal/simtest"
	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/pvetest"
)

// The fast tier: the flows against pvetest's in-memory API, in
// milliseconds. What PVE itself does is pvesim's part (the _e2e tests).

// fastEnv is a provisioner over the fake, with IPAM over a registry file
// in a temporary directory.
type fastEnv struct {
	api   *pvetest.Fake
	alloc *ipam.Allocator
	addrs *ledgerAddresses
	audit string
}

// ledgerAddresses is the IPAM adapter, noting each change it makes
// together with how many PVE calls preceded it, so tests can tell the
// order of a rollback across both.
type ledgerAddresses struct {
	provisioner.Addresses
	api *pvetest.Fake
	mu  sync.Mutex
	log []string
}

func (l *ledgerAddresses) note(what string, lease provisioner.AddressLease) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log = append(l.log, fmt.Sprintf("%s %s after %d calls", what, lease.IP, len(l.api.Calls())))
}

func (l *ledgerAddresses) Reserve(ctx context.Context, req provisioner.AddressRequest) (provisioner.AddressLease, error) {
	lease, err := l.Addresses.Reserve(ctx, req)
	if err == nil {
		l.note("reserve", lease)
	}
	return lease, err
}

func (l *ledgerAddresses) Release(ctx context.Context, lease provisioner.AddressLease) error {
	err := l.Addresses.Release(ctx, lease)
	if err == nil {
		l.note("release", lease)
	}
	return err
}

func (l *ledgerAddresses) entries() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.log...)
}

func newFastEnv(t *testing.T) *fastEnv {
	t.Helper()
	api := pvetest.New()
	alloc, err := ipam.New(ipam.NewFileStore(filepath.Join(t.TempDir(), "ipam.json")), ipam.DefaultPool(), ipam.DefaultVMIDs(), provisioner.Inventory{API: api})
	if err != nil {
		t.Fatal(err)
	}
	return &fastEnv{api: api, alloc: alloc, addrs: &ledgerAddresses{Addresses: provisioner.IPAM{Allocator: alloc}, api: api},
		audit: filepath.Join(t.TempDir(), "audit.log")}
}

// provisioner wires the flows over the fake, with IPAM: tiny retry waits,
// short bounds (nothing here waits for real).
func (e *fastEnv) provisioner(opts provisioner.Options) *provisioner.Provisioner {
	opts.Addresses = e.addrs
	return e.withoutIPAM(opts)
}

// withoutIPAM wires the flows over the fake as --ipam none does.
func (e *fastEnv) withoutIPAM(opts provisioner.Options) *provisioner.Provisioner {
	opts.Retry = pve.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond}
	opts.TaskTimeout, opts.VerifyTimeout, opts.ExecTimeout = 2*time.Second, time.Second, 2*time.Second
	opts.Wait.MinInterval = time.Millisecond
	opts.Audit = &provisioner.AuditLog{Path: e.audit, Requester: "ops"}
	opts.Logger = simtest.Quiet()
	return provisioner.New(e.api, opts)
}

// lease is the registry's state for ip, "" when it holds none.
func (e *fastEnv) lease(t *testing.T, ip string) ipam.State {
	t.Helper()
	ls, err := e.alloc.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var st ipam.State
	for _, l := range ls {
		if l.IP.String() == ip {
			st = l.State
		}
	}
	return st
}

// stepOrder is the steps of the events, each once, in order.
func (e *events) stepOrder() []string {
	var out []string
	seen := map[string]bool{}
	for _, ev := range e.list {
		if !seen[ev.Step] {
			seen[ev.Step] = true
			out = append(out, ev.Step)
		}
	}
	return out
}

// lifecycle is a step's start, done, skip and fail events, without its
// progress notes.
func (e *events) lifecycle(step string) []provisioner.Phase {
	var out []provisioner.Phase
	for _, ph := range e.phases(step) {
		if ph != provisioner.PhaseInfo && ph != provisioner.PhaseWarn {
			out = append(out, ph)
		}
	}
	return out
}

func joined(list []string) string { return strings.Join(list, " | ") }
