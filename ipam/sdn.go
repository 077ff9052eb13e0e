package ipam

import (
	"context"
	"fmt"
	"net/netip"
)

// SDN is the part of PVE's SDN API the pve-sdn backend uses (PVE ≥ 8.1,
// a vnet in a zone with ipam=pve). The provisioner's PVE adapter implements it.
type SDN interface {
	// AddIP is POST /cluster/sdn/vnets/{vnet}/ips with zone, ip and mac
	// (mac may be empty). PVE refuses a duplicate with HTTP 500
	// "IP '<ip>' already exist"; implementations should wrap
	// ErrSDNIPExists then, though SDNIPExists also knows the bare message.
	AddIP(ctx context.Context, zone, vnet string, ip netip.Addr, mac string) error
	// DeleteIP is DELETE /cluster/sdn/vnets/{vnet}/ips with zone and ip
	// (as query parameters). PVE answers "IP '<ip>' does not exist in IPAM
	// DB" for an address it does not hold.
	DeleteIP(ctx context.Context, zone, vnet string, ip netip.Addr) error
	// ListIPs lists the addresses registered for the vnet, gateway
	// included: the zone's and vnet's rows of GET /cluster/sdn/ipams/{ipam}/status.
	ListIPs(ctx context.Context, zone, vnet string) ([]netip.Addr, error)
}

// SDNClaimer claims addresses in PVE's SDN IPAM, which every controller of
// the cluster shares: whoever's POST succeeds holds the address.
type SDNClaimer struct {
	api        SDN
	zone, vnet string
}

var _ Claimer = (*SDNClaimer)(nil)

// NewSDNClaimer claims addresses of vnet in zone through api.
func NewSDNClaimer(api SDN, zone, vnet string) *SDNClaimer {
	return &SDNClaimer{api: api, zone: zone, vnet: vnet}
}

// Claim registers ip; a duplicate becomes an *InUseError (ErrAddressInUse).
func (c *SDNClaimer) Claim(ctx context.Context, ip netip.Addr, mac string) error {
	err := c.api.AddIP(ctx, c.zone, c.vnet, ip, mac)
	if SDNIPExists(err) {
		return &InUseError{What: "address " + ip.String(), Holder: c.holder()}
	}
	if err != nil {
		return fmt.Errorf("claim %s in %s: %w", ip, c.holder(), err)
	}
	return nil
}

// Unclaim deletes ip; an address PVE does not hold is already unclaimed.
func (c *SDNClaimer) Unclaim(ctx context.Context, ip netip.Addr) error {
	err := c.api.DeleteIP(ctx, c.zone, c.vnet, ip)
	if err != nil && !SDNIPMissing(err) {
		return fmt.Errorf("unclaim %s in %s: %w", ip, c.holder(), err)
	}
	return nil
}

// Claimed lists the vnet's registered addresses.
func (c *SDNClaimer) Claimed(ctx context.Context) ([]netip.Addr, error) {
	ips, err := c.api.ListIPs(ctx, c.zone, c.vnet)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", c.holder(), err)
	}
	return ips, nil
}

func (c *SDNClaimer) holder() string {
	return fmt.Sprintf("PVE SDN IPAM (zone %s, vnet %s)", c.zone, c.vnet)
}
