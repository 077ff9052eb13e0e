package provisioner

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Inventory is PVE's view of the addresses and VMIDs in use, for IPAM: every
// guest in the cluster and the static IPv4 addresses its config sets (CT
// netN ip=, VM ipconfigN ip=), with the owner its marker names. A command
// that only asks IPAM (ip next, ip sync) reads it once; the flows hand IPAM
// the provisioner's shared inventory instead (AddressRequest.Guests).
type Inventory struct{ API pve.API }

var _ ipam.Inventory = Inventory{}

// Used reads cluster/resources, then each guest's config.
func (inv Inventory) Used(ctx context.Context) ([]ipam.Guest, error) {
	v := &clusterView{inv: newGuestInventory(inv.API, InventoryOptions{})}
	if err := v.refresh(ctx); err != nil {
		return nil, err
	}
	return v.ipamGuests(), nil
}

// clusterView is what one create knows of the cluster's guests: a snapshot
// of the provisioner's shared inventory (guestInventory), taken by each
// look. It is the one way the flows read the cluster's inventory
// (preflight, reserve, claim, IPAM's Inventory).
type clusterView struct {
	inv    *guestInventory
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
	// unread: a partial look did not wait for this guest's config, so
	// its addresses and marker are not known yet.
	unread bool
	// unknown: its node could not be reached, so cfg is what an earlier
	// read knew, or nothing.
	unknown bool
}

// newView is a view of the cluster through the provisioner's inventory.
func (p *Provisioner) newView() *clusterView { return &clusterView{inv: p.inventory} }

// refresh takes a complete look: a listing begun now, every guest's config
// (read before unless the listing shows the guest changed, its read is
// older than the inventory's MaxAge, or it may be in the making: those are
// read again now).
func (v *clusterView) refresh(ctx context.Context) error {
	return v.look(ctx, look{since: time.Now()})
}

// look takes the snapshot lk asks for.
func (v *clusterView) look(ctx context.Context, lk look) error {
	guests, err := v.inv.look(ctx, lk)
	if err != nil {
		return err
	}
	v.guests = guests
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

// ipamGuests is the view as IPAM takes it. A guest whose config this view
// lacks (its node is down, or a partial look did not wait for it) is
// unknown: the registry's leases of its VMID keep their addresses.
func (v *clusterView) ipamGuests() []ipam.Guest {
	out := []ipam.Guest{}
	for _, g := range v.sorted() {
		ig := ipam.Guest{VMID: g.VMID, Node: g.Node, Name: g.Name, Type: string(g.Type), Addrs: g.addrs, Unknown: g.unknown || g.unread}
		if g.owned {
			ig.Owner, ig.Tenant = LeaseOwner(g.marker.Tenant, g.marker.Hostname), g.marker.Tenant
		}
		out = append(out, ig)
	}
	return out
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

// inMaking says whether the guest, as last read, may be a guest in the
// making: locked (a clone in progress has no marker yet), or a pod of
// cloudpods whose marker says provisioning (it writes its address while
// stopped).
func (g *viewGuest) inMaking() bool {
	return g.cfg.Get("lock") != "" || (g.owned && g.marker.State == "provisioning")
}

func (g *viewGuest) String() string {
	s := fmt.Sprintf("%s %d", g.Type.Noun(), g.VMID)
	if g.Name != "" {
		s += " (" + g.Name + ")"
	}
	return s
}

// readGuest is a guest's config as the view holds it.
func readGuest(g pve.Guest, cfg pve.Config) *viewGuest {
	vg := &viewGuest{Guest: g, cfg: cfg, addrs: ipam.ConfigAddrs(cfg.Values)}
	if m, ok := ParseMarker(cfg.Get("description")); ok && m.Owns(g.VMID) {
		vg.marker, vg.owned = m, true
	}
	return vg
}
