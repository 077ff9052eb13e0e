package provisioner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// InventoryOptions tune the provisioner's shared inventory.
type InventoryOptions struct {
	// Parallel bounds the config reads in flight at once (default 4; a
	// node's pveproxy serves 3 requests at a time).
	Parallel int
	// MaxAge is how long a config read once is trusted while PVE's listing
	// shows nothing changed about its guest (default 5 minutes); each
	// guest's read expires somewhere in the second half of it, so the
	// re-reads are spread out. It bounds how long an address typed by hand
	// into an existing guest, with nothing else about it changing, goes
	// unseen by a process that read the cluster before (docs/multi-controller.md).
	MaxAge time.Duration
	// AddressesFromSDN: IPAM claims every address in PVE's SDN IPAM
	// (--ipam pve-sdn), where every controller claims its addresses, so a
	// create leaves the address question to it and reads only the configs
	// it needs (the template, the guest at its VMID, the guests of its
	// hostname) instead of every guest's. An address typed by hand into a
	// guest's netN is then not seen: PVE registers in its IPAM only the
	// addresses it hands out itself (its DHCP), not a static ip=.
	AddressesFromSDN bool
}

// DefaultInventoryMaxAge is InventoryOptions.MaxAge's default.
const DefaultInventoryMaxAge = 5 * time.Minute

func (o InventoryOptions) withDefaults() InventoryOptions {
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultInventoryMaxAge
	}
	return o
}

// guestInventory is one process's knowledge of the cluster's guests, which
// every create of a batch and every job of the service share: PVE's
// listing (cluster/resources) and each guest's config as last read. A look
// lists the cluster (one request, shared by looks that may share it) and
// reads again only what may have changed; the configs are read by at most
// Parallel workers, those a flow waits for first.
//
// What a config read is trusted for, and what is read again
// (docs/multi-controller.md):
//   - a guest new to the listing, or gone and back: read;
//   - a guest whose listing changed since its read (type, node, name,
//     status, template, lock, tags, its CPUs, memory or disk, a restart):
//     read again;
//   - a guest that may be in the making (locked now or at its read, or a pod
//     whose marker says provisioning): read again if its read is older than
//     the look's since — claim's safety rests on this;
//   - any other: trusted until its read expires (MaxAge).
type guestInventory struct {
	api  pve.API
	opts InventoryOptions

	mu      sync.Mutex
	listing *listCall
	reads   map[int]*configRead
	// urgent and bulk are the reads queued for the workers: urgent ones
	// (what a flow waits for: its targets, guests in the making) first.
	urgent, bulk []*configRead
	workers      int
	// downUntil: a node found unreachable is not asked again for its
	// guests' configs until then (each ask costs PVE's proxy timeout).
	downUntil map[string]time.Time
}

// nodeDownFor is how long a node found unreachable is believed down.
const nodeDownFor = 5 * time.Second

func newGuestInventory(api pve.API, opts InventoryOptions) *guestInventory {
	return &guestInventory{api: api, opts: opts.withDefaults(), reads: map[int]*configRead{}, downUntil: map[string]time.Time{}}
}

// look says what a snapshot needs.
type look struct {
	// since: the listing began after it, and so did the config reads of
	// the guests that may be in the making. Zero takes the newest listing
	// there is.
	since time.Time
	// partial waits only for the configs of the guests need picks; the
	// others are read in the background and show as unread until then.
	partial bool
	need    func(pve.Guest) bool
	// onDemand reads only the configs need picks, not even in the
	// background (AddressesFromSDN): the others show as unread.
	onDemand bool
	// again: this is the second pass of a look (see look).
	again bool
}

// needs says whether the look waits for g's config.
func (lk look) needs(g pve.Guest) bool {
	if lk.partial || lk.onDemand {
		return lk.need != nil && lk.need(g)
	}
	return true
}

// listCall is one GET /cluster/resources, done or in flight.
type listCall struct {
	started time.Time
	done    chan struct{}
	guests  []pve.Guest
	err     error
}

// configRead is one read of a guest's config, queued, in flight or done.
// Its results are set before done is closed and never change after.
type configRead struct {
	// listed is the guest as the listing showed it when the read was
	// asked for.
	listed pve.Guest
	// urgent, taken and sent are guarded by guestInventory.mu until done
	// is closed: sent is when a worker took the read, so the config read
	// is at least as new as that.
	urgent, taken bool
	sent          time.Time
	done          chan struct{}

	vg      *viewGuest // the config as read; nil when gone or failed
	gone    bool       // PVE no longer had the guest
	err     error
	expires time.Time
	// last is the config the guest's read before this one gave: until
	// this one is done, a partial look shows it, so a guest read again (it
	// started, its listing changed) keeps its addresses meanwhile.
	last *viewGuest
}

// known is the newest config read of the guest, nil if none.
func (r *configRead) known() *viewGuest {
	switch {
	case r == nil:
		return nil
	case r.finished() && r.err == nil && !r.gone:
		return r.vg
	}
	return r.last
}

func (r *configRead) finished() bool { return closed(r.done) }

// closed says whether done is closed, without waiting.
func closed(done chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// await waits until done is closed or ctx ends.
func await(ctx context.Context, done chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// look lists the cluster, reads what must be read, and returns the
// snapshot: every guest of the listing with its config, or unread where
// a partial look did not wait for it.
func (inv *guestInventory) look(ctx context.Context, lk look) (map[int]*viewGuest, error) {
	lc, err := inv.list(ctx, lk.since)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	current := make(map[int]*configRead, len(lc.guests))
	var waits []*configRead
	inv.mu.Lock()
	for _, g := range lc.guests {
		if !g.Type.Valid() {
			continue
		}
		r := inv.reads[g.VMID]
		urgent := lk.needs(g) && (lk.partial || lk.onDemand)
		switch {
		case lk.onDemand && !lk.needs(g):
			// not read, not even in the background; an outdated read is
			// not shown
			if inv.stale(r, g, lc.started, lk.since, now) {
				r = nil
			}
		case inv.stale(r, g, lc.started, lk.since, now):
			next := &configRead{listed: g, done: make(chan struct{})}
			if r != nil && !(r.finished() && r.gone) {
				next.last = r.known()
			}
			r = next
			inv.reads[g.VMID] = r
			inv.enqueue(r, urgent || inMakingListed(g))
		case urgent && !r.urgent && !r.taken:
			inv.enqueue(r, true)
		}
		current[g.VMID] = r
		if lk.needs(g) && r != nil {
			waits = append(waits, r)
		}
	}
	if inv.listing == lc {
		for vmid, r := range inv.reads {
			if _, listed := current[vmid]; !listed && r.finished() {
				delete(inv.reads, vmid) // PVE no longer lists it
			}
		}
	}
	inv.mu.Unlock()

	again := false
	for _, r := range waits {
		if err := await(ctx, r.done); err != nil {
			return nil, err
		}
		if r.err != nil {
			return nil, r.err
		}
		// A read that was in flight before since shows only now that its
		// guest may be in the making: it must be read again.
		again = again || (r.sent.Before(lk.since) && r.vg != nil && r.vg.inMaking())
	}
	if again && !lk.again {
		// Once more: those guests are read anew (stale), after since.
		lk.again = true
		return inv.look(ctx, lk)
	}
	out := make(map[int]*viewGuest, len(current))
	for _, g := range lc.guests {
		r, listed := current[g.VMID]
		if !listed {
			continue // not a guest kind the view holds
		}
		if r != nil && r.finished() && r.gone {
			continue // removed since the listing
		}
		known := r.known()
		if known == nil {
			out[g.VMID] = &viewGuest{Guest: g, unread: true}
			continue
		}
		vg := *known
		vg.Guest = g
		out[g.VMID] = &vg
	}
	return out, nil
}

// stale says whether r, the newest read of g's config, no longer answers a
// look at a listing begun at listed with since.
func (inv *guestInventory) stale(r *configRead, g pve.Guest, listed, since, now time.Time) bool {
	if r == nil {
		return true
	}
	if !r.taken {
		return false // queued: it will be sent after this look began
	}
	old := r.sent.Before(listed) // sent before this listing saw g
	before := r.sent.Before(since)
	if !r.finished() {
		// What its config says is not known yet: a look that waits for
		// it checks it once done (look's again).
		return (old && listingChanged(r.listed, g)) || (before && (inMakingListed(g) || inMakingListed(r.listed)))
	}
	switch {
	case r.err != nil, now.After(r.expires):
		return true
	case old && (r.gone || listingChanged(r.listed, g)):
		return true
	case before && (inMakingListed(g) || inMakingListed(r.listed) || (r.vg != nil && r.vg.inMaking())):
		return true
	}
	return false
}

// listingChanged says whether the listing shows something about the guest
// that a config change makes PVE show: what it is and where, its name,
// status, template flag, lock and tags, its CPUs, memory and root disk,
// and a restart (its uptime went back).
func listingChanged(was, now pve.Guest) bool {
	return was.Type != now.Type || was.Node != now.Node || was.Name != now.Name || was.Status != now.Status ||
		was.Template != now.Template || was.Lock != now.Lock || was.Tags != now.Tags ||
		was.MaxCPU != now.MaxCPU || was.MaxMem != now.MaxMem || was.MaxDisk != now.MaxDisk || now.Uptime < was.Uptime
}

// inMakingListed says whether the listing shows the guest locked: a clone
// or create in progress, whose config has no marker yet.
func inMakingListed(g pve.Guest) bool { return g.Lock != "" }

// list returns a listing begun at or after since: the one in flight or
// done if it qualifies (concurrent looks share it), else a new one.
func (inv *guestInventory) list(ctx context.Context, since time.Time) (*listCall, error) {
	inv.mu.Lock()
	c := inv.listing
	if c == nil || c.started.Before(since) || (c.finished() && c.err != nil) {
		c = &listCall{started: time.Now(), done: make(chan struct{})}
		inv.listing = c
		// The listing is the inventory's, not the caller's: another look
		// may be waiting for it when this caller gives up.
		go func() {
			c.guests, c.err = inv.api.Guests(context.WithoutCancel(ctx))
			close(c.done)
		}()
	}
	inv.mu.Unlock()
	if err := await(ctx, c.done); err != nil {
		return nil, err
	}
	if c.err != nil {
		return nil, c.err
	}
	return c, nil
}

func (c *listCall) finished() bool { return closed(c.done) }

// enqueue queues r for the workers (again, urgently, if it was queued in
// bulk) and starts a worker if fewer than Parallel run; under mu.
func (inv *guestInventory) enqueue(r *configRead, urgent bool) {
	if urgent {
		r.urgent = true
		inv.urgent = append(inv.urgent, r)
	} else {
		inv.bulk = append(inv.bulk, r)
	}
	if inv.workers < inv.opts.Parallel {
		inv.workers++
		go inv.work()
	}
}

// work reads queued configs, urgent ones first, until none is left.
func (inv *guestInventory) work() {
	for {
		inv.mu.Lock()
		r := inv.next()
		if r == nil {
			inv.workers--
			inv.mu.Unlock()
			return
		}
		r.taken, r.sent = true, time.Now()
		inv.mu.Unlock()
		inv.read(r)
	}
}

// next pops the next read no worker has taken; under mu.
func (inv *guestInventory) next() *configRead {
	for _, q := range []*[]*configRead{&inv.urgent, &inv.bulk} {
		for len(*q) > 0 {
			r := (*q)[0]
			*q = (*q)[1:]
			if !r.taken {
				return r
			}
		}
	}
	return nil
}

// read reads one config. The read is the inventory's, not a caller's (a
// look that gave up may share it with others), so it runs to its end.
func (inv *guestInventory) read(r *configRead) {
	g := r.listed
	r.expires = time.Now().Add(inv.opts.MaxAge - spreadOf(g.VMID, inv.opts.MaxAge/2))
	if inv.nodeDown(g.Node) {
		r.vg, r.expires = unreadable(r.last, g), time.Now().Add(nodeDownFor)
		close(r.done)
		return
	}
	cfg, err := inv.api.GuestConfig(context.Background(), g.Ref())
	switch {
	case errors.Is(err, pve.ErrNotFound):
		r.gone = true
	case errors.Is(err, pve.ErrNodeUnreachable):
		// Its node is down: the guest is unknown, with what an earlier
		// read knew of its addresses and marker (locate.go).
		inv.markDown(g.Node)
		r.vg, r.expires = unreadable(r.last, g), time.Now().Add(nodeDownFor)
	case err != nil:
		r.err = fmt.Errorf("config of %s %d: %w", g.Type, g.VMID, err)
	default:
		r.vg = readGuest(g, cfg)
	}
	close(r.done)
}

func (inv *guestInventory) nodeDown(node string) bool {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return time.Now().Before(inv.downUntil[node])
}

func (inv *guestInventory) markDown(node string) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.downUntil[node] = time.Now().Add(nodeDownFor)
}

// spreadOf is a fixed share of d for vmid, so that configs read together
// expire at different times.
func spreadOf(vmid int, d time.Duration) time.Duration {
	h := uint32(vmid) * 2654435761 // Knuth's multiplicative hash
	return time.Duration(uint64(d) * uint64(h>>22) / 1024)
}
