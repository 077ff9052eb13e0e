// Package ipam allocates IPv4 addresses from a configured pool and VMIDs from
// a configured range for CloudPods pods.
//
// Leases live in a registry behind the Store interface; FileStore, a JSON
// file guarded by flock(2) and replaced by rename, is the default backend and
// is safe for concurrent processes on one host. PVE is the truth: before an
// address or VMID is handed out the Allocator asks an Inventory what the
// cluster's guests use, so an address typed into the PVE GUI by hand is never
// given to a second pod, and Sync reports drift in both directions.
//
// Controllers on different hosts do not share a registry file. For them the
// pve-sdn backend adds an SDNClaimer (WithClaimer): every address is also
// POSTed to PVE's SDN IPAM, which the whole cluster shares, and whoever's
// POST succeeds holds it.
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
