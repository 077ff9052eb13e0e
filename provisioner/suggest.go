package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// What an interactive builder (cloudpod new) asks PVE for its defaults, and
// the flows' own validate steps run alone, so that every answer is checked
// by the very rules its flag is checked by. Everything here only reads.

// NextFree is the VMID and address create's reserve step would hand
// hostname now (IPAM's peek): nothing is reserved, and another caller may
// take them first. Without IPAM it fails, saying so.
func (p *Provisioner) NextFree(ctx context.Context, hostname, tenant string) (int, netip.Addr, error) {
	return p.peekLease(ctx, AddressRequest{Hostname: hostname, Tenant: tenant, Owner: LeaseOwner(tenant, hostname)})
}

// CheckLease asks IPAM whether create could reserve ip and vmid for
// hostname (peeking, reserving nothing): a taken address or VMID is a
// conflict in reserve's own words.
func (p *Provisioner) CheckLease(ctx context.Context, s Spec) error {
	_, _, err := p.peekLease(ctx, AddressRequest{Hostname: s.Hostname, Tenant: s.Tenant, Owner: LeaseOwner(s.Tenant, s.Hostname), IP: s.IP, VMID: s.VMID})
	if err != nil && allocationRefused(err) {
		return ipamProblem(s, err)
	}
	return err
}

func (p *Provisioner) peekLease(ctx context.Context, req AddressRequest) (int, netip.Addr, error) {
	if p.opts.Addresses == nil {
		return 0, netip.Addr{}, problemf(ErrInvalidSpec, "no IPAM is configured to pick a VMID and address: give both")
	}
	l, err := p.opts.Addresses.Peek(ctx, req)
	if err != nil {
		return 0, netip.Addr{}, err
	}
	return l.VMID, l.IP, nil
}

// NodeInfo is a node as a person picks one: online, its CPUs and how busy
// they are, its memory and how much is free.
type NodeInfo struct {
	Node        string
	Online      bool
	PVEVersion  string
	CPUs        int
	CPUBusy     float64 // 0..1
	MemoryTotal int64
	MemoryFree  int64
}

// NodeInfo reads node's status; a node that is not in the cluster or is
// offline is refused as preflight refuses it.
func (p *Provisioner) NodeInfo(ctx context.Context, node string) (NodeInfo, error) {
	if err := p.checkNodeOnline(ctx, node); err != nil {
		return NodeInfo{}, err
	}
	st, err := p.api.NodeStatus(ctx, node)
	if err != nil {
		return NodeInfo{}, apiProblem("read node "+node, err)
	}
	return NodeInfo{Node: st.Node, Online: st.Online, PVEVersion: st.PVEVersion, CPUs: st.CPUs, CPUBusy: st.CPULoad,
		MemoryTotal: st.Memory, MemoryFree: max(st.Memory-st.MemoryUsed, 0)}, nil
}

// Bridges are node's bridges (Linux and OVS), in PVE's order: what a NIC
// may be put on.
func (p *Provisioner) Bridges(ctx context.Context, node string) ([]string, error) {
	ifs, err := p.api.NetworkInterfaces(ctx, node)
	if err != nil {
		return nil, apiProblem("list network interfaces on "+node, err)
	}
	var out []string
	for _, i := range ifs {
		if isBridge(i) {
			out = append(out, i.Name)
		}
	}
	return out, nil
}

func isBridge(i pve.HostInterface) bool { return i.Type == "bridge" || i.Type == "OVSBridge" }

// PVERelease is PVE's release ("9.1"), and its major number: the privilege
// rules of containers depend on it.
func (p *Provisioner) PVERelease(ctx context.Context) (string, int, error) {
	v, err := p.api.Version(ctx)
	if err != nil {
		return "", 0, apiProblem("read PVE's version", err)
	}
	return v.Release, majorVersion(v), nil
}

// TokenHas reports whether the calling token holds priv on path.
func (p *Provisioner) TokenHas(ctx context.Context, path, priv string) (bool, error) {
	perms, err := p.api.Permissions(ctx)
	if err != nil {
		return false, apiProblem("read the token's permissions", err)
	}
	return perms.Has(path, priv), nil
}

// VMIDHolder is the guest that holds vmid anywhere in the cluster, if one
// does.
func (p *Provisioner) VMIDHolder(ctx context.Context, vmid int) (pve.Guest, bool, error) {
	guests, err := p.api.Guests(ctx)
	if err != nil {
		return pve.Guest{}, false, apiProblem("list the cluster's guests", err)
	}
	for _, g := range guests {
		if g.VMID == vmid {
			return g, true, nil
		}
	}
	return pve.Guest{}, false, nil
}

// GuestResources are a guest's cores, memory, swap and root disk size as
// its config holds them: a template's values are a new guest's defaults.
type GuestResources struct {
	Cores, MemoryMB, SwapMB, DiskGB int
	Storage                         string
}

// Resources reads g's resources from its config.
func (p *Provisioner) Resources(ctx context.Context, g pve.GuestRef) (GuestResources, error) {
	cfg, err := p.api.GuestConfig(ctx, g)
	if errors.Is(err, pve.ErrNotFound) {
		return GuestResources{}, problemf(ErrPreflight, "%s %d does not exist on node %s", g.Kind.Noun(), g.VMID, g.Node)
	}
	if err != nil {
		return GuestResources{}, apiProblem(fmt.Sprintf("read the config of %s %d", g.Kind.Noun(), g.VMID), err)
	}
	num := func(k string) int { n, _ := strconv.Atoi(cfg.Get(k)); return n }
	r := GuestResources{Cores: num("cores"), MemoryMB: num("memory"), SwapMB: num("swap")}
	root := cfg.Get("rootfs")
	if root == "" {
		root = cfg.Get("scsi0")
	}
	r.Storage = rootfsStorage(root)
	for _, part := range strings.Split(root, ",") {
		if v, ok := strings.CutPrefix(part, "size="); ok {
			r.DiskGB = sizeGB(v)
		}
	}
	return r, nil
}

// sizeGB reads PVE's disk size (8G, 512M, 1T) in whole GB, rounded up.
func sizeGB(v string) int {
	if v == "" {
		return 0
	}
	n, err := strconv.ParseFloat(v[:len(v)-1], 64)
	if err != nil {
		return 0
	}
	switch v[len(v)-1] {
	case 'T':
		n *= 1024
	case 'M':
		n /= 1024
	case 'K':
		n /= 1024 * 1024
	}
	gb := int(n)
	if float64(gb) < n {
		gb++
	}
	return gb
}

// The validate steps of the flows, alone: what the flags' values are
// refused for before PVE is asked, in the same sentences.

// CheckCreate is create's validate step.
func (p *Provisioner) CheckCreate(ctx context.Context, req CreateRequest) error {
	return p.newCreateRun(req, "check").validate(ctx)
}

// CheckCT is ct create's validate step.
func (p *Provisioner) CheckCT(ctx context.Context, req CTRequest) error {
	return p.newCTRun(req, "ct create").validate(ctx)
}

// CheckVM is vm create's validate step.
func (p *Provisioner) CheckVM(ctx context.Context, req VMRequest) error {
	return p.newVMRun(req, "vm create").validate(ctx)
}

// CheckOpenWrt is openwrt create's validate step.
func (p *Provisioner) CheckOpenWrt(ctx context.Context, req OpenWrtRequest) error {
	return p.newOpenWrtRun(req).validate(ctx)
}

// CheckOpenWrtVM is openwrt vm's validate step.
func (p *Provisioner) CheckOpenWrtVM(ctx context.Context, req OpenWrtVMRequest) error {
	return p.newOpenWrtVMRun(req).validate(ctx)
}

// PickStorage is the storage preflight would take for need GB of content
// on node: want by name, or StorageAuto for the one with the most room;
// a storage that cannot take it is refused in preflight's words.
func (p *Provisioner) PickStorage(ctx context.Context, node, want, content string, needGB int) (StorageChoice, error) {
	storages, err := p.api.Storages(ctx, node)
	if err != nil {
		return StorageChoice{}, apiProblem("list storages on "+node, err)
	}
	return ChooseStorage(storages, want, content, int64(needGB)<<30)
}

// CheckAddressFree refuses ip when a guest other than self holds it in
// its config, as preflight does; where names what to change.
func (p *Provisioner) CheckAddressFree(ctx context.Context, ip netip.Addr, self int, where string) error {
	return p.checkAddressesFree(ctx, []netip.Addr{ip}, self, where)
}
