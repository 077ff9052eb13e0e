package ipam

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// DefaultReservationTTL is how long a reservation holds its address and VMID
// before the pod must be assigned; a crashed create frees them after this.
const DefaultReservationTTL = 15 * time.Minute

// Notes recorded on leases.
const (
	noteExpired    = "reservation expired"
	noteReleased   = "released"
	noteMissing    = "no guest in PVE"
	noteFoundOnPVE = "found on PVE guest"
	noteAdopted    = "adopted from PVE"
)

// Claimer is an authority outside the registry that must agree before an
// address is handed out, for controllers that do not share a registry file.
// SDNClaimer is the one over PVE's SDN IPAM.
type Claimer interface {
	// Claim takes ip. An error matching ErrAddressInUse means someone else
	// holds it and the allocator moves on to the next address.
	Claim(ctx context.Context, ip netip.Addr, mac string) error
	// Unclaim gives ip back; an address not held is not an error.
	Unclaim(ctx context.Context, ip netip.Addr) error
	// Claimed lists every address held, by anyone.
	Claimed(ctx context.Context) ([]netip.Addr, error)
}

// Allocator hands out leases from one pool and VMID range.
type Allocator struct {
	store   Store
	pool    Pool
	vmids   VMIDRange
	inv     Inventory
	claimer Claimer
	now     func() time.Time
	ttl     time.Duration
	log     logrus.FieldLogger
}

// Option configures an Allocator.
type Option func(*Allocator)

// WithClock replaces time.Now, for expiry tests.
func WithClock(now func() time.Time) Option { return func(a *Allocator) { a.now = now } }

// WithReservationTTL sets how long a reservation lasts (DefaultReservationTTL).
func WithReservationTTL(d time.Duration) Option { return func(a *Allocator) { a.ttl = d } }

// WithLogger sets the logger; the default discards.
func WithLogger(l logrus.FieldLogger) Option { return func(a *Allocator) { a.log = l } }

// WithClaimer makes every address also be claimed from c (the pve-sdn
// backend) before it is handed out, and unclaimed when it is released.
func WithClaimer(c Claimer) Option { return func(a *Allocator) { a.claimer = c } }

// New returns an allocator for pool and vmids over store, reconciling with inv.
func New(store Store, pool Pool, vmids VMIDRange, inv Inventory, opts ...Option) (*Allocator, error) {
	if store == nil {
		return nil, errors.New("ipam: no registry store")
	}
	if inv == nil {
		return nil, errors.New("ipam: no PVE inventory; addresses cannot be handed out without checking PVE")
	}
	if err := pool.Validate(); err != nil {
		return nil, err
	}
	if err := vmids.Validate(); err != nil {
		return nil, fmt.Errorf("pool %s: %w", pool.Name, err)
	}
	discard := logrus.New()
	discard.SetOutput(io.Discard)
	a := &Allocator{store: store, pool: pool, vmids: vmids, inv: inv, now: time.Now, ttl: DefaultReservationTTL, log: discard}
	for _, o := range opts {
		o(a)
	}
	if a.ttl <= 0 {
		return nil, fmt.Errorf("ipam: reservation TTL %s must be positive", a.ttl)
	}
	a.log = a.log.WithField("pool", pool.Name)
	return a, nil
}

// Pool is the allocator's pool.
func (a *Allocator) Pool() Pool { return a.pool }

// VMIDs is the allocator's VMID range.
func (a *Allocator) VMIDs() VMIDRange { return a.vmids }

// Request asks for a lease.
type Request struct {
	Hostname string
	Tenant   string
	// Owner is the job or controller asking. Reserve is idempotent per
	// Owner+Hostname: asking again returns the same lease.
	Owner string
	// IP is the address wanted; zero means the next free one.
	IP netip.Addr
	// VMID is the VMID wanted; 0 means the next free one.
	VMID int
	// MAC is passed to the claimer (PVE's SDN IPAM records it); optional.
	MAC string
	// Guests are PVE's guests as the caller has just read them (a create's
	// preflight did); nil means ask the Inventory.
	Guests []Guest
	// OwnVMID: VMID is the guest's own, chosen by whoever makes it (ct
	// create, a VM), not one this pool hands out: the VMID range does not
	// apply, and the guest may hold several addresses — its other leases
	// (same owner, hostname and VMID) are its own, not in use against it.
	OwnVMID bool
}

func (r Request) keyed() bool { return r.Owner != "" || r.Hostname != "" }

// sibling reports whether l is another address of the guest an OwnVMID
// request asks for.
func (r Request) sibling(l Lease) bool {
	return r.OwnVMID && r.keyed() && l.Owner == r.Owner && l.Hostname == r.Hostname && l.VMID == r.VMID && l.IP != r.IP
}

// Reserve hands out an address and a VMID, both free in the registry and on
// every PVE guest. Explicit ones are checked and taken, or refused with
// ErrOutOfRange, ErrAddressInUse or ErrVMIDInUse. If the owner and hostname
// already hold a lease it is returned (a reservation's expiry is renewed);
// if their reservation expired, its address and VMID are preferred.
//
// PVE decides what is in use: a guest's VMID and configured addresses, and
// the reservations of creates in flight. An assigned lease whose guest PVE
// no longer has blocks nothing (ip sync reports it); the requester's own
// guest (its marker names req.Owner, at req.VMID) blocks nothing either, so
// a pod PVE has gets its lease back from an empty registry.
func (a *Allocator) Reserve(ctx context.Context, req Request) (Lease, error) {
	if err := a.checkRange(req); err != nil {
		return Lease{}, fmt.Errorf("reserve %s in pool %s: %w", req.Hostname, a.pool.Name, err)
	}
	guests, err := a.guests(ctx, req)
	if err != nil {
		return Lease{}, fmt.Errorf("reserve %s in pool %s: %w", req.Hostname, a.pool.Name, err)
	}
	var lease Lease
	var claimed netip.Addr
	err = a.store.Update(ctx, func(reg *Registry) error {
		now := a.now()
		a.expire(ctx, reg, now)
		l, i, err := a.choose(ctx, reg, req, guests, now, true)
		if err != nil {
			return err
		}
		if i >= 0 {
			a.renew(&reg.Leases[i], now)
			lease = reg.Leases[i]
			return nil
		}
		claimed = l.IP
		l.State, l.Source = StateReserved, SourceCloudpod
		l.ReservedAt, l.UpdatedAt, l.ExpiresAt = now, now, now.Add(a.ttl)
		lease = l
		reg.Leases = append(dropSuperseded(reg.Leases, l.IP, l.VMID), l)
		return nil
	})
	if err != nil {
		a.unclaimUnrecorded(ctx, claimed)
		return Lease{}, fmt.Errorf("reserve %s in pool %s: %w", req.Hostname, a.pool.Name, err)
	}
	a.log.WithFields(logrus.Fields{"ip": lease.IP, "vmid": lease.VMID, "hostname": lease.Hostname, "owner": lease.Owner}).Info("ipam: reserved")
	return lease, nil
}

// choose is what Reserve hands out for req at now: the index of the lease
// of req's owner and hostname that answers it, or a new lease (index -1)
// with the address and VMID picked, claimed when claim is set (Reserve)
// and only looked at when not (Peek).
func (a *Allocator) choose(ctx context.Context, reg *Registry, req Request, guests []Guest, now time.Time, claim bool) (Lease, int, error) {
	if i, ok := a.findKey(reg, req, now); i >= 0 {
		if !ok {
			l := reg.Leases[i]
			return Lease{}, -1, fmt.Errorf("owner %q hostname %q already hold %s vmid %d for a create in flight: %w", l.Owner, l.Hostname, l.IP, l.VMID, ErrLeaseConflict)
		}
		return reg.Leases[i], i, nil
	}
	used, err := a.occupancy(ctx, reg, guests, now, req)
	if err != nil {
		return Lease{}, -1, err
	}
	prev := a.previous(reg, req, now)
	vmid, err := a.pickVMID(req, used, prev)
	if err != nil {
		return Lease{}, -1, err
	}
	var ip netip.Addr
	if claim {
		ip, err = a.pickIP(ctx, req, used, prev)
	} else {
		ip, err = a.freeIP(req, used, prev)
	}
	if err != nil {
		return Lease{}, -1, err
	}
	return Lease{Pool: a.pool.Name, IP: ip, VMID: vmid, Hostname: req.Hostname, Tenant: req.Tenant, Owner: req.Owner, MAC: req.MAC}, -1, nil
}

// renew extends a reservation handed out again.
func (a *Allocator) renew(l *Lease, now time.Time) {
	if l.State == StateReserved {
		l.ExpiresAt = now.Add(a.ttl)
		l.UpdatedAt = now
	}
}

// checkRange refuses an explicit address or VMID outside what the pool
// hands out.
func (a *Allocator) checkRange(req Request) error {
	if req.IP.IsValid() && !a.pool.Allocatable(req.IP) {
		return fmt.Errorf("address %s is not allocatable in pool %s (range %s-%s, gateway and reserved excluded): %w",
			req.IP, a.pool.Name, a.pool.First, a.pool.Last, ErrOutOfRange)
	}
	if req.VMID != 0 && !req.OwnVMID && !a.vmids.Contains(req.VMID) {
		return fmt.Errorf("vmid %d is outside %s: %w", req.VMID, a.vmids, ErrOutOfRange)
	}
	return nil
}

// guests are PVE's guests: the request's own view, or the Inventory's.
func (a *Allocator) guests(ctx context.Context, req Request) ([]Guest, error) {
	if req.Guests != nil {
		return req.Guests, nil
	}
	guests, err := a.inv.Used(ctx)
	if err != nil {
		return nil, fmt.Errorf("list PVE guests: %w", err)
	}
	return guests, nil
}

// Assign marks the lease's pod as created; the lease stops expiring. A
// reservation that expired is taken back if nobody has its address or VMID.
func (a *Allocator) Assign(ctx context.Context, lease Lease) (Lease, error) {
	var out Lease
	err := a.store.Update(ctx, func(reg *Registry) error {
		now := a.now()
		i := a.findLease(reg, lease)
		if i < 0 {
			return fmt.Errorf("%s vmid %d: %w", lease.IP, lease.VMID, ErrNotFound)
		}
		l := &reg.Leases[i]
		expiredAway := l.State == StateReleased && l.Note == noteExpired
		if l.State == StateReleased && !expiredAway {
			return fmt.Errorf("%s vmid %d was released: %w", lease.IP, lease.VMID, ErrNotFound)
		}
		if expiredAway && a.claimer != nil {
			if err := a.claimer.Claim(ctx, l.IP, l.MAC); err != nil {
				return fmt.Errorf("take back expired %s: %w", l.IP, err)
			}
		}
		l.State, l.Note, l.ExpiresAt, l.UpdatedAt = StateAssigned, "", time.Time{}, now
		out = *l
		a.expire(ctx, reg, now)
		return nil
	})
	if err != nil {
		return Lease{}, fmt.Errorf("assign in pool %s: %w", a.pool.Name, err)
	}
	a.log.WithFields(logrus.Fields{"ip": out.IP, "vmid": out.VMID, "hostname": out.Hostname}).Info("ipam: assigned")
	return out, nil
}

// Adopt records that PVE's guest req.VMID, configured with req.IP, is the
// pod of req's owner and hostname: the registry follows PVE. The lease is
// assigned at once; any other lease naming that address or VMID, and any
// reservation of the same owner and hostname (an abandoned attempt), is
// released (its note says which guest PVE shows holding them), whatever
// the registry held (nothing, a released lease, one recorded from PVE
// without an owner, a lease of another owner). Adopting what the registry
// already says changes nothing. An address outside the pool is refused
// with ErrOutOfRange: the pool does not record it.
func (a *Allocator) Adopt(ctx context.Context, req Request) (Lease, error) {
	if !req.IP.IsValid() || req.VMID == 0 {
		return Lease{}, fmt.Errorf("adopt %s in pool %s: an address and a VMID are needed", req.Hostname, a.pool.Name)
	}
	if !a.pool.Allocatable(req.IP) {
		return Lease{}, fmt.Errorf("adopt %s in pool %s: address %s is not allocatable (range %s-%s): %w", req.Hostname, a.pool.Name, req.IP, a.pool.First, a.pool.Last, ErrOutOfRange)
	}
	var out Lease
	err := a.store.Update(ctx, func(reg *Registry) error {
		now := a.now()
		keep := -1
		for i := range reg.Leases {
			l := &reg.Leases[i]
			sameKey := req.keyed() && l.Owner == req.Owner && l.Hostname == req.Hostname && l.State == StateReserved
			if l.Pool != a.pool.Name || (l.IP != req.IP && l.VMID != req.VMID && !sameKey) || l.State == StateReleased || req.sibling(*l) {
				continue
			}
			if keep < 0 && l.IP == req.IP && l.VMID == req.VMID && l.Owner == req.Owner && l.Hostname == req.Hostname {
				keep = i
				continue
			}
			l.State, l.UpdatedAt, l.ExpiresAt = StateReleased, now, time.Time{}
			l.Note = fmt.Sprintf("superseded: PVE guest %d with %s is %s's", req.VMID, req.IP, req.Hostname)
		}
		if keep < 0 {
			if a.claimer != nil {
				if err := a.claimer.Claim(ctx, req.IP, req.MAC); err != nil && !errors.Is(err, ErrAddressInUse) {
					return err
				}
			}
			out = Lease{Pool: a.pool.Name, IP: req.IP, VMID: req.VMID, Hostname: req.Hostname, Tenant: req.Tenant, Owner: req.Owner, MAC: req.MAC,
				State: StateAssigned, Source: SourceCloudpod, Note: noteAdopted, ReservedAt: now, UpdatedAt: now}
			reg.Leases = append(dropSuperseded(reg.Leases, req.IP, req.VMID), out)
			return nil
		}
		l := &reg.Leases[keep]
		if l.State != StateAssigned {
			l.State, l.Note, l.ExpiresAt, l.UpdatedAt = StateAssigned, "", time.Time{}, now
		}
		out = *l
		return nil
	})
	if err != nil {
		return Lease{}, fmt.Errorf("adopt %s in pool %s: %w", req.Hostname, a.pool.Name, err)
	}
	a.log.WithFields(logrus.Fields{"ip": out.IP, "vmid": out.VMID, "hostname": out.Hostname, "owner": out.Owner}).Info("ipam: adopted")
	return out, nil
}

// Ref names a lease by address or by VMID.
type Ref struct {
	IP   netip.Addr
	VMID int
}

// ParseRef reads "10.1.10.95" or "9105".
func ParseRef(s string) (Ref, error) {
	s = strings.TrimSpace(s)
	if ip, err := netip.ParseAddr(s); err == nil {
		return Ref{IP: ip}, nil
	}
	if id, err := strconv.Atoi(s); err == nil && id > 0 {
		return Ref{VMID: id}, nil
	}
	return Ref{}, fmt.Errorf("%q is neither an IPv4 address nor a VMID", s)
}

func (r Ref) String() string {
	if r.IP.IsValid() {
		return r.IP.String()
	}
	return "vmid " + strconv.Itoa(r.VMID)
}

func (r Ref) matches(l Lease) bool {
	return (r.IP.IsValid() && l.IP == r.IP) || (r.VMID != 0 && l.VMID == r.VMID)
}

// Release frees the leases of this pool that ref names (a VMID may hold
// several addresses). Releasing what is already released is not an error.
func (a *Allocator) Release(ctx context.Context, ref Ref) ([]Lease, error) {
	var out []Lease
	err := a.store.Update(ctx, func(reg *Registry) error {
		out = nil
		now := a.now()
		found := false
		for i := range reg.Leases {
			l := &reg.Leases[i]
			if l.Pool != a.pool.Name || !ref.matches(*l) {
				continue
			}
			found = true
			if l.State == StateReleased {
				continue
			}
			if a.claimer != nil && l.IP.IsValid() {
				if err := a.claimer.Unclaim(ctx, l.IP); err != nil {
					return fmt.Errorf("unclaim %s: %w", l.IP, err)
				}
			}
			l.State, l.Note, l.UpdatedAt = StateReleased, noteReleased, now
			out = append(out, *l)
		}
		if !found {
			return fmt.Errorf("%s: %w", ref, ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("release %s in pool %s: %w", ref, a.pool.Name, err)
	}
	for _, l := range out {
		a.log.WithFields(logrus.Fields{"ip": l.IP, "vmid": l.VMID, "hostname": l.Hostname}).Info("ipam: released")
	}
	return out, nil
}

// Next returns the address and VMID Reserve would hand out now, without
// reserving them. Another caller may take them before you do.
func (a *Allocator) Next(ctx context.Context) (netip.Addr, int, error) {
	l, err := a.peek(ctx, Request{})
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("next in pool %s: %w", a.pool.Name, err)
	}
	return l.IP, l.VMID, nil
}

// Peek returns the lease Reserve would hand out for req now, without
// reserving (or, with a claimer, claiming) anything: the active lease of
// req's owner and hostname if they hold one, else the address and VMID
// Reserve would pick, with the same refusals. A dry run tells from it what
// a create would get; another caller may take it first.
func (a *Allocator) Peek(ctx context.Context, req Request) (Lease, error) {
	l, err := a.peek(ctx, req)
	if err != nil {
		return Lease{}, fmt.Errorf("reserve %s in pool %s: %w", req.Hostname, a.pool.Name, err)
	}
	return l, nil
}

func (a *Allocator) peek(ctx context.Context, req Request) (Lease, error) {
	if err := a.checkRange(req); err != nil {
		return Lease{}, err
	}
	guests, err := a.guests(ctx, req)
	if err != nil {
		return Lease{}, err
	}
	reg, err := a.store.Load(ctx)
	if err != nil {
		return Lease{}, err
	}
	l, _, err := a.choose(ctx, reg, req, guests, a.now(), false)
	if err != nil {
		return Lease{}, err
	}
	if l.State == "" {
		l.State, l.Source = StateReserved, SourceCloudpod
	}
	return l, nil
}

// freeIP is the address Reserve would take, without claiming it: the
// explicit one if free, else prev's when free, else the lowest free one.
func (a *Allocator) freeIP(req Request, used inUse, prev *Lease) (netip.Addr, error) {
	if req.IP.IsValid() {
		if holder, taken := used.addrs[req.IP]; taken {
			return netip.Addr{}, &InUseError{What: "address " + req.IP.String(), Holder: holder}
		}
		return req.IP, nil
	}
	for _, ip := range a.candidates(prev) {
		if _, taken := used.addrs[ip]; !taken {
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no free address in %s-%s: %w", a.pool.First, a.pool.Last, ErrPoolExhausted)
}

// candidates are the addresses in the order Reserve tries them: prev's
// first (a re-run gets its address back), then the pool's in order.
func (a *Allocator) candidates(prev *Lease) []netip.Addr {
	var out []netip.Addr
	if prev != nil && a.pool.Allocatable(prev.IP) {
		out = append(out, prev.IP)
	}
	for ip := range a.pool.addrs {
		out = append(out, ip)
	}
	return out
}

// List returns every lease in the registry, all pools, ordered by address.
// Reservations past their expiry still read "reserved"; Lease.Expired tells.
func (a *Allocator) List(ctx context.Context) ([]Lease, error) {
	reg, err := a.store.Load(ctx)
	if err != nil {
		return nil, err
	}
	sortLeases(reg.Leases)
	return reg.Leases, nil
}

// expire releases the reservations past their expiry. One whose claim
// cannot be given back stays as it is and is retried next time.
func (a *Allocator) expire(ctx context.Context, reg *Registry, now time.Time) []Lease {
	var expired []Lease
	for i := range reg.Leases {
		l := &reg.Leases[i]
		if !l.Expired(now) {
			continue
		}
		if a.claimer != nil && l.IP.IsValid() {
			if err := a.claimer.Unclaim(ctx, l.IP); err != nil {
				a.log.WithError(err).WithField("ip", l.IP).Warn("ipam: cannot unclaim expired reservation; will retry")
				continue
			}
		}
		l.State, l.Note, l.UpdatedAt = StateReleased, noteExpired, now
		expired = append(expired, *l)
		a.log.WithFields(logrus.Fields{"ip": l.IP, "vmid": l.VMID, "hostname": l.Hostname, "owner": l.Owner}).Warn("ipam: reservation expired")
	}
	return expired
}

// findKey finds the active lease of the request's owner and hostname:
// the one whose numbers the request names (ok), or else one still reserved
// with other numbers (not ok: a create of the same key in flight). An
// assigned lease with other numbers is another pod of that name, or one
// PVE no longer has; it does not answer the request.
func (a *Allocator) findKey(reg *Registry, req Request, now time.Time) (int, bool) {
	if !req.keyed() {
		return -1, false
	}
	other := -1
	for i, l := range reg.Leases {
		if l.Pool != a.pool.Name || l.Owner != req.Owner || l.Hostname != req.Hostname || !l.Active(now) {
			continue
		}
		if (!req.IP.IsValid() || req.IP == l.IP) && (req.VMID == 0 || req.VMID == l.VMID) {
			return i, true
		}
		if l.State == StateReserved && !req.sibling(l) {
			other = i
		}
	}
	return other, false
}

// previous is the most recent released (or expired) lease of the
// request's owner and hostname: after a crash the re-run gets the same
// address back if free.
func (a *Allocator) previous(reg *Registry, req Request, now time.Time) *Lease {
	if !req.keyed() {
		return nil
	}
	var prev *Lease
	for i, l := range reg.Leases {
		if l.Pool == a.pool.Name && l.Owner == req.Owner && l.Hostname == req.Hostname && (l.State == StateReleased || l.Expired(now)) &&
			(prev == nil || prev.UpdatedAt.Before(l.UpdatedAt)) {
			prev = &reg.Leases[i]
		}
	}
	return prev
}

// findLease finds the registry's version of lease, preferring one not
// released. Owner and hostname are part of the identity: after an expiry the
// same address and VMID may belong to another pod.
func (a *Allocator) findLease(reg *Registry, lease Lease) int {
	found := -1
	for i, l := range reg.Leases {
		if l.Pool == a.pool.Name && l.IP == lease.IP && l.VMID == lease.VMID && l.Owner == lease.Owner && l.Hostname == lease.Hostname {
			if l.State != StateReleased {
				return i
			}
			found = i
		}
	}
	return found
}

// occupancy is everything not free for req at now: PVE's guests (their
// VMIDs and configured addresses) but req's own, the reservations in
// flight of every pool (VMIDs are cluster-wide, and pools may overlap),
// and the claimer's addresses. An assigned lease adds nothing: its pod is
// among PVE's guests, or gone — unless PVE could not read that guest (its
// node is down), whose addresses only the lease knows.
func (a *Allocator) occupancy(ctx context.Context, reg *Registry, guests []Guest, now time.Time, req Request) (inUse, error) {
	used := newInUse()
	unknown := map[int]bool{}
	for _, g := range guests {
		if !g.isOwn(req) {
			used.addGuest(g)
			unknown[g.VMID] = g.Unknown
		}
	}
	for _, l := range reg.Leases {
		// A guest PVE cannot read has the addresses the registry gave it.
		if l.State == StateAssigned && unknown[l.VMID] && l.IP.IsValid() {
			used.addrs[l.IP] = describeLease(l)
		}
	}
	for _, l := range reg.Leases {
		if l.State != StateReserved || !l.Active(now) {
			continue
		}
		desc := describeLease(l)
		if l.IP.IsValid() {
			used.addrs[l.IP] = desc
		}
		if l.VMID != 0 && !req.sibling(l) {
			used.vmids[l.VMID] = desc
		}
	}
	if a.claimer != nil {
		claimed, err := a.claimer.Claimed(ctx)
		if err != nil {
			return used, fmt.Errorf("list claimed addresses: %w", err)
		}
		for _, ip := range claimed {
			if _, ok := used.addrs[ip]; !ok {
				used.addrs[ip] = "PVE SDN IPAM"
			}
		}
	}
	return used, nil
}

func describeLease(l Lease) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s lease", l.State)
	if l.Hostname != "" {
		fmt.Fprintf(&b, " of %s", l.Hostname)
	}
	if l.VMID != 0 {
		fmt.Fprintf(&b, " (vmid %d)", l.VMID)
	}
	if l.Owner != "" {
		fmt.Fprintf(&b, " owner %s", l.Owner)
	}
	if l.Tenant != "" {
		fmt.Fprintf(&b, " tenant %s", l.Tenant)
	}
	if l.Source == SourcePVE {
		b.WriteString(" from PVE")
	}
	return b.String()
}

func (a *Allocator) pickVMID(req Request, used inUse, prev *Lease) (int, error) {
	if req.VMID != 0 {
		if holder, taken := used.vmids[req.VMID]; taken {
			return 0, &InUseError{What: "vmid " + strconv.Itoa(req.VMID), Holder: holder, vmid: true}
		}
		return req.VMID, nil
	}
	if prev != nil && a.vmids.Contains(prev.VMID) {
		if _, taken := used.vmids[prev.VMID]; !taken {
			return prev.VMID, nil
		}
	}
	for id := a.vmids.Min; id <= a.vmids.Max; id++ {
		if _, taken := used.vmids[id]; !taken {
			return id, nil
		}
	}
	return 0, fmt.Errorf("no free vmid in %s: %w", a.vmids, ErrPoolExhausted)
}

// pickIP chooses the address and, with a claimer, claims it: PVE's SDN IPAM
// has no next-free call, so candidates are claimed in order until one sticks.
func (a *Allocator) pickIP(ctx context.Context, req Request, used inUse, prev *Lease) (netip.Addr, error) {
	if req.IP.IsValid() {
		if holder, taken := used.addrs[req.IP]; taken {
			return netip.Addr{}, &InUseError{What: "address " + req.IP.String(), Holder: holder}
		}
		return req.IP, a.claim(ctx, req.IP, req.MAC)
	}
	for _, ip := range a.candidates(prev) {
		if _, taken := used.addrs[ip]; taken {
			continue
		}
		err := a.claim(ctx, ip, req.MAC)
		if err == nil {
			return ip, nil
		}
		if !errors.Is(err, ErrAddressInUse) {
			return netip.Addr{}, err
		}
		used.addrs[ip] = "PVE SDN IPAM"
		a.log.WithField("ip", ip).Debug("ipam: address taken in SDN IPAM, trying the next")
	}
	return netip.Addr{}, fmt.Errorf("no free address in %s-%s: %w", a.pool.First, a.pool.Last, ErrPoolExhausted)
}

// unclaimUnrecorded gives back a claim whose lease never reached the
// registry (the write failed), so the SDN IPAM does not keep an orphan. It
// runs even when ctx is cancelled, as the claim outlives this process.
func (a *Allocator) unclaimUnrecorded(ctx context.Context, ip netip.Addr) {
	if a.claimer == nil || !ip.IsValid() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := a.claimer.Unclaim(ctx, ip); err != nil {
		a.log.WithError(err).WithField("ip", ip).Warn("ipam: cannot give back the claim of an unrecorded reservation; Sync reports it as unregistered")
	}
}

func (a *Allocator) claim(ctx context.Context, ip netip.Addr, mac string) error {
	if a.claimer == nil {
		return nil
	}
	return a.claimer.Claim(ctx, ip, mac)
}

// dropSuperseded removes released leases whose address or VMID is handed
// out anew, so the registry keeps one entry per address.
func dropSuperseded(ls []Lease, ip netip.Addr, vmid int) []Lease {
	out := ls[:0]
	for _, l := range ls {
		if l.State == StateReleased && ((ip.IsValid() && l.IP == ip) || (vmid != 0 && l.VMID == vmid)) {
			continue
		}
		out = append(out, l)
	}
	return out
}
