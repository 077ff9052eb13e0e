package ipam

import (
	"context"
	"net/netip"
	"strings"
	"testing"
)

func TestSyncBothDirections(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, DefaultPool(), DefaultVMIDs())

	gone := env.reserve(t, Request{Hostname: "gone", Owner: "job-1"})   // .91/9101, guest destroyed by hand
	alive := env.reserve(t, Request{Hostname: "alive", Owner: "job-2"}) // .92/9102
	moved := env.reserve(t, Request{Hostname: "moved", Owner: "job-3"}) // .93/9103, address changed by hand
	inflight := env.reserve(t, Request{Hostname: "inflight", Owner: "job-4"})
	for _, l := range []Lease{gone, alive, moved} {
		if _, err := env.alloc.Assign(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	env.inv.set(
		Guest{VMID: 9000, Type: "lxc", Name: "template", Addrs: []netip.Addr{addr("10.1.10.90")}}, // reserved: ignored
		Guest{VMID: 120, Type: "qemu", Name: "infra", Addrs: []netip.Addr{addr("10.1.10.20")}},    // outside the range: ignored
		Guest{VMID: 9102, Type: "lxc", Name: "alive", Addrs: []netip.Addr{addr("10.1.10.92")}},    // matches
		Guest{VMID: 9103, Type: "lxc", Name: "moved", Addrs: []netip.Addr{addr("10.1.10.150")}},   // conflict
		Guest{VMID: 9104, Type: "lxc", Name: "inflight", Addrs: []netip.Addr{addr("10.1.10.90")}}, // still on the template address: fine
		Guest{VMID: 9300, Type: "lxc", Name: "by-hand", Addrs: []netip.Addr{addr("10.1.10.120")}}, // PVE only
		Guest{VMID: 9301, Type: "qemu", Name: "dhcp-vm"},                                          // PVE only, vmid only
		Guest{VMID: 500, Type: "qemu", Name: "squatter", Addrs: []netip.Addr{addr("10.1.10.95")}}, // PVE only
		Guest{VMID: 501, Type: "lxc", Name: "dup-a", Addrs: []netip.Addr{addr("10.1.10.160")}},    // duplicate address
		Guest{VMID: 502, Type: "lxc", Name: "dup-b", Addrs: []netip.Addr{addr("10.1.10.160")}},    // duplicate address
		Guest{VMID: 503, Type: "lxc", Name: "on-lease", Addrs: []netip.Addr{addr("10.1.10.91")}},  // on gone's address
		Guest{VMID: 504, Type: "lxc", Name: "on-inflight", Addrs: []netip.Addr{inflight.IP}},      // on a reservation's address
		Guest{VMID: 505, Type: "lxc", Name: "multi", Addrs: []netip.Addr{addr("10.1.10.170"), addr("10.1.10.171")}},
	)

	rep, err := env.alloc.Sync(ctx, false)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if rep.InSync() || rep.Guests != 13 {
		t.Fatalf("report = %+v", rep)
	}
	added := map[string]int{}
	for _, l := range rep.Added {
		if l.State != StateAssigned || l.Source != SourcePVE {
			t.Errorf("added lease %+v is not assigned/pve", l)
		}
		added[l.IP.String()] = l.VMID
	}
	wantAdded := map[string]int{"10.1.10.120": 9300, "invalid IP": 9301, "10.1.10.95": 500, "10.1.10.170": 505, "10.1.10.171": 505}
	if len(added) != len(wantAdded) {
		t.Errorf("added = %v, want %v", added, wantAdded)
	}
	for ip, vmid := range wantAdded {
		if added[ip] != vmid {
			t.Errorf("added[%s] = %d, want %d (all: %v)", ip, added[ip], vmid, added)
		}
	}
	if len(rep.Missing) != 1 || rep.Missing[0].IP != gone.IP || len(rep.Released) != 0 {
		t.Errorf("missing = %+v, released = %+v; want only %s, none released", rep.Missing, rep.Released, gone.IP)
	}
	wantConflicts := []string{
		"registry gives vmid 9103 address 10.1.10.93, but PVE lxc 9103 (moved) has [10.1.10.150]",
		"address 10.1.10.91 is the assigned lease of gone",
		"address " + inflight.IP.String() + " is the reserved lease of inflight",
		"address 10.1.10.160 is configured on 2 PVE guests",
	}
	if len(rep.Conflicts) != len(wantConflicts) {
		t.Errorf("conflicts = %v, want %d", rep.Conflicts, len(wantConflicts))
	}
	for _, want := range wantConflicts {
		found := false
		for _, c := range rep.Conflicts {
			found = found || strings.Contains(c.Reason, want)
		}
		if !found {
			t.Errorf("no conflict %q in %v", want, rep.Conflicts)
		}
	}

	// The added addresses are now in the registry and never handed out.
	ip, vmid, err := env.alloc.Next(ctx)
	if err != nil || ip != addr("10.1.10.96") || vmid != 9105 {
		t.Fatalf("Next after sync = %s/%d, %v", ip, vmid, err)
	}

	// Repair releases the lease whose guest is gone, and the guest that took
	// its address by hand is recorded in the same pass.
	rep, err = env.alloc.Sync(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Released) != 1 || rep.Released[0].IP != gone.IP || rep.Released[0].State != StateReleased || rep.Released[0].Note != noteMissing {
		t.Fatalf("repair released = %+v", rep.Released)
	}
	if len(rep.Added) != 1 || rep.Added[0].IP != gone.IP || rep.Added[0].VMID != 503 {
		t.Fatalf("repair added = %+v, want %s on vmid 503", rep.Added, gone.IP)
	}
	// Only the conflicts nobody fixed remain.
	rep, err = env.alloc.Sync(ctx, true)
	if err != nil || len(rep.Missing) != 0 || len(rep.Added) != 0 || len(rep.Conflicts) != 3 {
		t.Fatalf("third sync = %+v, %v", rep, err)
	}
	leases, _ := env.alloc.List(ctx)
	for _, l := range leases {
		if l.IP == gone.IP && l.VMID != 503 {
			t.Fatalf("registry still holds the superseded lease %+v", l)
		}
	}
}

func TestSyncCleanAndExpired(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, DefaultPool(), DefaultVMIDs())
	l := env.reserve(t, Request{Hostname: "web1", Owner: "job-1"})
	if _, err := env.alloc.Assign(ctx, l); err != nil {
		t.Fatal(err)
	}
	env.inv.set(Guest{VMID: l.VMID, Name: "web1", Addrs: []netip.Addr{l.IP}})
	rep, err := env.alloc.Sync(ctx, false)
	if err != nil || !rep.InSync() {
		t.Fatalf("Sync of a matching registry = %+v, %v", rep, err)
	}

	stale := env.reserve(t, Request{Hostname: "web2", Owner: "job-2"})
	env.clock.Advance(DefaultReservationTTL)
	rep, err = env.alloc.Sync(ctx, false)
	if err != nil || len(rep.Expired) != 1 || rep.Expired[0].IP != stale.IP || rep.Expired[0].Note != noteExpired || rep.InSync() {
		t.Fatalf("Sync with a stale reservation = %+v, %v", rep, err)
	}
	if got := rep.Expired[0].UpdatedAt; !got.Equal(env.clock.Now()) {
		t.Fatalf("expired lease updated at %s, want %s", got, env.clock.Now())
	}
}
