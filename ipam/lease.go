package ipam

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"time"
)

// State is where a lease is in its life.
type State string

const (
	// StateReserved: handed out, the pod is being created. Expires.
	StateReserved State = "reserved"
	// StateAssigned: the pod exists. Never expires.
	StateAssigned State = "assigned"
	// StateReleased: free again; kept for history until the address or VMID
	// is handed out anew.
	StateReleased State = "released"
)

// Sources of a lease.
const (
	SourceCloudpod = "cloudpod" // handed out by this allocator
	SourcePVE      = "pve"      // found on a PVE guest by Sync
)

// Lease is one registry entry: an address and a VMID held for a pod.
type Lease struct {
	Pool string `json:"pool"`
	// IP is zero for a PVE guest recorded by Sync only for its VMID.
	IP       netip.Addr `json:"ip,omitzero"`
	VMID     int        `json:"vmid,omitempty"`
	Hostname string     `json:"hostname,omitempty"`
	Tenant   string     `json:"tenant,omitempty"`
	// Owner is the job or controller that asked; with Hostname it makes
	// Reserve idempotent.
	Owner  string `json:"owner,omitempty"`
	MAC    string `json:"mac,omitempty"`
	State  State  `json:"state"`
	Source string `json:"source"`
	// Note says why the lease is in its state when that is not obvious
	// ("reservation expired", "no guest in PVE").
	Note       string    `json:"note,omitempty"`
	ReservedAt time.Time `json:"reserved_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	// ExpiresAt is set while the lease is reserved.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// Expired reports whether the lease is a reservation past its expiry.
func (l Lease) Expired(now time.Time) bool {
	return l.State == StateReserved && !l.ExpiresAt.IsZero() && !now.Before(l.ExpiresAt)
}

// Active reports whether the lease holds its address and VMID at now.
func (l Lease) Active(now time.Time) bool {
	return l.State == StateAssigned || (l.State == StateReserved && !l.Expired(now))
}

// Registry is the whole registry document.
type Registry struct {
	Version int     `json:"version"`
	Leases  []Lease `json:"leases"`
}

// registryVersion is the document format this package writes.
const registryVersion = 1

// Store is a registry backend. Update is the only way to change the registry
// and is atomic against every other Update on the same registry, whichever
// process runs it.
type Store interface {
	// Load returns a consistent snapshot of the registry.
	Load(ctx context.Context) (*Registry, error)
	// Update runs fn on the current registry under an exclusive lock and
	// persists the result when fn returns nil. An error from fn discards
	// fn's changes and is returned as is.
	Update(ctx context.Context, fn func(*Registry) error) error
}

// sortLeases orders leases by address, then VMID, for stable output.
func sortLeases(ls []Lease) {
	slices.SortStableFunc(ls, func(a, b Lease) int {
		if c := a.IP.Compare(b.IP); c != 0 {
			return c
		}
		return cmp.Compare(a.VMID, b.VMID)
	})
}
