package provisioner

import (
	"context"
	"net/netip"
	"time"

	"github.com/migrahosting/cloudpods/ipam"
)

// The service reserves a VMID and an address for a create that leaves both
// out (Reserve, addresses.go) once the request is admitted, and may then
// refuse it after all (another job took the pair meanwhile, a shutdown):
// Release gives that reservation back. While the job waits in the queue,
// Renew keeps the reservation from expiring. Both act only on a
// reservation the pod's owner holds with exactly that pair, read from the
// registry: a lease a pod holds (assigned), another owner's, or one that
// has expired is left alone.

// heldLeases is the capability Release and Renew need from Addresses: the
// lease an owner and hostname hold now, if any. IPAM has it; without it
// they do nothing and a reservation expires on its own.
type heldLeases interface {
	Held(ctx context.Context, owner, hostname string, now time.Time) (lease AddressLease, reserved, ok bool, err error)
}

// Held is the lease owner and hostname hold in the registry, active at
// now; reserved says no pod holds it yet.
func (i IPAM) Held(ctx context.Context, owner, hostname string, now time.Time) (AddressLease, bool, bool, error) {
	leases, err := i.Allocator.List(ctx)
	if err != nil {
		return AddressLease{}, false, false, err
	}
	for _, l := range leases {
		if l.Pool == i.Allocator.Pool().Name && l.Owner == owner && l.Hostname == hostname && l.Active(now) {
			return AddressLease{IP: l.IP, VMID: l.VMID, Hostname: l.Hostname, Owner: l.Owner}, l.State == ipam.StateReserved, true, nil
		}
	}
	return AddressLease{}, false, false, nil
}

// onReservation calls do with the reservation tenant's hostname holds with
// exactly vmid and ip; without one (or without IPAM) it does nothing.
func (p *Provisioner) onReservation(ctx context.Context, hostname, tenant string, vmid int, ip netip.Addr, do func(AddressLease) error) error {
	if p.opts.Addresses == nil {
		return nil
	}
	h, ok := p.opts.Addresses.(heldLeases)
	if !ok {
		return nil
	}
	l, reserved, held, err := h.Held(ctx, LeaseOwner(tenant, hostname), hostname, p.opts.Now())
	if err != nil || !held || !reserved || l.VMID != vmid || l.IP != ip {
		return err
	}
	return do(l)
}

// Release gives back the reservation Reserve made for tenant's hostname,
// when it still is one with exactly vmid and ip.
func (p *Provisioner) Release(ctx context.Context, hostname, tenant string, vmid int, ip netip.Addr) error {
	return p.onReservation(ctx, hostname, tenant, vmid, ip, func(l AddressLease) error {
		return p.opts.Addresses.Release(ctx, l)
	})
}

// Renew keeps the reservation of tenant's hostname with exactly vmid and
// ip from expiring (reserving it again renews it); an expired one is left
// for the create's reserve step to take again.
func (p *Provisioner) Renew(ctx context.Context, hostname, tenant string, vmid int, ip netip.Addr) error {
	return p.onReservation(ctx, hostname, tenant, vmid, ip, func(l AddressLease) error {
		_, err := p.opts.Addresses.Reserve(ctx, AddressRequest{Hostname: hostname, Tenant: tenant, Owner: l.Owner, IP: ip, VMID: vmid})
		return err
	})
}
