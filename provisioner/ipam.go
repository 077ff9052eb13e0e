package provisioner

import (
	"context"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// IPAM adapts an ipam.Allocator to what the flows need.
type IPAM struct{ Allocator *ipam.Allocator }

var (
	_ Addresses = IPAM{}
	// The seam's optional SDN capability is what IPAM's pve-sdn backend
	// speaks to.
	_ ipam.SDN = pve.SDN(nil)
)

func (i IPAM) Reserve(ctx context.Context, req AddressRequest) (AddressLease, error) {
	return leaseOf(i.Allocator.Reserve(ctx, ipamRequest(req)))
}

func (i IPAM) Peek(ctx context.Context, req AddressRequest) (AddressLease, error) {
	return leaseOf(i.Allocator.Peek(ctx, ipamRequest(req)))
}

func (i IPAM) Adopt(ctx context.Context, req AddressRequest) (AddressLease, error) {
	return leaseOf(i.Allocator.Adopt(ctx, ipamRequest(req)))
}

func ipamRequest(req AddressRequest) ipam.Request {
	return ipam.Request{Hostname: req.Hostname, Tenant: req.Tenant, Owner: req.Owner, IP: req.IP, VMID: req.VMID, Guests: req.Guests, OwnVMID: req.OwnVMID}
}

func leaseOf(l ipam.Lease, err error) (AddressLease, error) {
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
