package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Inventory is PVE's view of the addresses and VMIDs in use, for IPAM: every
// guest in the cluster and the static IPv4 addresses its config sets (CT
// netN ip=, VM ipconfigN ip=), with the owner its marker names.
type Inventory struct{ API pve.API }

var _ ipam.Inventory = Inventory{}

// Used reads cluster/resources, then each guest's config.
func (inv Inventory) Used(ctx context.Context) ([]ipam.Guest, error) {
	v := newClusterView(inv.API)
	if err := v.refresh(ctx); err != nil {
		return nil, err
	}
	return v.ipamGuests(), nil
}

// clusterView is what a create knows of the cluster's guests: PVE's
// listing (cluster/resources) and each guest's config as last read. It is
// the one way the flows read the cluster's inventory (preflight, reserve,
// claim, IPAM's Inventory), so a shared or cached inventory can take its
// place; refresh must then still read what may have changed since the
// last look (claim.go depends on it).
type clusterView struct {
	api    pve.API
	guests map[int]*viewGuest
}

// viewGuest is one guest of the view.
type viewGuest struct {
	pve.Guest
	cfg   pve.Config
	addrs []netip.Addr
	// marker is the guest's ownership marker, when it has one for its own
	// VMID (owned).
	marker Marker
	owned  bool
	// unknown: its node could not be reached, so cfg is what an earlier
	// look read, or nothing.
	unknown bool
}

func newClusterView(api pve.API) *clusterView {
	return &clusterView{api: api, guests: map[int]*viewGuest{}}
}

// newView is the inventory a create reads PVE through.
func (p *Provisioner) newView() *clusterView { return newClusterView(p.api) }

// refresh reads the listing again and the config of every guest that is
// new to the view or may be in the making: one whose status or name
// changed, one locked now or at the last look (a clone in progress has no
// marker yet), and a pod of cloudpods whose marker said provisioning (it
// writes its address while stopped). Any other guest keeps the config read
// before; the first refresh reads every config.
func (v *clusterView) refresh(ctx context.Context) error {
	list, err := v.api.Guests(ctx)
	if err != nil {
		return err
	}
	next := make(map[int]*viewGuest, len(list))
	down := map[string]bool{} // nodes found unreachable: their guests are listed, not read (locate.go)
	for _, g := range list {
		if !g.Type.Valid() {
			continue
		}
		if down[g.Node] {
			next[g.VMID] = unreadable(v.guests[g.VMID], g)
			continue
		}
		if old, ok := v.guests[g.VMID]; ok && !old.mayChange(g) {
			old.Guest = g
			next[g.VMID] = old
			continue
		}
		cfg, err := v.api.GuestConfig(ctx, g.Ref())
		if errors.Is(err, pve.ErrNotFound) {
			continue // removed since the listing
		}
		if errors.Is(err, pve.ErrNodeUnreachable) {
			down[g.Node] = true
			next[g.VMID] = unreadable(v.guests[g.VMID], g)
			continue
		}
		if err != nil {
			return fmt.Errorf("config of %s %d: %w", g.Type, g.VMID, err)
		}
		vg := &viewGuest{Guest: g, cfg: cfg, addrs: ipam.ConfigAddrs(cfg.Values)}
		if m, ok := ParseMarker(cfg.Get("description")); ok && m.Owns(g.VMID) {
			vg.marker, vg.owned = m, true
		}
		next[g.VMID] = vg
	}
	v.guests = next
	return nil
}

// get is the guest at vmid, nil when the view has none.
func (v *clusterView) get(vmid int) *viewGuest { return v.guests[vmid] }

// sorted is every guest of the view by VMID.
func (v *clusterView) sorted() []*viewGuest {
	out := make([]*viewGuest, 0, len(v.guests))
	for _, g := range v.guests {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].VMID < out[j].VMID })
	return out
}

// holding are the guests other than self whose config sets ip.
func (v *clusterView) holding(ip netip.Addr, self int) []*viewGuest {
	var out []*viewGuest
	for _, g := range v.sorted() {
		if g.VMID != self && g.has(ip) {
			out = append(out, g)
		}
	}
	return out
}

// named are the guests other than self called hostname, in any case.
func (v *clusterView) named(hostname string, self int) []*viewGuest {
	var out []*viewGuest
	for _, g := range v.sorted() {
		if g.VMID != self && strings.EqualFold(g.Name, hostname) {
			out = append(out, g)
		}
	}
	return out
}

// ipamGuests is the view as IPAM takes it.
func (v *clusterView) ipamGuests() []ipam.Guest {
	out := []ipam.Guest{}
	for _, g := range v.sorted() {
		ig := ipam.Guest{VMID: g.VMID, Node: g.Node, Name: g.Name, Type: string(g.Type), Addrs: g.addrs, Unknown: g.unknown}
		if g.owned {
			ig.Owner, ig.Tenant = LeaseOwner(g.marker.Tenant, g.marker.Hostname), g.marker.Tenant
		}
		out = append(out, ig)
	}
	return out
}

// mayChange says whether the guest, as the listing shows it now, may hold
// another config than the one last read.
func (g *viewGuest) mayChange(now pve.Guest) bool {
	return now.Type != g.Type || now.Name != g.Name || now.Status != g.Status || now.Lock != "" || g.Lock != "" ||
		g.cfg.Get("lock") != "" || (g.owned && g.marker.State == "provisioning")
}

func (g *viewGuest) has(ip netip.Addr) bool {
	for _, a := range g.addrs {
		if a == ip {
			return true
		}
	}
	return false
}

// settled says whether the guest is past its claim: running (a pod starts
// only once its claim is settled), or not a pod in the making (no marker:
// made by hand or another tool; a marker in any state but provisioning).
func (g *viewGuest) settled() bool {
	return g.Status == "running" || !g.owned || g.marker.State != "provisioning"
}

func (g *viewGuest) String() string {
	s := fmt.Sprintf("%s %d", g.Type.Noun(), g.VMID)
	if g.Name != "" {
		s += " (" + g.Name + ")"
	}
	return s
}
