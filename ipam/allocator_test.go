package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNewRejectsBadConfig(t *testing.T) {
	store := NewFileStore(registryPath(t))
	inv := &staticInventory{}
	badPool := DefaultPool()
	badPool.Bridge = ""
	tests := []struct {
		name    string
		store   Store
		pool    Pool
		vmids   VMIDRange
		inv     Inventory
		opts    []Option
		wantErr string
	}{
		{"no store", nil, DefaultPool(), DefaultVMIDs(), inv, nil, "no registry store"},
		{"no inventory", store, DefaultPool(), DefaultVMIDs(), nil, nil, "no PVE inventory"},
		{"bad pool", store, badPool, DefaultVMIDs(), inv, nil, "bridge is empty"},
		{"bad vmids", store, DefaultPool(), VMIDRange{Min: 50, Max: 60}, inv, nil, "PVE allows"},
		{"bad ttl", store, DefaultPool(), DefaultVMIDs(), inv, []Option{WithReservationTTL(0)}, "TTL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.store, tt.pool, tt.vmids, tt.inv, tt.opts...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func registryPath(t *testing.T) string { return t.TempDir() + "/ipam.json" }

func TestReserveHandsOutLowestFree(t *testing.T) {
	env := newTestEnv(t, DefaultPool(), DefaultVMIDs())
	for i, want := range []struct {
		ip   string
		vmid int
	}{{"10.1.10.91", 9101}, {"10.1.10.92", 9102}, {"10.1.10.93", 9103}} {
		l := env.reserve(t, Request{Hostname: fmt.Sprintf("web%d", i), Tenant: "acme", Owner: "job"})
		if l.IP.String() != want.ip || l.VMID != want.vmid {
			t.Fatalf("lease %d = %s/%d, want %s/%d", i, l.IP, l.VMID, want.ip, want.vmid)
		}
		if l.State != StateReserved || l.Source != SourceCloudpod || l.Tenant != "acme" ||
			!l.ExpiresAt.Equal(env.clock.Now().Add(DefaultReservationTTL)) {
			t.Fatalf("lease %d = %+v", i, l)
		}
	}
}

// The Done-when test: an address or VMID present only in PVE is never handed out.
func TestReserveNeverHandsOutWhatPVEUses(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, smallPool(), VMIDRange{Min: 9101, Max: 9110})
	// .91 set by hand in the GUI on a CT, .94 on a VM's cloud-init; 9101 and 9103 taken.
	env.inv.set(
		Guest{VMID: 9101, Type: "lxc", Name: "manual", Addrs: []netip.Addr{addr("10.1.10.91")}},
		Guest{VMID: 9103, Type: "qemu", Name: "vm", Addrs: []netip.Addr{addr("10.1.10.94")}},
	)
	var got []Lease
	for i := 0; ; i++ {
		l, err := env.alloc.Reserve(ctx, Request{Hostname: fmt.Sprintf("h%d", i)})
		if errors.Is(err, ErrPoolExhausted) {
			break
		}
		if err != nil {
			t.Fatalf("Reserve: %v", err)
		}
		got = append(got, l)
	}
	// Allocatable: .91 .92 .94 .95 (.93 reserved); PVE holds .91 and .94.
	if len(got) != 2 || got[0].IP != addr("10.1.10.92") || got[1].IP != addr("10.1.10.95") {
		t.Fatalf("leases = %v, want .92 and .95", got)
	}
	if got[0].VMID != 9102 || got[1].VMID != 9104 {
		t.Fatalf("vmids = %d, %d; want 9102, 9104", got[0].VMID, got[1].VMID)
	}

	// Explicit requests for PVE's address or VMID name the guest.
	_, err := env.alloc.Reserve(ctx, Request{Hostname: "x", IP: addr("10.1.10.94")})
	if !errors.Is(err, ErrAddressInUse) || !strings.Contains(err.Error(), "PVE qemu 9103 (vm)") {
		t.Fatalf("explicit PVE address = %v, want ErrAddressInUse naming the guest", err)
	}
	_, err = env.alloc.Reserve(ctx, Request{Hostname: "x", VMID: 9101})
	if !errors.Is(err, ErrVMIDInUse) || !strings.Contains(err.Error(), "lxc 9101 (manual)") {
		t.Fatalf("explicit PVE vmid = %v, want ErrVMIDInUse naming the guest", err)
	}
}

func TestReserveExplicit(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, DefaultPool(), DefaultVMIDs())
	held := env.reserve(t, Request{Hostname: "web1", Owner: "job-1", Tenant: "acme", IP: addr("10.1.10.200"), VMID: 9500})
	if held.IP != addr("10.1.10.200") || held.VMID != 9500 {
		t.Fatalf("explicit lease = %+v", held)
	}
	tests := []struct {
		name    string
		req     Request
		wantIs  error
		wantMsg string
	}{
		{"address held", Request{Hostname: "web2", IP: addr("10.1.10.200")}, ErrAddressInUse, "reserved lease of web1 (vmid 9500) owner job-1 tenant acme"},
		{"vmid held", Request{Hostname: "web2", VMID: 9500}, ErrVMIDInUse, "vmid 9500 is in use by reserved lease of web1"},
		{"gateway", Request{Hostname: "web2", IP: addr("10.1.10.1")}, ErrOutOfRange, "not allocatable"},
		{"template", Request{Hostname: "web2", IP: addr("10.1.10.90")}, ErrOutOfRange, "not allocatable"},
		{"above range", Request{Hostname: "web2", IP: addr("10.1.10.251")}, ErrOutOfRange, "not allocatable"},
		{"other subnet", Request{Hostname: "web2", IP: addr("192.168.1.10")}, ErrOutOfRange, "not allocatable"},
		{"vmid below range", Request{Hostname: "web2", VMID: 9100}, ErrOutOfRange, "outside 9101-9999"},
		{"same owner, other address", Request{Hostname: "web1", Owner: "job-1", IP: addr("10.1.10.201")}, ErrLeaseConflict, "already hold 10.1.10.200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := env.alloc.Reserve(ctx, tt.req)
			if !errors.Is(err, tt.wantIs) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Reserve = %v, want %v containing %q", err, tt.wantIs, tt.wantMsg)
			}
		})
	}
	var inUse *InUseError
	_, err := env.alloc.Reserve(ctx, Request{Hostname: "web3", IP: addr("10.1.10.200")})
	if !errors.As(err, &inUse) || inUse.What != "address 10.1.10.200" {
		t.Fatalf("errors.As InUseError = %v", err)
	}
}

func TestReserveIsIdempotentPerOwnerAndHostname(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, DefaultPool(), DefaultVMIDs())
	first := env.reserve(t, Request{Hostname: "web1", Owner: "job-1"})
	env.clock.Advance(10 * time.Minute)
	again := env.reserve(t, Request{Hostname: "web1", Owner: "job-1", IP: first.IP})
	if again.IP != first.IP || again.VMID != first.VMID {
		t.Fatalf("re-run got %s/%d, want %s/%d", again.IP, again.VMID, first.IP, first.VMID)
	}
	if !again.ExpiresAt.Equal(env.clock.Now().Add(DefaultReservationTTL)) {
		t.Fatalf("re-run did not renew the reservation: expires %s", again.ExpiresAt)
	}
	other := env.reserve(t, Request{Hostname: "web1", Owner: "job-2"})
	if other.IP == first.IP {
		t.Fatal("another owner got the same lease")
	}
	leases, err := env.alloc.List(ctx)
	if err != nil || len(leases) != 2 {
		t.Fatalf("List = %d leases, %v; want 2", len(leases), err)
	}
}

func TestReservationExpiry(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, smallPool(), DefaultVMIDs(), WithReservationTTL(5*time.Minute))
	crashed := env.reserve(t, Request{Hostname: "web1", Owner: "job-1"})
	kept := env.reserve(t, Request{Hostname: "web2", Owner: "job-2"})
	if _, err := env.alloc.Assign(ctx, kept); err != nil {
		t.Fatalf("Assign: %v", err)
	}
	// The assigned pod exists in PVE; the crashed one never got cloned.
	env.inv.set(Guest{VMID: kept.VMID, Name: "web2", Addrs: []netip.Addr{kept.IP}})

	env.clock.Advance(5*time.Minute - time.Second)
	ip, _, err := env.alloc.Next(ctx)
	if err != nil || ip != addr("10.1.10.94") {
		t.Fatalf("Next before expiry = %s, %v; want .94", ip, err)
	}
	env.clock.Advance(time.Second)
	ip, vmid, err := env.alloc.Next(ctx)
	if err != nil || ip != crashed.IP || vmid != crashed.VMID {
		t.Fatalf("Next at expiry = %s/%d, %v; want the expired %s/%d", ip, vmid, err, crashed.IP, crashed.VMID)
	}
	leases, _ := env.alloc.List(ctx)
	if !leases[0].Expired(env.clock.Now()) || leases[1].Expired(env.clock.Now()) {
		t.Fatalf("Expired() wrong: %+v", leases)
	}

	// A new pod takes the expired address; the registry keeps one entry per address.
	taker := env.reserve(t, Request{Hostname: "web3", Owner: "job-3"})
	if taker.IP != crashed.IP {
		t.Fatalf("new reservation = %s, want the expired %s", taker.IP, crashed.IP)
	}
	leases, _ = env.alloc.List(ctx)
	if len(leases) != 2 {
		t.Fatalf("registry holds %d leases, want 2 (the expired one superseded): %+v", len(leases), leases)
	}
	// The crashed job can no longer assign what it lost.
	if _, err := env.alloc.Assign(ctx, crashed); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Assign of a superseded lease = %v, want ErrNotFound", err)
	}
	// The assigned lease never expires.
	env.clock.Advance(24 * time.Hour)
	leases, _ = env.alloc.List(ctx)
	for _, l := range leases {
		if l.IP == kept.IP && !l.Active(env.clock.Now()) {
			t.Fatalf("assigned lease went inactive: %+v", l)
		}
	}
}

func TestExpiredReservationComesBackToItsOwner(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, DefaultPool(), DefaultVMIDs())
	first := env.reserve(t, Request{Hostname: "web1", Owner: "job-1"})
	env.reserve(t, Request{Hostname: "web2", Owner: "job-2"})

	// The create crashed and is re-run after the reservation expired, with
	// someone else reserving in between.
	env.clock.Advance(DefaultReservationTTL + time.Minute)
	env.reserve(t, Request{Hostname: "web2", Owner: "job-2"}) // expires web1 on disk
	rerun := env.reserve(t, Request{Hostname: "web1", Owner: "job-1"})
	if rerun.IP != first.IP || rerun.VMID != first.VMID {
		t.Fatalf("re-run got %s/%d, want its old %s/%d back", rerun.IP, rerun.VMID, first.IP, first.VMID)
	}

	// A pod that came up after its reservation expired is taken back.
	env.clock.Advance(DefaultReservationTTL + time.Minute)
	if _, err := env.alloc.Sync(ctx, false); err != nil { // materialises the expiry
		t.Fatal(err)
	}
	got, err := env.alloc.Assign(ctx, rerun)
	if err != nil || got.State != StateAssigned || !got.ExpiresAt.IsZero() {
		t.Fatalf("Assign after expiry = %+v, %v", got, err)
	}
}

func TestAssignAndRelease(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, DefaultPool(), DefaultVMIDs())
	a := env.reserve(t, Request{Hostname: "web1", Owner: "job-1"})
	b := env.reserve(t, Request{Hostname: "web2", Owner: "job-2"})

	assigned, err := env.alloc.Assign(ctx, a)
	if err != nil || assigned.State != StateAssigned || !assigned.ExpiresAt.IsZero() {
		t.Fatalf("Assign = %+v, %v", assigned, err)
	}
	if again, err := env.alloc.Assign(ctx, a); err != nil || again.State != StateAssigned {
		t.Fatalf("second Assign = %+v, %v; want it idempotent", again, err)
	}

	rel, err := env.alloc.Release(ctx, Ref{IP: a.IP})
	if err != nil || len(rel) != 1 || rel[0].State != StateReleased {
		t.Fatalf("Release by address = %+v, %v", rel, err)
	}
	if rel, err := env.alloc.Release(ctx, Ref{IP: a.IP}); err != nil || len(rel) != 0 {
		t.Fatalf("second Release = %+v, %v; want a no-op", rel, err)
	}
	if _, err := env.alloc.Assign(ctx, a); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Assign of a released lease = %v, want ErrNotFound", err)
	}
	if rel, err := env.alloc.Release(ctx, Ref{VMID: b.VMID}); err != nil || len(rel) != 1 || rel[0].IP != b.IP {
		t.Fatalf("Release by vmid = %+v, %v", rel, err)
	}
	if _, err := env.alloc.Release(ctx, Ref{IP: addr("10.1.10.150")}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Release of an unknown address = %v, want ErrNotFound", err)
	}
	if _, err := env.alloc.Assign(ctx, Lease{IP: addr("10.1.10.150"), VMID: 9150}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Assign of an unknown lease = %v, want ErrNotFound", err)
	}

	// Released addresses are handed out again.
	c := env.reserve(t, Request{Hostname: "web3", Owner: "job-3"})
	if c.IP != a.IP || c.VMID != a.VMID {
		t.Fatalf("after release got %s/%d, want %s/%d again", c.IP, c.VMID, a.IP, a.VMID)
	}
}

func TestNextDoesNotReserve(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, DefaultPool(), DefaultVMIDs())
	env.inv.set(Guest{VMID: 9101, Addrs: []netip.Addr{addr("10.1.10.91")}})
	for range 2 {
		ip, vmid, err := env.alloc.Next(ctx)
		if err != nil || ip != addr("10.1.10.92") || vmid != 9102 {
			t.Fatalf("Next = %s/%d, %v; want 10.1.10.92/9102", ip, vmid, err)
		}
	}
	if leases, _ := env.alloc.List(ctx); len(leases) != 0 {
		t.Fatalf("Next wrote leases: %+v", leases)
	}
	if l := env.reserve(t, Request{Hostname: "web1"}); l.IP != addr("10.1.10.92") {
		t.Fatalf("Reserve after Next = %s", l.IP)
	}
}

func TestExhaustion(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, smallPool(), VMIDRange{Min: 9101, Max: 9102})
	env.reserve(t, Request{Hostname: "a"})
	env.reserve(t, Request{Hostname: "b"})
	if _, err := env.alloc.Reserve(ctx, Request{Hostname: "c"}); !errors.Is(err, ErrPoolExhausted) || !strings.Contains(err.Error(), "vmid") {
		t.Fatalf("Reserve with VMIDs exhausted = %v", err)
	}
	if _, _, err := env.alloc.Next(ctx); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("Next with VMIDs exhausted = %v", err)
	}

	env = newTestEnv(t, smallPool(), DefaultVMIDs())
	for _, h := range []string{"a", "b", "c", "d"} {
		env.reserve(t, Request{Hostname: h})
	}
	if _, err := env.alloc.Reserve(ctx, Request{Hostname: "e"}); !errors.Is(err, ErrPoolExhausted) || !strings.Contains(err.Error(), "address") {
		t.Fatalf("Reserve with addresses exhausted = %v", err)
	}
	if _, _, err := env.alloc.Next(ctx); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("Next with addresses exhausted = %v", err)
	}
}

func TestInventoryFailureStopsAllocation(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, DefaultPool(), DefaultVMIDs())
	env.inv.err = errors.New("PVE unreachable")
	if _, err := env.alloc.Reserve(ctx, Request{Hostname: "web1"}); err == nil || !strings.Contains(err.Error(), "PVE unreachable") {
		t.Fatalf("Reserve = %v, want the inventory error", err)
	}
	if _, _, err := env.alloc.Next(ctx); err == nil {
		t.Fatal("Next succeeded without PVE")
	}
	if _, err := env.alloc.Sync(ctx, true); err == nil {
		t.Fatal("Sync succeeded without PVE")
	}
	if leases, _ := env.alloc.List(ctx); len(leases) != 0 {
		t.Fatalf("leases written without PVE: %+v", leases)
	}
}

func TestLeasesSpanPools(t *testing.T) {
	store := NewFileStore(registryPath(t))
	inv := &staticInventory{}
	second := DefaultPool()
	second.Name, second.Bridge = "lab", "vmbr1"
	second.First, second.Last = addr("10.1.10.91"), addr("10.1.10.92")
	a1, err := New(store, DefaultPool(), DefaultVMIDs(), inv)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := New(store, second, DefaultVMIDs(), inv)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l1, err := a1.Reserve(ctx, Request{Hostname: "x"})
	if err != nil {
		t.Fatal(err)
	}
	l2, err := a2.Reserve(ctx, Request{Hostname: "x"})
	if err != nil {
		t.Fatal(err)
	}
	// Same owner and hostname in another pool is another lease, but VMIDs
	// and overlapping addresses are shared.
	if l2.IP == l1.IP || l2.VMID == l1.VMID || l2.Pool != "lab" {
		t.Fatalf("pools collided: %+v %+v", l1, l2)
	}
	if _, err := a2.Release(ctx, Ref{IP: l1.IP}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("releasing another pool's lease = %v, want ErrNotFound", err)
	}
}

// Goroutines, each with its own Allocator on one registry file, as separate
// commands of one process would be.
func TestConcurrentReserveInOneProcess(t *testing.T) {
	ctx := context.Background()
	path := registryPath(t)
	inv := &staticInventory{}
	inv.set(Guest{VMID: 9110, Addrs: []netip.Addr{addr("10.1.10.100")}})
	shared, err := New(NewFileStore(path), DefaultPool(), DefaultVMIDs(), inv)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 15
	var wg sync.WaitGroup
	results := make(chan Lease, workers*each)
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			alloc := shared
			if w%2 == 0 {
				alloc, _ = New(NewFileStore(path), DefaultPool(), DefaultVMIDs(), inv)
			}
			for i := range each {
				l, err := alloc.Reserve(ctx, Request{Hostname: fmt.Sprintf("w%d-%d", w, i), Owner: "t"})
				if err != nil {
					errs <- err
					return
				}
				results <- l
			}
		})
	}
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		t.Fatalf("Reserve: %v", err)
	}
	ips, vmids := map[netip.Addr]bool{}, map[int]bool{}
	for l := range results {
		if ips[l.IP] || vmids[l.VMID] {
			t.Fatalf("handed out twice: %s/%d", l.IP, l.VMID)
		}
		if l.IP == addr("10.1.10.100") || l.VMID == 9110 {
			t.Fatalf("handed out PVE's %s/%d", l.IP, l.VMID)
		}
		ips[l.IP], vmids[l.VMID] = true, true
	}
	if len(ips) != workers*each {
		t.Fatalf("%d distinct leases, want %d", len(ips), workers*each)
	}
	leases, err := shared.List(ctx)
	if err != nil || len(leases) != workers*each {
		t.Fatalf("registry holds %d leases, %v; want %d", len(leases), err, workers*each)
	}
}

// TestStaleLeasesNeverBlock: PVE decides what is in use. An assigned lease
// whose guest PVE no longer has, an expired reservation and a released
// lease block nothing; a reservation in flight does; the requester's own
// pod (its marker names the owner) is no obstacle to its own lease.
func TestStaleLeasesNeverBlock(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, DefaultPool(), DefaultVMIDs())
	gone := env.reserve(t, Request{Hostname: "gone", Owner: "o-gone", IP: addr("10.1.10.91"), VMID: 9101})
	if _, err := env.alloc.Assign(ctx, gone); err != nil {
		t.Fatal(err)
	}
	expired := env.reserve(t, Request{Hostname: "crashed", Owner: "o-crashed", IP: addr("10.1.10.92"), VMID: 9102})
	env.clock.Advance(DefaultReservationTTL)
	inflight := env.reserve(t, Request{Hostname: "inflight", Owner: "o-inflight", IP: addr("10.1.10.93"), VMID: 9103})
	mine := Guest{VMID: 9104, Type: "lxc", Name: "web", Addrs: []netip.Addr{addr("10.1.10.94")}, Owner: "o-web"}
	env.inv.set(mine)

	for _, req := range []Request{
		{Hostname: "new1", Owner: "n1", IP: gone.IP, VMID: gone.VMID},
		{Hostname: "new2", Owner: "n2", IP: expired.IP, VMID: expired.VMID},
		{Hostname: "web", Owner: "o-web", IP: addr("10.1.10.94"), VMID: 9104},
	} {
		if _, err := env.alloc.Reserve(ctx, req); err != nil {
			t.Errorf("Reserve %s/%d for %s: %v", req.IP, req.VMID, req.Hostname, err)
		}
	}
	if _, err := env.alloc.Reserve(ctx, Request{Hostname: "new3", Owner: "n3", IP: inflight.IP}); !errors.Is(err, ErrAddressInUse) {
		t.Errorf("a reservation in flight did not block: %v", err)
	}
	if _, err := env.alloc.Reserve(ctx, Request{Hostname: "new4", Owner: "n4", IP: addr("10.1.10.94")}); !errors.Is(err, ErrAddressInUse) {
		t.Errorf("another owner got the pod's address: %v", err)
	}
	if _, err := env.alloc.Reserve(ctx, Request{Hostname: "web-b", Owner: "o-web", IP: addr("10.1.10.94"), VMID: 9105}); !errors.Is(err, ErrAddressInUse) {
		t.Errorf("the owner got its pod's address for another VMID: %v", err)
	}
}

// TestAdoptFollowsPVE: adopting a pod PVE has records its lease assigned
// whatever the registry held, releases what contradicted it, and adopting
// again writes nothing.
func TestAdoptFollowsPVE(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, DefaultPool(), DefaultVMIDs())
	req := Request{Hostname: "migra-highmem-01", Owner: "cloudpods//migra-highmem-01", IP: addr("10.1.10.101"), VMID: 9201}
	// What a refused run and a sync used to leave: the pod's lease
	// released, then recorded again without an owner.
	if err := env.store.Update(ctx, func(reg *Registry) error {
		reg.Leases = append(reg.Leases,
			Lease{Pool: "default", IP: req.IP, VMID: 9201, Hostname: req.Hostname, State: StateAssigned, Source: SourcePVE},
			Lease{Pool: "default", IP: addr("10.1.10.102"), VMID: 9201, Hostname: "other", Owner: "x", State: StateReserved, Source: SourceCloudpod,
				ExpiresAt: env.clock.Now().Add(time.Hour)},
			// An abandoned attempt of the same command, with other numbers.
			Lease{Pool: "default", IP: addr("10.1.10.103"), VMID: 9203, Hostname: req.Hostname, Owner: req.Owner, State: StateReserved, Source: SourceCloudpod,
				ExpiresAt: env.clock.Now().Add(time.Hour)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	l, err := env.alloc.Adopt(ctx, req)
	if err != nil || l.State != StateAssigned || l.Owner != req.Owner || l.IP != req.IP || l.VMID != 9201 {
		t.Fatalf("Adopt = %+v, %v", l, err)
	}
	leases, _ := env.alloc.List(ctx)
	active := 0
	for _, x := range leases {
		if x.Active(env.clock.Now()) {
			active++
			if x.Owner != req.Owner || x.VMID != 9201 {
				t.Errorf("lease %+v is still active beside the adopted one", x)
			}
		}
	}
	if active != 1 {
		t.Errorf("%d active leases, want 1: %+v", active, leases)
	}
	before, _ := os.ReadFile(env.store.Path())
	env.clock.Advance(time.Hour)
	if again, err := env.alloc.Adopt(ctx, req); err != nil || again != l {
		t.Fatalf("second Adopt = %+v, %v; want %+v", again, err, l)
	}
	if after, _ := os.ReadFile(env.store.Path()); string(after) != string(before) {
		t.Error("adopting what the registry says rewrote it")
	}
	if _, err := env.alloc.Adopt(ctx, Request{Hostname: "x", Owner: "x", IP: addr("10.1.10.20"), VMID: 120}); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("Adopt outside the pool = %v, want ErrOutOfRange", err)
	}
}
