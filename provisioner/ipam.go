package provisioner

import (
	"context"

	"github.com/migrahosting/cloudpods/ipam"
)

// IPAM adapts an ipam.Allocator to what the flows need.
type IPAM struct{ Allocator *ipam.Allocator }

var _ Addresses = IPAM{}

func (i IPAM) Reserve(ctx context.Context, req AddressRequest) (AddressLease, error) {
	l, err := i.Allocator.Reserve(ctx, ipam.Request{Hostname: req.Hostname, Tenant: req.Tenant, Owner: req.Owner, IP: req.IP, VMID: req.VMID})
	if err != nil {
		return AddressLease{}, err
	}
	return AddressLease{IP: l.IP, VMID: l.VMID, Hostname: l.Hostname, Owner: l.Owner}, nil
}

func (i IPAM) Assign(ctx context.Context, lease AddressLease) error {
	_, err := i.Allocator.Assign(ctx, ipam.Lease{Pool: i.Allocator.Pool().Name, IP: lease.IP, VMID: lease.VMID, Hostname: lease.Hostname, Owner: lease.Owner})
	return err
}

func (i IPAM) Release(ctx context.Context, lease AddressLease) error {
	_, err := i.Allocator.Release(ctx, ipam.Ref{IP: lease.IP})
	return err
}
