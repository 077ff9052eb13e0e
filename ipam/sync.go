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

// SyncReport is the drift between the registry and PVE found by Sync.
type SyncReport struct {
	Pool string
	// Guests is how many PVE guests were looked at.
	Guests int
	// Added are addresses (and in-range VMIDs) used by PVE guests that the
	// registry did not know; they are now recorded as assigned, source "pve".
	Added []Lease
	// Missing are assigned leases whose VMID no PVE guest has.
	Missing []Lease
	// Released are the Missing leases released because repair was asked.
	Released []Lease
	// Expired are reservations that ran out and were released.
	Expired []Lease
	// Conflicts are disagreements Sync does not resolve by itself.
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
}

// Sync reconciles the registry with PVE: addresses on guests the registry
// does not know are recorded (source "pve"); assigned leases without a
// guest are reported and, with repair, released; anything contradictory is
// reported as a Conflict and left alone.
func (a *Allocator) Sync(ctx context.Context, repair bool) (SyncReport, error) {
	guests, err := a.inv.Used(ctx)
	if err != nil {
		return SyncReport{}, fmt.Errorf("sync pool %s: list PVE guests: %w", a.pool.Name, err)
	}
	guests = slices.Clone(guests)
	slices.SortFunc(guests, func(x, y Guest) int { return cmp.Compare(x.VMID, y.VMID) })

	var rep SyncReport
	err = a.store.Update(ctx, func(reg *Registry) error {
		rep = SyncReport{Pool: a.pool.Name, Guests: len(guests)}
		now := a.now()
		rep.Expired = a.expire(ctx, reg, now)

		guestsByAddr := map[netip.Addr][]Guest{}
		guestVMIDs := map[int]bool{}
		for _, g := range guests {
			guestVMIDs[g.VMID] = true
			for _, ip := range g.Addrs {
				if a.pool.Allocatable(ip) {
					guestsByAddr[ip] = append(guestsByAddr[ip], g)
				}
			}
		}
		// Release first, so a guest now using a released lease's address
		// is recorded in the same pass.
		if err := a.syncMissing(ctx, reg, guestVMIDs, repair, now, &rep); err != nil {
			return err
		}
		for _, g := range guests {
			a.syncGuest(reg, g, guestsByAddr, now, &rep)
		}
		for _, ip := range sortedAddrs(guestsByAddr) {
			if gs := guestsByAddr[ip]; len(gs) > 1 {
				rep.Conflicts = append(rep.Conflicts, Conflict{IP: ip, Guests: gs,
					Reason: fmt.Sprintf("address %s is configured on %d PVE guests", ip, len(gs))})
			}
		}
		return a.syncClaimer(ctx, reg, guestsByAddr, now, &rep)
	})
	if err != nil {
		return SyncReport{}, fmt.Errorf("sync pool %s: %w", a.pool.Name, err)
	}
	a.log.WithFields(logrus.Fields{
		"guests": rep.Guests, "added": len(rep.Added), "missing": len(rep.Missing), "released": len(rep.Released),
		"expired": len(rep.Expired), "conflicts": len(rep.Conflicts), "unregistered": len(rep.Unregistered),
	}).Info("ipam: synced with PVE")
	return rep, nil
}

// syncGuest compares one PVE guest with the registry.
func (a *Allocator) syncGuest(reg *Registry, g Guest, guestsByAddr map[netip.Addr][]Guest, now time.Time, rep *SyncReport) {
	var addrs []netip.Addr
	for _, ip := range g.Addrs {
		if a.pool.Allocatable(ip) {
			addrs = append(addrs, ip)
		}
	}
	if i := activeIndex(reg, now, func(l Lease) bool { return l.VMID == g.VMID }); i >= 0 {
		l := reg.Leases[i]
		// A reservation's guest may still carry the template's address
		// while the create is in flight; only an assigned lease must match.
		if l.State == StateAssigned && l.IP.IsValid() && !slices.Contains(addrs, l.IP) && l.Pool == a.pool.Name {
			rep.Conflicts = append(rep.Conflicts, Conflict{IP: l.IP, VMID: g.VMID, Lease: &l, Guests: []Guest{g},
				Reason: fmt.Sprintf("registry gives vmid %d address %s, but PVE %s has %s", g.VMID, l.IP, g, fmtAddrs(g.Addrs))})
		}
		return
	}
	if len(addrs) == 0 {
		if a.vmids.Contains(g.VMID) {
			a.addFromPVE(reg, g, netip.Addr{}, now, rep)
		}
		return
	}
	for _, ip := range addrs {
		if len(guestsByAddr[ip]) > 1 {
			continue // reported once as a duplicate address
		}
		if i := activeIndex(reg, now, func(l Lease) bool { return l.IP == ip }); i >= 0 {
			l := reg.Leases[i]
			rep.Conflicts = append(rep.Conflicts, Conflict{IP: ip, VMID: g.VMID, Lease: &l, Guests: []Guest{g},
				Reason: fmt.Sprintf("address %s is the %s, but PVE %s uses it", ip, describeLease(l), g)})
			continue
		}
		a.addFromPVE(reg, g, ip, now, rep)
	}
}

func (a *Allocator) addFromPVE(reg *Registry, g Guest, ip netip.Addr, now time.Time, rep *SyncReport) {
	l := Lease{
		Pool: a.pool.Name, IP: ip, VMID: g.VMID, Hostname: g.Name,
		State: StateAssigned, Source: SourcePVE, Note: noteFoundOnPVE,
		ReservedAt: now, UpdatedAt: now,
	}
	reg.Leases = append(dropSuperseded(reg.Leases, ip, g.VMID), l)
	rep.Added = append(rep.Added, l)
}

// syncMissing finds assigned leases whose guest is gone.
func (a *Allocator) syncMissing(ctx context.Context, reg *Registry, guestVMIDs map[int]bool, repair bool, now time.Time, rep *SyncReport) error {
	for i := range reg.Leases {
		l := &reg.Leases[i]
		if l.Pool != a.pool.Name || l.State != StateAssigned || guestVMIDs[l.VMID] {
			continue
		}
		rep.Missing = append(rep.Missing, *l)
		if !repair {
			continue
		}
		if a.claimer != nil && l.IP.IsValid() {
			if err := a.claimer.Unclaim(ctx, l.IP); err != nil {
				return fmt.Errorf("unclaim %s of missing vmid %d: %w", l.IP, l.VMID, err)
			}
		}
		l.State, l.Note, l.UpdatedAt = StateReleased, noteMissing, now
		rep.Released = append(rep.Released, *l)
	}
	return nil
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
