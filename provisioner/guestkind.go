package provisioner

import (
	"context"
	"errors"
	"strings"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Commands that take a bare VMID (destroy, show, health) serve containers
// and the VMs cloudpods makes alike: the kind is found by reading the
// config as a container first (what every CloudPod is), then as a VM.

// guestConfigAnyKind reads vmid's config on node as a container, else as
// a VM; the reference says which it is. A VMID holding neither is
// pve.ErrNotFound, with the container's reference.
func (p *Provisioner) guestConfigAnyKind(ctx context.Context, node string, vmid int) (pve.GuestRef, pve.Config, error) {
	g := pve.CT(node, vmid)
	cfg, err := p.api.GuestConfig(ctx, g)
	if !errors.Is(err, pve.ErrNotFound) {
		return g, cfg, err
	}
	vm := pve.VM(node, vmid)
	vcfg, verr := p.api.GuestConfig(ctx, vm)
	if errors.Is(verr, pve.ErrNotFound) {
		return g, cfg, err
	}
	return vm, vcfg, verr
}

// guestName is a container's hostname, a VM's name.
func guestName(g pve.GuestRef, cfg pve.Config) string {
	if g.Kind == pve.QEMU {
		return cfg.Get("name")
	}
	return cfg.Get("hostname")
}

// guestIP is the static address of the guest's first NIC: a container's
// net0 ip=, a VM's cloud-init ipconfig0 ip=; "" without one.
func guestIP(g pve.GuestRef, cfg pve.Config) string {
	if g.Kind != pve.QEMU {
		return configIP(cfg)
	}
	n, err := netcfg.ParseIPConfig("ipconfig0", cfg.Get("ipconfig0"))
	if err != nil {
		return ""
	}
	a, _, _ := strings.Cut(n.IP, "/")
	if a == "dhcp" {
		return ""
	}
	return a
}
