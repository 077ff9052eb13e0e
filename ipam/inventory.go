package ipam

import (
	"context"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Inventory is PVE's view of what is in use. The provisioner implements it
// over the PVE API (cluster/resources, then each guest's config).
type Inventory interface {
	// Used lists every guest in the cluster, templates included, with the
	// IPv4 addresses its configuration sets.
	Used(ctx context.Context) ([]Guest, error)
}

// Guest is one PVE guest as the Inventory reports it.
type Guest struct {
	VMID int
	Node string
	Name string
	Type string // lxc | qemu
	// Addrs are the static IPv4 addresses of the guest's net[n] (LXC) or
	// ipconfig[n] (QEMU cloud-init) keys; ConfigAddrs extracts them.
	Addrs []netip.Addr
	// Owner and Tenant are the lease owner and tenant of the pod the guest
	// is, from its ownership marker; empty for a guest cloudpods did not
	// make. A lease recorded from PVE carries them, so the pod's own
	// create finds its lease again.
	Owner  string
	Tenant string
	// Unknown: the guest's config could not be read (its node is down)
	// or has not been read yet (a partial look), so Addrs may lack addresses it has: the registry's assigned leases
	// of its VMID stay in use, and sync leaves them as they are.
	Unknown bool
}

// isOwn reports whether g is the guest req asks for: the pod req's owner
// made at req's VMID. Its VMID and addresses are not in use against req.
func (g Guest) isOwn(req Request) bool {
	return req.Owner != "" && g.Owner == req.Owner && req.VMID != 0 && g.VMID == req.VMID
}

func (g Guest) String() string {
	s := g.Type
	if s == "" {
		s = "guest"
	}
	s += " " + strconv.Itoa(g.VMID)
	if g.Name != "" {
		s += " (" + g.Name + ")"
	}
	if g.Node != "" {
		s += " on " + g.Node
	}
	return s
}

// guestNICKey matches the config keys that carry a static address: LXC
// net0…netN ("name=eth0,…,ip=10.1.10.95/24") and QEMU ipconfig0…N
// ("ip=10.1.10.95/24,gw=10.1.10.1"). QEMU's own netN has no ip= field.
var guestNICKey = regexp.MustCompile(`^(net|ipconfig)[0-9]+$`)

// ConfigAddrs extracts the static IPv4 addresses from a guest config (the
// key/value map of GET …/lxc/{vmid}/config or …/qemu/{vmid}/config). dhcp,
// manual and malformed values are skipped, in ascending order without
// duplicates.
func ConfigAddrs(values map[string]string) []netip.Addr {
	var out []netip.Addr
	for key, val := range values {
		if !guestNICKey.MatchString(key) {
			continue
		}
		for _, field := range strings.Split(val, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
			if !ok || k != "ip" {
				continue
			}
			if p, err := netip.ParsePrefix(v); err == nil && p.Addr().Is4() {
				out = append(out, p.Addr())
			} else if a, err := netip.ParseAddr(v); err == nil && a.Is4() {
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// inUse is the cluster's and the registry's occupancy at one moment.
type inUse struct {
	addrs map[netip.Addr]string // address → holder description
	vmids map[int]string        // vmid → holder description
}

func newInUse() inUse {
	return inUse{addrs: map[netip.Addr]string{}, vmids: map[int]string{}}
}

func (u inUse) addGuest(g Guest) {
	desc := "PVE " + g.String()
	u.vmids[g.VMID] = desc
	for _, a := range g.Addrs {
		u.addrs[a] = desc
	}
}
