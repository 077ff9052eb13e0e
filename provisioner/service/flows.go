// Package service is `cloudpod serve`: the HTTP JSON API the hosting panel
// calls to provision CloudPods. It runs the provisioner's flows — the very
// functions the CLI calls — as jobs on a bounded pool of workers fed by a
// bounded queue, and persists every job so that a restart finishes what was
// in flight instead of forgetting it.
package service

import (
	"context"
	"net/netip"

	"github.com/migrahosting/cloudpods/provisioner"
)

// Flows are the provisioner functions the service runs. The command passes
// a *provisioner.Provisioner; handler tests pass a small fake where PVE's
// behaviour does not matter.
type Flows interface {
	Create(ctx context.Context, req provisioner.CreateRequest) (provisioner.CreateResult, error)
	Destroy(ctx context.Context, req provisioner.DestroyRequest) (provisioner.DestroyResult, error)
	Backup(ctx context.Context, req provisioner.BackupRequest) (provisioner.Backup, error)
	Health(ctx context.Context, node string, vmid int, deep bool) (provisioner.Health, error)
	List(ctx context.Context, tenant, status string) ([]provisioner.Pod, error)
	Inspect(ctx context.Context, node string, vmid int) (provisioner.DestroyResult, error)
	// NodeLimits is the most one pod can have on node (its CPUs and
	// memory): a create asking for more is refused at once.
	NodeLimits(ctx context.Context, node string) (provisioner.NodeLimits, error)
}

var _ Flows = (*provisioner.Provisioner)(nil)

// Allocator hands out a VMID and an address when a create leaves both out.
// Reserving again for the same hostname and tenant must return the same
// pair, so a retried request does not burn a second address. The command
// passes the *provisioner.Provisioner when it has IPAM: its Reserve holds
// the lease under the pod's owner (provisioner.LeaseOwner), which the
// create flow's reserve step then gets back, so one allocator serves the
// process.
type Allocator interface {
	Reserve(ctx context.Context, hostname, tenant string) (vmid int, ip netip.Addr, err error)
	// Release gives back what Reserve handed out for a request the
	// service then refused: only a reservation of this hostname and
	// tenant with exactly vmid and ip, never a lease a pod holds.
	Release(ctx context.Context, hostname, tenant string, vmid int, ip netip.Addr) error
	// Renew keeps that reservation from expiring while its job waits in
	// the queue; one that has expired is left alone.
	Renew(ctx context.Context, hostname, tenant string, vmid int, ip netip.Addr) error
}

var _ Allocator = (*provisioner.Provisioner)(nil)
