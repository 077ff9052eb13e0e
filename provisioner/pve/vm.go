package pve

import "context"

// VMCalls are the calls only the VM flows make: growing a disk after an
// import, the QEMU guest agent (qemu-server API2/Qemu/Agent.pm), and the
// cluster's resource mappings, the one way an API token may pass a host
// device to a VM.
type VMCalls interface {
	// ResizeDisk grows disk (scsi0, virtio0…) of g to size (PVE's form:
	// "16G", or "+2G" to add); the answer names the resize task. PVE
	// refuses to shrink, inside the task.
	ResizeDisk(ctx context.Context, g GuestRef, disk, size string) (string, error)
	// AgentPing asks a VM's guest agent whether it answers (POST
	// agent/ping); ErrAgentNotRunning while it does not.
	AgentPing(ctx context.Context, g GuestRef) error
	// AgentExec starts argv in the guest (POST agent/exec; command as an
	// array), with input on its stdin; the answer is the process id
	// AgentExecStatus takes.
	AgentExec(ctx context.Context, g GuestRef, argv []string, input string) (int, error)
	// AgentExecStatus is GET agent/exec-status: whether the process has
	// exited, its exit code and output (PVE decodes QGA's base64).
	AgentExecStatus(ctx context.Context, g GuestRef, pid int) (ExecStatus, error)
	// Mappings lists the cluster's resource mappings of a type, "pci" or
	// "usb" (GET /cluster/mapping/{type}); a token sees the ones it holds
	// Mapping.Use, .Modify or .Audit on.
	Mappings(ctx context.Context, typ string) ([]Mapping, error)
}

// ExecStatus is a guest agent process's state (qemu_exec_status).
type ExecStatus struct {
	Exited       bool
	ExitCode     int
	Signal       int
	Out, Err     string
	OutTruncated bool
	ErrTruncated bool
}

// Mapping is one cluster resource mapping (mapping/pci.cfg, usb.cfg).
type Mapping struct {
	ID          string
	Description string
	// Map is one "node=…,path=…,id=…" entry per node.
	Map []string
}
