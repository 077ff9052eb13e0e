package provisioner

import (
	"context"
	"net/netip"
	"time"

	"github.com/migrahosting/cloudpods/ipam"
)

// Addresses is what the flows need from IPAM.
type Addresses interface {
	// Reserve holds ip and vmid for hostname (either may be zero: allocate
	// one). Reserving again for the same owner and hostname returns the same
	// lease, so a re-run after a crash converges.
	Reserve(ctx context.Context, req AddressRequest) (AddressLease, error)
	// Peek is the lease Reserve would hand out now, reserving nothing: a
	// dry run says from it what a create would get.
	Peek(ctx context.Context, req AddressRequest) (AddressLease, error)
	// Adopt records the lease of a pod PVE has (the marker on req.VMID is
	// req.Owner's, configured with req.IP), assigned, whatever the registry
	// held: a create converging on its pod gets the lease back from a
	// fresh registry.
	Adopt(ctx context.Context, req AddressRequest) (AddressLease, error)
	// Assign marks the lease as in use by a running pod.
	Assign(ctx context.Context, lease AddressLease) error
	// Release frees the lease (rollback, destroy).
	Release(ctx context.Context, lease AddressLease) error
}

type AddressRequest struct {
	Hostname string
	Tenant   string
	Owner    string
	IP       netip.Addr
	VMID     int
	// Guests are the cluster's guests as the flow just read them; nil
	// lets IPAM read them.
	Guests []ipam.Guest
	// OwnVMID: VMID is the guest's own (ct create, a VM), not one IPAM
	// hands out; the guest may lease several addresses (ipam.Request).
	OwnVMID bool
}

type AddressLease struct {
	IP       netip.Addr
	VMID     int
	Hostname string
	Owner    string
}

// LeaseOwner is the IPAM owner key of a pod: the same tenant and hostname
// get the same lease back, whoever asks (create's reserve step, the
// service's early allocation, a re-run after a crash).
func LeaseOwner(tenant, hostname string) string { return "cloudpods/" + tenant + "/" + hostname }

// Allocates reports whether the provisioner has IPAM to pick VMIDs and
// addresses from.
func (p *Provisioner) Allocates() bool { return p.opts.Addresses != nil }

// Reserve holds the next free VMID and address for tenant's hostname under
// the pod's lease owner (LeaseOwner): the very lease create's reserve step
// then gets back, so the service can answer a create that leaves both out
// with the pair at once. Asking again returns the same pair. IPAM's
// refusals (nothing free, the hostname holding other numbers) are
// conflicts by KindOf.
func (p *Provisioner) Reserve(ctx context.Context, hostname, tenant string) (int, netip.Addr, error) {
	if p.opts.Addresses == nil {
		return 0, netip.Addr{}, problemf(ErrInvalidSpec, "no IPAM is configured to pick a VMID and address for %s: give both", hostname)
	}
	v := p.newView()
	if err := v.look(ctx, look{since: time.Now(), onDemand: p.opts.Inventory.AddressesFromSDN}); err != nil {
		return 0, netip.Addr{}, apiProblem("read the cluster's guests", err)
	}
	l, err := p.opts.Addresses.Reserve(ctx, AddressRequest{Hostname: hostname, Tenant: tenant, Owner: LeaseOwner(tenant, hostname), Guests: v.ipamGuests()})
	if err != nil {
		return 0, netip.Addr{}, err
	}
	return l.VMID, l.IP, nil
}
