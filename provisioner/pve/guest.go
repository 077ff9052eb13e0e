package pve

import "strconv"

// GuestKind is what a PVE guest is: a container (lxc) or a virtual machine
// (qemu). It is the path segment PVE's API uses for each.
type GuestKind string

const (
	LXC  GuestKind = "lxc"
	QEMU GuestKind = "qemu"
)

// Noun is what PVE's own messages call a guest of the kind: "CT" or "VM".
// The zero kind reads as a container, the only kind flows made before VMs.
func (k GuestKind) Noun() string {
	if k == QEMU {
		return "VM"
	}
	return "CT"
}

// Valid reports whether k is a kind PVE knows.
func (k GuestKind) Valid() bool { return k == LXC || k == QEMU }

// GuestRef names one guest: its kind, the node it lives on and its VMID.
// Every guest call of the API takes one, so one set of methods serves
// containers and VMs.
type GuestRef struct {
	Kind GuestKind
	Node string
	VMID int
}

// CT is the container vmid on node.
func CT(node string, vmid int) GuestRef { return GuestRef{Kind: LXC, Node: node, VMID: vmid} }

// VM is the virtual machine vmid on node.
func VM(node string, vmid int) GuestRef { return GuestRef{Kind: QEMU, Node: node, VMID: vmid} }

// String is "CT 9101" or "VM 9101", as PVE's messages say.
func (g GuestRef) String() string { return g.Kind.Noun() + " " + strconv.Itoa(g.VMID) }

// Ref is the guest a cluster/resources row describes.
func (g Guest) Ref() GuestRef { return GuestRef{Kind: g.Type, Node: g.Node, VMID: g.VMID} }

// Started is PVE's answer to a call that hands its work to a worker task.
// Most such calls answer with the worker's UPID; a few answer null although
// they fork one (a container's template conversion), and then UPID is ""
// and the caller must watch the state the work brings about instead (the
// config's template flag), since there is no task to wait for.
type Started struct {
	UPID string
}

// Task reports whether PVE named the worker task, so it can be waited for.
func (s Started) Task() bool { return s.UPID != "" }
