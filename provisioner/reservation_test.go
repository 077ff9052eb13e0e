package provisioner_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pvetest"
)

// TestReleaseAndRenewTouchOnlyTheirReservation: what the service reserves
// for a request it then refuses is given back, and kept alive while its
// job waits; a lease a pod holds, another pair, or an expired reservation
// is left alone.
func TestReleaseAndRenewTouchOnlyTheirReservation(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	api := pvetest.New()
	alloc, err := ipam.New(ipam.NewFileStore(filepath.Join(t.TempDir(), "ipam.json")), ipam.DefaultPool(), ipam.DefaultVMIDs(),
		provisioner.Inventory{API: api}, ipam.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	p := provisioner.New(api, provisioner.Options{Addresses: provisioner.IPAM{Allocator: alloc}, Now: clock})
	lease := func(hostname string) ipam.Lease {
		t.Helper()
		leases, err := alloc.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range leases {
			if l.Hostname == hostname && l.State != ipam.StateReleased {
				return l
			}
		}
		return ipam.Lease{}
	}

	vmid, ip, err := p.Reserve(ctx, "web", "acme")
	if err != nil {
		t.Fatal(err)
	}
	// Another pair, another tenant: not this reservation.
	must(t, p.Release(ctx, "web", "acme", vmid+1, ip))
	must(t, p.Release(ctx, "web", "other", vmid, ip))
	if l := lease("web"); l.State != ipam.StateReserved {
		t.Fatalf("a release of another pair or owner touched web's reservation: %+v", l)
	}
	// Renewing moves the expiry on.
	before := lease("web").ExpiresAt
	now = now.Add(10 * time.Minute)
	must(t, p.Renew(ctx, "web", "acme", vmid, ip))
	if after := lease("web").ExpiresAt; !after.After(before) {
		t.Errorf("renew left the expiry at %s (was %s)", after, before)
	}
	must(t, p.Release(ctx, "web", "acme", vmid, ip))
	if l := lease("web"); l.State != "" {
		t.Fatalf("web's reservation was not released: %+v", l)
	}

	// A pod holds its lease: a release for its pair is refused silently.
	vmid, ip, err = p.Reserve(ctx, "shop", "acme")
	if err != nil {
		t.Fatal(err)
	}
	l := lease("shop")
	if _, err := alloc.Assign(ctx, l); err != nil {
		t.Fatal(err)
	}
	must(t, p.Release(ctx, "shop", "acme", vmid, ip))
	must(t, p.Renew(ctx, "shop", "acme", vmid, ip))
	if l := lease("shop"); l.State != ipam.StateAssigned {
		t.Errorf("the pod's lease after release and renew: %+v", l)
	}

	// An expired reservation is not renewed: the create's reserve step
	// takes its pair again if it is still free.
	vmid, ip, err = p.Reserve(ctx, "late", "acme")
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(ipam.DefaultReservationTTL + time.Minute)
	must(t, p.Renew(ctx, "late", "acme", vmid, ip))
	if l := lease("late"); l.State == ipam.StateReserved && l.ExpiresAt.After(now) {
		t.Errorf("an expired reservation was renewed: %+v", l)
	}
}
