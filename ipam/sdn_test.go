package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fakeSDN is PVE's SDN IPAM for one vnet, answering with PVE's messages.
type fakeSDN struct {
	mu  sync.Mutex
	ips map[netip.Addr]string // ip → mac
	// hideList makes ListIPs return nothing, as PVE's ipams status does for
	// zones without dhcp; then only POSTs find what is taken.
	hideList bool
	posts    int
	failAdd  error
}

func newFakeSDN(held ...string) *fakeSDN {
	f := &fakeSDN{ips: map[netip.Addr]string{}}
	for _, s := range held {
		f.ips[addr(s)] = ""
	}
	return f
}

func (f *fakeSDN) AddIP(ctx context.Context, zone, vnet string, ip netip.Addr, mac string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.posts++
	if f.failAdd != nil {
		return f.failAdd
	}
	if _, ok := f.ips[ip]; ok {
		return fmt.Errorf("POST /cluster/sdn/vnets/%s/ips: 500 IP '%s' already exist", vnet, ip)
	}
	f.ips[ip] = mac
	return nil
}

func (f *fakeSDN) DeleteIP(ctx context.Context, zone, vnet string, ip netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.ips[ip]; !ok {
		return fmt.Errorf("DELETE /cluster/sdn/vnets/%s/ips: 500 IP '%s' does not exist in IPAM DB", vnet, ip)
	}
	delete(f.ips, ip)
	return nil
}

func (f *fakeSDN) ListIPs(ctx context.Context, zone, vnet string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hideList {
		return nil, nil
	}
	var out []netip.Addr
	for ip := range f.ips {
		out = append(out, ip)
	}
	return out, nil
}

func (f *fakeSDN) holds(ip netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.ips[ip]
	return ok
}

func TestSDNErrorRecognition(t *testing.T) {
	tests := []struct {
		err            error
		exists, absent bool
	}{
		{nil, false, false},
		{fmt.Errorf("adapter: %w", ErrSDNIPExists), true, false},
		{errors.New("500 IP '10.1.10.91' already exist"), true, false},
		{fmt.Errorf("adapter: %w", ErrSDNIPMissing), false, true},
		{errors.New("500 IP '10.1.10.91' does not exist in IPAM DB"), false, true},
		{errors.New("500 zone 'z' doesn't exist in IPAM DB"), false, false},
		{errors.New("403 permission denied"), false, false},
	}
	for _, tt := range tests {
		if got := SDNIPExists(tt.err); got != tt.exists {
			t.Errorf("SDNIPExists(%v) = %v", tt.err, got)
		}
		if got := SDNIPMissing(tt.err); got != tt.absent {
			t.Errorf("SDNIPMissing(%v) = %v", tt.err, got)
		}
	}
}

func TestSDNClaimerWalksPastTakenAddresses(t *testing.T) {
	ctx := context.Background()
	// Another controller holds .91 and .92; the status listing shows nothing.
	sdn := newFakeSDN("10.1.10.91", "10.1.10.92")
	sdn.hideList = true
	env := newTestEnv(t, DefaultPool(), DefaultVMIDs(), WithClaimer(NewSDNClaimer(sdn, "zone1", "vnet1")))

	l := env.reserve(t, Request{Hostname: "web1", Owner: "job-1", MAC: "BC:24:11:00:00:01"})
	if l.IP != addr("10.1.10.93") || sdn.posts != 3 {
		t.Fatalf("lease %s after %d POSTs, want .93 after 3", l.IP, sdn.posts)
	}
	if sdn.ips[l.IP] != "BC:24:11:00:00:01" {
		t.Fatalf("SDN mac = %q", sdn.ips[l.IP])
	}
	// Idempotent re-run does not claim again.
	if again := env.reserve(t, Request{Hostname: "web1", Owner: "job-1"}); again.IP != l.IP || sdn.posts != 3 {
		t.Fatalf("re-run = %s after %d POSTs", again.IP, sdn.posts)
	}
	_, err := env.alloc.Reserve(ctx, Request{Hostname: "web2", IP: addr("10.1.10.91")})
	if !errors.Is(err, ErrAddressInUse) || !strings.Contains(err.Error(), "PVE SDN IPAM (zone zone1, vnet vnet1)") {
		t.Fatalf("explicit SDN-held address = %v", err)
	}

	if _, err := env.alloc.Release(ctx, Ref{IP: l.IP}); err != nil {
		t.Fatal(err)
	}
	if sdn.holds(l.IP) {
		t.Fatal("Release left the address in the SDN IPAM")
	}
	// Releasing what the SDN no longer has is fine (DELETE answers "does not exist").
	l2 := env.reserve(t, Request{Hostname: "web3"})
	if err := NewSDNClaimer(sdn, "zone1", "vnet1").Unclaim(ctx, l2.IP); err != nil {
		t.Fatal(err)
	}
	if _, err := env.alloc.Release(ctx, Ref{IP: l2.IP}); err != nil {
		t.Fatalf("Release of an address PVE already dropped = %v", err)
	}
}

func TestSDNClaimerListingAvoidsPOSTs(t *testing.T) {
	sdn := newFakeSDN("10.1.10.1", "10.1.10.91", "10.1.10.92")
	env := newTestEnv(t, DefaultPool(), DefaultVMIDs(), WithClaimer(NewSDNClaimer(sdn, "z", "v")))
	if l := env.reserve(t, Request{Hostname: "web1"}); l.IP != addr("10.1.10.93") || sdn.posts != 1 {
		t.Fatalf("lease %s after %d POSTs, want .93 after 1", l.IP, sdn.posts)
	}
	ip, _, err := env.alloc.Next(context.Background())
	if err != nil || ip != addr("10.1.10.94") {
		t.Fatalf("Next = %s, %v", ip, err)
	}
}

func TestSDNClaimerOtherErrorsStopTheWalk(t *testing.T) {
	sdn := newFakeSDN()
	sdn.failAdd = errors.New("403 Permission check failed (/sdn/zones/z/v, SDN.Allocate)")
	env := newTestEnv(t, DefaultPool(), DefaultVMIDs(), WithClaimer(NewSDNClaimer(sdn, "z", "v")))
	_, err := env.alloc.Reserve(context.Background(), Request{Hostname: "web1"})
	if err == nil || errors.Is(err, ErrAddressInUse) || !strings.Contains(err.Error(), "SDN.Allocate") || sdn.posts != 1 {
		t.Fatalf("Reserve = %v after %d POSTs; want the permission error after 1", err, sdn.posts)
	}
	if leases, _ := env.alloc.List(context.Background()); len(leases) != 0 {
		t.Fatalf("lease recorded despite the failed claim: %+v", leases)
	}
}

func TestSDNExpiryAndSync(t *testing.T) {
	ctx := context.Background()
	sdn := newFakeSDN()
	env := newTestEnv(t, DefaultPool(), DefaultVMIDs(), WithClaimer(NewSDNClaimer(sdn, "z", "v")))
	stale := env.reserve(t, Request{Hostname: "crashed", Owner: "job-1"})
	gone := env.reserve(t, Request{Hostname: "gone", Owner: "job-2"})
	if _, err := env.alloc.Assign(ctx, gone); err != nil {
		t.Fatal(err)
	}
	sdn.ips[addr("10.1.10.200")] = "" // a claim nobody here accounts for

	env.clock.Advance(DefaultReservationTTL)
	rep, err := env.alloc.Sync(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Expired) != 1 || sdn.holds(stale.IP) {
		t.Fatalf("expired %+v, SDN still holds %s: %v", rep.Expired, stale.IP, sdn.holds(stale.IP))
	}
	if len(rep.Released) != 1 || sdn.holds(gone.IP) {
		t.Fatalf("released %+v, SDN still holds %s: %v", rep.Released, gone.IP, sdn.holds(gone.IP))
	}
	if !slices.Equal(rep.Unregistered, []netip.Addr{addr("10.1.10.200")}) || !sdn.holds(addr("10.1.10.200")) {
		t.Fatalf("unregistered = %v; the claim must be reported, not deleted", rep.Unregistered)
	}
}

// Two controllers with separate registries share the SDN IPAM.
func TestSDNTwoControllers(t *testing.T) {
	ctx := context.Background()
	sdn := newFakeSDN()
	sdn.hideList = true
	inv := &staticInventory{}
	var allocs []*Allocator
	for range 2 {
		a, err := New(NewFileStore(registryPath(t)), DefaultPool(), DefaultVMIDs(), inv, WithClaimer(NewSDNClaimer(sdn, "z", "v")))
		if err != nil {
			t.Fatal(err)
		}
		allocs = append(allocs, a)
	}
	const each = 30
	var mu sync.Mutex
	seen := map[netip.Addr]int{}
	var wg sync.WaitGroup
	for c, a := range allocs {
		wg.Go(func() {
			for i := range each {
				l, err := a.Reserve(ctx, Request{Hostname: fmt.Sprintf("c%d-%d", c, i)})
				if err != nil {
					t.Errorf("controller %d: %v", c, err)
					return
				}
				mu.Lock()
				seen[l.IP]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 2*each {
		t.Fatalf("%d distinct addresses for %d reservations: %v", len(seen), 2*each, seen)
	}
}

// failingWrites is a registry whose writes fail after fn ran.
type failingWrites struct{ Store }

var errDiskFull = errors.New("no space left on device")

func (s failingWrites) Update(ctx context.Context, fn func(*Registry) error) error {
	return s.Store.Update(ctx, func(r *Registry) error {
		if err := fn(r); err != nil {
			return err
		}
		return errDiskFull
	})
}

func TestSDNClaimGivenBackWhenTheRegistryWriteFails(t *testing.T) {
	sdn := newFakeSDN()
	a, err := New(failingWrites{NewFileStore(registryPath(t))}, DefaultPool(), DefaultVMIDs(), &staticInventory{},
		WithClaimer(NewSDNClaimer(sdn, "z", "v")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	_, err = a.Reserve(ctx, Request{Hostname: "web1"})
	cancel()
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("Reserve = %v, want the write error", err)
	}
	if sdn.posts != 1 || sdn.holds(addr("10.1.10.91")) {
		t.Fatalf("after %d POSTs the SDN still holds the unrecorded claim", sdn.posts)
	}
}
