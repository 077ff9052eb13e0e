package goproxmox

import (
	"context"
	"net/netip"
	"net/url"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// SDN is PVE's SDN IPAM, which this adapter speaks (the calls below); a
// cluster without SDN answers them with errors naming what is missing.
func (c *Client) SDN() (pve.SDN, bool) { return c, true }

// AddIP records ip in PVE's SDN IPAM (POST /cluster/sdn/vnets/{vnet}/ips).
func (c *Client) AddIP(ctx context.Context, zone, vnet string, ip netip.Addr, mac string) error {
	p := map[string]string{"zone": zone, "ip": ip.String()}
	setIf(p, "mac", mac)
	return c.call(ctx, "POST", "/cluster/sdn/vnets/"+url.PathEscape(vnet)+"/ips", p, nil)
}

// DeleteIP removes ip from PVE's SDN IPAM.
func (c *Client) DeleteIP(ctx context.Context, zone, vnet string, ip netip.Addr) error {
	return c.call(ctx, "DELETE", "/cluster/sdn/vnets/"+url.PathEscape(vnet)+"/ips", map[string]string{"zone": zone, "ip": ip.String()}, nil)
}

// ListIPs reads the vnet's addresses from the PVE IPAM's status, the only
// listing PVE offers.
func (c *Client) ListIPs(ctx context.Context, zone, vnet string) ([]netip.Addr, error) {
	var rows []struct {
		Zone string `json:"zone"`
		Vnet string `json:"vnet"`
		IP   string `json:"ip"`
	}
	if err := c.call(ctx, "GET", "/cluster/sdn/ipams/pve/status", nil, &rows); err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, r := range rows {
		if r.Zone != zone || r.Vnet != vnet {
			continue
		}
		if a, err := netip.ParseAddr(r.IP); err == nil {
			out = append(out, a)
		}
	}
	return out, nil
}
