package pve

import "time"

// TaskFilter selects tasks of a node (API.Tasks).
type TaskFilter struct {
	// Type is the task type (typefilter): vzdump, vzclone…; "" is any.
	Type string
	// VMID is the guest the task is about; 0 is any.
	VMID int
	// Since drops tasks started before it (PVE's clock); zero keeps all.
	Since time.Time
	// Own keeps only the tasks this client's API token started (the user
	// in the UPID): another user's backup of the same CT is not ours.
	Own bool
	// Finished lists only finished tasks (PVE's task archive), with their
	// end times; else running ones come first.
	Finished bool
	// Limit caps how many tasks PVE returns (its default is 50); 0 keeps
	// PVE's default.
	Limit int
}
