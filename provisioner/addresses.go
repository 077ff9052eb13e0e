package provisioner

import (
	"context"
	"net/netip"
)

// Addresses is what the flows need from IPAM.
type Addresses interface {
	// Reserve holds ip and vmid for hostname (either may be zero: allocate
	// one). Reserving again for the same owner and hostname returns the same
	// lease, so a re-run after a crash converges.
	Reserve(ctx context.Context, req AddressRequest) (AddressLease, error)
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
