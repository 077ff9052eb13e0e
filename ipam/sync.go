package ipam

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/sirupsen/logrus"
)

// SyncReport is the drift between the registry and PVE found by Sync, in
// both directions. Without repair it is only a report: nothing was written.
type SyncReport struct {
	Pool string
	// Repaired: the registry was brought to PVE's state (Sync with repair).
	Repaired bool
	// Guests is how many PVE guests were looked at.
	Guests int
	// Added are addresses (and in-range VMIDs) PVE guests use that the
	// registry holds no active lease for; repair records them as assigned,
	// source "pve", with the owner and tenant of the guest's marker.
	Added []Lease
	// Missing are assigned leases whose VMID no PVE guest has; repair
	// releases them.
	Missing []Lease
	// Released are the leases repair releases (or would, without it):
	// the missing ones and those PVE contradicts.
	Released []Lease
	// Expired are reservations past their expiry; repair releases them.
	Expired []Lease
	// Conflicts are disagreements between a lease and PVE. PVE wins: repair
	// fixes every one it can (Fixed), and leaves an address configured on
	// several guests to the operator.
	Conflicts []Conflict
	// Unregistered are addresses the claimer (SDN IPAM) holds with no lease
	// here and no PVE guest; another controller's reservation in flight
	// looks the same, so they are reported only.
	Unregistered []netip.Addr
}

// InSync reports whether Sync found no drift at all.
func (r SyncReport) InSync() bool {
	return len(r.Added) == 0 && len(r.Missing) == 0 && len(r.Expired) == 0 &&
		len(r.Conflicts) == 0 && len(r.Unregistered) == 0
}

// Conflict is an address or VMID the registry and PVE disagree about.
type Conflict struct {
	IP     netip.Addr
	VMID   int
	Lease  *Lease  // the registry's side, if any
	Guests []Guest // PVE's side
	Reason string
	// Fixed: repair brought the registry to PVE's side.
	Fixed bool
}

// Sync compares the registry with PVE. Without repair it reports the drift
// and changes nothing, anywhere. With repair PVE wins: addresses on guests
// the registry does not know are recorded (with the owner from the guest's
// marker), leases whose guest is gone or that PVE contradicts are
// released, expired reservations are released, and a lease whose pod PVE
// shows with another owner takes the pod's.
func (a *Allocator) Sync(ctx context.Context, repair bool) (SyncReport, error) {
	guests, err := a.inv.Used(ctx)
	if err != nil {
		return SyncReport{}, fmt.Errorf("sync pool %s: list PVE guests: %w", a.pool.Name, err)
	}
	guests = slices.Clone(guests)
	slices.SortFunc(guests, func(x, y Guest) int { return cmp.Compare(x.VMID, y.VMID) })

	var rep SyncReport
	reconcile := func(reg *Registry) error {
		rep = SyncReport{Pool: a.pool.Name, Guests: len(guests), Repaired: repair}
		return a.reconcile(ctx, reg, guests, repair, &rep)
	}
	if repair {
		err = a.store.Update(ctx, reconcile)
	} else {
		var reg *Registry
		if reg, err = a.store.Load(ctx); err == nil {
			err = reconcile(reg) // a copy: never written back
		}
	}
	if err != nil {
		return SyncReport{}, fmt.Errorf("sync pool %s: %w", a.pool.Name, err)
	}
	a.log.WithFields(logrus.Fields{
		"guests": rep.Guests, "added": len(rep.Added), "missing": len(rep.Missing), "released": len(rep.Released),
		"expired": len(rep.Expired), "conflicts": len(rep.Conflicts), "unregistered": len(rep.Unregistered), "repair": repair,
	}).Info("ipam: compared with PVE")
	return rep, nil
}

// reconcile brings reg to PVE's state and reports each change, the same
// with or without repair: without, reg is a copy nobody writes, and the
// claimer is left alone.
func (a *Allocator) reconcile(ctx context.Context, reg *Registry, guests []Guest, repair bool, rep *SyncReport) error {
	now := a.now()
	if repair {
		rep.Expired = a.expire(ctx, reg, now)
	} else {
		for i := range reg.Leases {
			if l := &reg.Leases[i]; l.Expired(now) {
				l.State, l.Note, l.UpdatedAt = StateReleased, noteExpired, now
				rep.Expired = append(rep.Expired, *l)
			}
		}
	}
	guestsByAddr := map[netip.Addr][]Guest{}
	guestByVMID := map[int]Guest{}
	for _, g := range guests {
		guestByVMID[g.VMID] = g
		for _, ip := range g.Addrs {
			if a.pool.Allocatable(ip) {
				guestsByAddr[ip] = append(guestsByAddr[ip], g)
			}
		}
	}
	// Leases first, so a guest now using a released lease's address is
	// recorded in the same pass.
	for i := range reg.Leases {
		if err := a.syncLease(ctx, reg, i, guestByVMID, guestsByAddr, repair, now, rep); err != nil {
			return err
		}
	}
	for _, g := range guests {
		if !g.Unknown { // what an unreadable guest has is not known
			a.syncGuest(reg, g, guestsByAddr, now, rep)
		}
	}
	for _, ip := range sortedAddrs(guestsByAddr) {
		if gs := guestsByAddr[ip]; len(gs) > 1 {
			rep.Conflicts = append(rep.Conflicts, Conflict{IP: ip, Guests: gs,
				Reason: fmt.Sprintf("address %s is configured on %d PVE guests", ip, len(gs))})
		}
	}
	return a.syncClaimer(ctx, reg, guestsByAddr, now, rep)
}

// syncLease compares one active lease of the pool with PVE: its guest must
// exist, hold its address once assigned, and not be another owner's pod;
// its address must not be another guest's.
func (a *Allocator) syncLease(ctx context.Context, reg *Registry, i int, guestByVMID map[int]Guest, guestsByAddr map[netip.Addr][]Guest,
	repair bool, now time.Time, rep *SyncReport) error {
	l := &reg.Leases[i]
	if l.Pool != a.pool.Name || !l.Active(now) {
		return nil
	}
	g, exists := guestByVMID[l.VMID]
	release := func(note string) error {
		if repair && a.claimer != nil && l.IP.IsValid() {
			if err := a.claimer.Unclaim(ctx, l.IP); err != nil {
				return fmt.Errorf("unclaim %s of vmid %d: %w", l.IP, l.VMID, err)
			}
		}
		l.State, l.Note, l.UpdatedAt, l.ExpiresAt = StateReleased, note, now, time.Time{}
		rep.Released = append(rep.Released, *l)
		return nil
	}
	conflict := func(gs []Guest, reason string) {
		before := *l
		rep.Conflicts = append(rep.Conflicts, Conflict{IP: l.IP, VMID: l.VMID, Lease: &before, Guests: gs, Reason: reason, Fixed: repair})
	}
	switch {
	case l.State == StateAssigned && !exists:
		rep.Missing = append(rep.Missing, *l)
		return release(noteMissing)
	case l.IP.IsValid() && len(guestsByAddr[l.IP]) == 1 && guestsByAddr[l.IP][0].VMID != l.VMID:
		other := guestsByAddr[l.IP][0]
		conflict([]Guest{other}, fmt.Sprintf("address %s is the %s, but PVE %s uses it", l.IP, describeLease(*l), other))
		return release(fmt.Sprintf("PVE %s uses %s", other, l.IP))
	case !exists:
		return nil // a reservation whose clone has not happened yet
	case g.Unknown:
		return nil // its node is down: PVE cannot say otherwise
	case l.State == StateAssigned && l.IP.IsValid() && !slices.Contains(g.Addrs, l.IP):
		// A reservation's guest may still carry the template's address
		// while its create is in flight; only an assigned lease must match.
		conflict([]Guest{g}, fmt.Sprintf("registry gives vmid %d address %s, but PVE %s has %s", g.VMID, l.IP, g, fmtAddrs(g.Addrs)))
		return release(fmt.Sprintf("PVE %s has %s", g, fmtAddrs(g.Addrs)))
	case g.Owner != "" && (l.Owner != g.Owner || l.Hostname != g.Name):
		conflict([]Guest{g}, fmt.Sprintf("%s is the %s, but PVE %s is the pod of owner %s", leaseWhat(*l), describeLease(*l), g, g.Owner))
		l.Owner, l.Hostname, l.Tenant, l.UpdatedAt = g.Owner, g.Name, g.Tenant, now
	}
	return nil
}

func leaseWhat(l Lease) string {
	if l.IP.IsValid() {
		return "address " + l.IP.String()
	}
	return fmt.Sprintf("vmid %d", l.VMID)
}

// syncGuest records the addresses (or, without any, the in-range VMID) of
// one PVE guest that no active lease accounts for.
func (a *Allocator) syncGuest(reg *Registry, g Guest, guestsByAddr map[netip.Addr][]Guest, now time.Time, rep *SyncReport) {
	if activeIndex(reg, now, func(l Lease) bool { return l.Pool == a.pool.Name && l.VMID == g.VMID }) >= 0 {
		return
	}
	var addrs []netip.Addr
	for _, ip := range g.Addrs {
		if a.pool.Allocatable(ip) && len(guestsByAddr[ip]) == 1 &&
			activeIndex(reg, now, func(l Lease) bool { return l.Pool == a.pool.Name && l.IP == ip }) < 0 {
			addrs = append(addrs, ip)
		}
	}
	if len(addrs) == 0 && len(g.Addrs) == 0 && a.vmids.Contains(g.VMID) {
		addrs = []netip.Addr{{}} // the VMID alone
	}
	for _, ip := range addrs {
		l := Lease{
			Pool: a.pool.Name, IP: ip, VMID: g.VMID, Hostname: g.Name, Tenant: g.Tenant, Owner: g.Owner,
			State: StateAssigned, Source: SourcePVE, Note: noteFoundOnPVE,
			ReservedAt: now, UpdatedAt: now,
		}
		reg.Leases = append(dropSuperseded(reg.Leases, ip, g.VMID), l)
		rep.Added = append(rep.Added, l)
	}
}

// syncClaimer reports claimed addresses that nothing here accounts for.
func (a *Allocator) syncClaimer(ctx context.Context, reg *Registry, guestsByAddr map[netip.Addr][]Guest, now time.Time, rep *SyncReport) error {
	if a.claimer == nil {
		return nil
	}
	claimed, err := a.claimer.Claimed(ctx)
	if err != nil {
		return fmt.Errorf("list claimed addresses: %w", err)
	}
	slices.SortFunc(claimed, netip.Addr.Compare)
	for _, ip := range slices.Compact(claimed) {
		if !a.pool.Allocatable(ip) || len(guestsByAddr[ip]) > 0 {
			continue
		}
		if activeIndex(reg, now, func(l Lease) bool { return l.IP == ip }) < 0 {
			rep.Unregistered = append(rep.Unregistered, ip)
		}
	}
	return nil
}

func activeIndex(reg *Registry, now time.Time, match func(Lease) bool) int {
	for i, l := range reg.Leases {
		if l.Active(now) && match(l) {
			return i
		}
	}
	return -1
}

func sortedAddrs(m map[netip.Addr][]Guest) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for ip := range m {
		out = append(out, ip)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func fmtAddrs(as []netip.Addr) string {
	if len(as) == 0 {
		return "no static address"
	}
	return fmt.Sprint(as)
}
