package ipam

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinels for errors.Is.
var (
	// ErrAddressInUse: the requested address is held by a lease, a PVE guest
	// or (with a claimer) another controller. The *InUseError says by whom.
	ErrAddressInUse = errors.New("address in use")
	// ErrVMIDInUse: the requested VMID is held by a lease or a PVE guest.
	ErrVMIDInUse = errors.New("vmid in use")
	// ErrOutOfRange: the requested address or VMID is outside what the pool
	// may hand out (outside the range, the gateway, a reserved address).
	ErrOutOfRange = errors.New("out of range")
	// ErrPoolExhausted: no free address or VMID is left.
	ErrPoolExhausted = errors.New("pool exhausted")
	// ErrNotFound: no lease matches.
	ErrNotFound = errors.New("lease not found")
	// ErrLeaseConflict: the owner and hostname already hold a lease, but not
	// the address or VMID the request names.
	ErrLeaseConflict = errors.New("lease conflict")
	// ErrSDNIPExists is what an SDN implementation returns (wrapped) when PVE
	// answers "IP '<ip>' already exist". SDNIPExists also recognises the
	// bare message.
	ErrSDNIPExists = errors.New("ip already exists in SDN IPAM")
	// ErrSDNIPMissing: PVE answered "IP '<ip>' does not exist in IPAM DB".
	ErrSDNIPMissing = errors.New("ip does not exist in SDN IPAM")
	// ErrRegistryCorrupt: the registry file exists but holds no registry
	// (empty, truncated, unparsable, or without its lease list). It is
	// never taken as an empty registry and never overwritten. The
	// *RegistryError says what is wrong and how to recover.
	ErrRegistryCorrupt = errors.New("ipam registry corrupt")
)

// RegistryError is a registry file that cannot be used as it is.
type RegistryError struct {
	Path    string
	Problem string
}

func (e *RegistryError) Error() string {
	return fmt.Sprintf("IPAM registry %s %s: nothing was changed; restore it from a backup, or move it aside and run `cloudpod ip sync --repair` to rebuild it from PVE", e.Path, e.Problem)
}

func (e *RegistryError) Is(target error) bool { return target == ErrRegistryCorrupt }

// InUseError names who holds an address or VMID. It matches ErrAddressInUse
// or ErrVMIDInUse with errors.Is.
type InUseError struct {
	// What is the contested resource: "address 10.1.10.95" or "vmid 9105".
	What string
	// Holder describes the holder: a lease, a PVE guest or the SDN IPAM.
	Holder string
	vmid   bool
}

func (e *InUseError) Error() string { return fmt.Sprintf("%s is in use by %s", e.What, e.Holder) }

func (e *InUseError) Is(target error) bool {
	if e.vmid {
		return target == ErrVMIDInUse
	}
	return target == ErrAddressInUse
}

// SDNIPExists reports whether err is PVE's SDN IPAM refusing a duplicate.
// PVE answers HTTP 500 with "IP '<ip>' already exist" (Ipams/PVEPlugin.pm
// add_ip), which no generic status mapping recognises, so an adapter that
// does not wrap ErrSDNIPExists is still understood by its message.
func SDNIPExists(err error) bool {
	return err != nil && (errors.Is(err, ErrSDNIPExists) || strings.Contains(err.Error(), "' already exist"))
}

// SDNIPMissing reports whether err is PVE's SDN IPAM answering a DELETE for
// an address it does not hold ("IP '<ip>' does not exist in IPAM DB").
func SDNIPMissing(err error) bool {
	return err != nil && (errors.Is(err, ErrSDNIPMissing) || strings.Contains(err.Error(), "does not exist in IPAM DB"))
}
