package ipam

import (
	"context"
	"maps"
	"net/netip"
	"os"
	"reflect"
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

	before, err := os.ReadFile(env.store.Path())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := env.alloc.Sync(ctx, false)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if rep.InSync() || rep.Guests != 13 || rep.Repaired {
		t.Fatalf("report = %+v", rep)
	}
	if after, _ := os.ReadFile(env.store.Path()); string(after) != string(before) {
		t.Fatal("Sync without repair wrote the registry")
	}
	// PVE → registry: what guests use and no lease accounts for. The
	// addresses of gone, moved and inflight are there because PVE's guests
	// hold them (503 on gone's, 504 on inflight's) or moved sits elsewhere.
	added := map[string]int{}
	for _, l := range rep.Added {
		if l.State != StateAssigned || l.Source != SourcePVE {
			t.Errorf("added lease %+v is not assigned/pve", l)
		}
		added[l.IP.String()] = l.VMID
	}
	wantAdded := map[string]int{"10.1.10.120": 9300, "invalid IP": 9301, "10.1.10.95": 500, "10.1.10.170": 505, "10.1.10.171": 505,
		"10.1.10.91": 503, "10.1.10.150": 9103, inflight.IP.String(): 504}
	if !maps.Equal(added, wantAdded) {
		t.Errorf("added = %v, want %v", added, wantAdded)
	}
	// Registry → PVE: the assigned lease whose guest is gone.
	if len(rep.Missing) != 1 || rep.Missing[0].IP != gone.IP {
		t.Errorf("missing = %+v, want only %s", rep.Missing, gone.IP)
	}
	released := map[string]string{}
	for _, l := range rep.Released {
		released[l.IP.String()] = l.Note
	}
	wantReleased := map[string]string{gone.IP.String(): noteMissing, moved.IP.String(): "PVE lxc 9103 (moved) has [10.1.10.150]",
		inflight.IP.String(): "PVE lxc 504 (on-inflight) uses " + inflight.IP.String()}
	if !maps.Equal(released, wantReleased) {
		t.Errorf("would release %v, want %v", released, wantReleased)
	}
	wantConflicts := []string{
		"registry gives vmid 9103 address 10.1.10.93, but PVE lxc 9103 (moved) has [10.1.10.150]",
		"address " + inflight.IP.String() + " is the reserved lease of inflight",
		"address 10.1.10.160 is configured on 2 PVE guests",
	}
	checkConflicts(t, rep, wantConflicts, false)

	// What PVE uses is never handed out, report or not; the VMID of the
	// pod PVE no longer has is free again.
	ip, vmid, err := env.alloc.Next(ctx)
	if err != nil || ip != addr("10.1.10.93") || vmid != 9101 {
		t.Fatalf("Next after sync = %s/%d, %v", ip, vmid, err)
	}

	// Repair does what the report said, in one pass.
	rep2, err := env.alloc.Sync(ctx, true)
	if err != nil || !rep2.Repaired {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rep2.Added, rep.Added) || !reflect.DeepEqual(rep2.Released, rep.Released) {
		t.Fatalf("repair did other than the report said:\nadded %+v\nreleased %+v", rep2.Added, rep2.Released)
	}
	checkConflicts(t, rep2, wantConflicts, true)
	// Only the duplicate address, which the operator must fix in PVE, remains.
	rep3, err := env.alloc.Sync(ctx, true)
	if err != nil || len(rep3.Missing) != 0 || len(rep3.Added) != 0 || len(rep3.Released) != 0 || len(rep3.Conflicts) != 1 {
		t.Fatalf("third sync = %+v, %v", rep3, err)
	}
	leases, _ := env.alloc.List(ctx)
	for _, l := range leases {
		if l.IP == gone.IP && l.VMID != 503 && l.State != StateReleased {
			t.Fatalf("registry still holds the superseded lease %+v", l)
		}
	}
}

func checkConflicts(t *testing.T, rep SyncReport, want []string, fixed bool) {
	t.Helper()
	if len(rep.Conflicts) != len(want) {
		t.Errorf("conflicts = %v, want %d", rep.Conflicts, len(want))
	}
	for _, w := range want {
		found := false
		for _, c := range rep.Conflicts {
			if strings.Contains(c.Reason, w) {
				found = true
				if c.Fixed != (fixed && c.Lease != nil) {
					t.Errorf("conflict %q fixed = %v", w, c.Fixed)
				}
			}
		}
		if !found {
			t.Errorf("no conflict %q in %v", w, rep.Conflicts)
		}
	}
}

// TestSyncTakesTheOwnerFromThePod: a lease recorded without an owner (an
// earlier sync) or with another one, of a pod whose marker names its
// owner, is drift; repair gives the lease the pod's owner, so the pod's
// own create finds it again.
func TestSyncTakesTheOwnerFromThePod(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, DefaultPool(), DefaultVMIDs())
	pod := Guest{VMID: 9201, Type: "lxc", Name: "migra-highmem-01", Addrs: []netip.Addr{addr("10.1.10.101")}, Owner: "cloudpods//migra-highmem-01"}
	env.inv.set(pod)
	// Recorded from PVE by a sync that knew no owner.
	if err := env.store.Update(ctx, func(reg *Registry) error {
		reg.Leases = append(reg.Leases, Lease{Pool: "default", IP: addr("10.1.10.101"), VMID: 9201, Hostname: "migra-highmem-01",
			State: StateAssigned, Source: SourcePVE})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rep, err := env.alloc.Sync(ctx, false)
	if err != nil || len(rep.Conflicts) != 1 || !strings.Contains(rep.Conflicts[0].Reason, "is the pod of owner cloudpods//migra-highmem-01") {
		t.Fatalf("report = %+v, %v", rep, err)
	}
	if _, err := env.alloc.Sync(ctx, true); err != nil {
		t.Fatal(err)
	}
	leases, _ := env.alloc.List(ctx)
	if len(leases) != 1 || leases[0].Owner != pod.Owner || leases[0].State != StateAssigned {
		t.Fatalf("leases after repair = %+v", leases)
	}
	if rep, _ := env.alloc.Sync(ctx, false); !rep.InSync() {
		t.Fatalf("not in sync after repair: %+v", rep)
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
