package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Inventory is PVE's view of the addresses and VMIDs in use, for IPAM and
// for create's preflight: every guest in the cluster and the static IPv4
// addresses its config sets (CT netN ip=, VM ipconfigN ip=).
type Inventory struct{ API pve.API }

var _ ipam.Inventory = Inventory{}

// Used reads cluster/resources, then each guest's config.
func (inv Inventory) Used(ctx context.Context) ([]ipam.Guest, error) {
	guests, err := inv.API.Guests(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ipam.Guest, 0, len(guests))
	for _, g := range guests {
		if !g.Type.Valid() {
			continue
		}
		cfg, err := inv.API.GuestConfig(ctx, g.Ref())
		if errors.Is(err, pve.ErrNotFound) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("config of %s %d: %w", g.Type, g.VMID, err)
		}
		out = append(out, ipam.Guest{VMID: g.VMID, Node: g.Node, Name: g.Name, Type: string(g.Type), Addrs: ipam.ConfigAddrs(cfg.Values)})
	}
	return out, nil
}

// addressHolders maps each configured address to the guest holding it.
func addressHolders(ctx context.Context, api pve.API) (map[netip.Addr]ipam.Guest, error) {
	guests, err := Inventory{API: api}.Used(ctx)
	if err != nil {
		return nil, err
	}
	used := map[netip.Addr]ipam.Guest{}
	for _, g := range guests {
		for _, a := range g.Addrs {
			used[a] = g
		}
	}
	return used, nil
}
