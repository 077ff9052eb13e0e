// Package ipam allocates IPv4 addresses from a configured pool and VMIDs from
// a configured range for CloudPods pods.
//
// Leases live in a registry behind the Store interface; FileStore, a JSON
// file guarded by flock(2) and replaced by rename, is the default backend and
// is safe for concurrent processes on one host. Only a registry file that
// does not exist is empty: an existing one that is empty, damaged or has no
// lease list is ErrRegistryCorrupt, never overwritten.
//
// PVE is the truth, the registry a ledger and a lock: before an address or
// VMID is handed out the Allocator asks an Inventory what the cluster's
// guests use, so an address typed into the PVE GUI by hand is never given to
// a second pod; a reservation in flight blocks its numbers, a stale lease
// (assigned to a guest PVE no longer has, expired, released) blocks nothing;
// a pod whose marker names the requester is no obstacle to its own lease,
// and Adopt records it from PVE. Sync reports drift in both directions and
// changes nothing; with repair it brings the registry to PVE's state.
//
// Controllers on different hosts do not share a registry file. The create
// flow settles their races in PVE itself (docs/multi-controller.md); the
// pve-sdn backend adds an SDNClaimer (WithClaimer) where a vnet exists: every
// address is also POSTed to PVE's SDN IPAM, which the whole cluster shares,
// and whoever's POST succeeds holds it.
//
// A create flow:
//
//	path, _ := ipam.DefaultPath()
//	alloc, err := ipam.New(ipam.NewFileStore(path), ipam.DefaultPool(), ipam.DefaultVMIDs(), inventory)
//	lease, err := alloc.Reserve(ctx, ipam.Request{Hostname: "web1", Tenant: "acme", Owner: jobID})
//	// clone to lease.VMID, set net0 ip=alloc.Pool().CIDR(lease.IP), start …
//	lease, err = alloc.Assign(ctx, lease)
//
// A re-run of a crashed create with the same Owner and Hostname gets the same
// lease back. A reservation not assigned within the TTL (15 minutes by
// default) expires and its address and VMID become free again.
package ipam
