// Package pve is the provisioner's narrow, domain-shaped view of the Proxmox
// VE API. The provisioner depends on the API interface only; the one
// implementation lives in pve/goproxmox.
package pve

import (
	"context"
	"time"
)

// API is every PVE call CloudPods makes.
type API interface {
	Version(ctx context.Context) (Version, error)
	// Permissions lists the calling token's effective privileges by path.
	Permissions(ctx context.Context) (Permissions, error)
	NodeStatus(ctx context.Context, node string) (NodeStatus, error)
	Storages(ctx context.Context, node string) ([]Storage, error)
	NetworkInterfaces(ctx context.Context, node string) ([]HostInterface, error)
	// Guests lists every guest in the cluster (cluster/resources type=vm).
	Guests(ctx context.Context) ([]Guest, error)
	// VMIDFree asks /cluster/nextid?vmid= whether vmid is unused cluster-wide.
	VMIDFree(ctx context.Context, vmid int) (bool, error)

	ContainerConfig(ctx context.Context, node string, vmid int) (Config, error)
	VMConfig(ctx context.Context, node string, vmid int) (Config, error)
	ContainerStatus(ctx context.Context, node string, vmid int) (GuestStatus, error)
	ContainerInterfaces(ctx context.Context, node string, vmid int) ([]GuestInterface, error)

	CloneContainer(ctx context.Context, node string, source int, opts CloneOptions) (string, error)
	// UpdateContainerConfig is PVE's synchronous PUT …/config.
	UpdateContainerConfig(ctx context.Context, node string, vmid int, upd ConfigUpdate) error
	StartContainer(ctx context.Context, node string, vmid int) (string, error)
	ShutdownContainer(ctx context.Context, node string, vmid int, timeout time.Duration, forceStop bool) (string, error)
	StopContainer(ctx context.Context, node string, vmid int) (string, error)
	DeleteContainer(ctx context.Context, node string, vmid int, opts DeleteOptions) (string, error)
	Snapshots(ctx context.Context, node string, vmid int) ([]Snapshot, error)

	Backup(ctx context.Context, node string, opts BackupOptions) (string, error)
	StorageContent(ctx context.Context, node, storage, content string) ([]Volume, error)

	TaskStatus(ctx context.Context, node, upid string) (TaskStatus, error)
	// TaskLog reads lines from start; limit 0 reads to the end.
	TaskLog(ctx context.Context, node, upid string, start, limit int) ([]string, error)

	// OpenTerminal opens the container's console (termproxy + vncwebsocket).
	OpenTerminal(ctx context.Context, node string, vmid int) (Terminal, error)
}

// Terminal is an attached console: a raw PTY stream.
type Terminal interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	Resize(cols, rows int) error
	Close() error
}

type Version struct {
	Release string `json:"release"`
	Version string `json:"version"`
	RepoID  string `json:"repoid"`
}

// Permissions maps an ACL path to the privileges held there.
type Permissions map[string]map[string]bool

// Has reports whether priv is held on path or inherited from a parent path,
// as PVE's ACLs propagate by default.
func (p Permissions) Has(path, priv string) bool {
	for {
		if p[path][priv] {
			return true
		}
		if path == "/" || path == "" {
			return false
		}
		i := len(path) - 1
		for i > 0 && path[i] != '/' {
			i--
		}
		path = path[:i]
		if path == "" {
			path = "/"
		}
	}
}

type NodeStatus struct {
	Node       string
	Online     bool
	PVEVersion string
	Uptime     time.Duration
}

type Storage struct {
	ID      string
	Type    string
	Content []string
	Active  bool
	Enabled bool
	Shared  bool
	Total   int64
	Used    int64
	Avail   int64
}

type HostInterface struct {
	Name   string
	Type   string // bridge, eth, bond, vlan…
	Active bool
}

// Guest is one row of cluster/resources.
type Guest struct {
	VMID     int
	Type     string // lxc | qemu
	Node     string
	Name     string
	Status   string
	Template bool
	Lock     string
	Tags     string
}

// Config is a guest's configuration as PVE stores it, values as strings.
type Config struct {
	Values map[string]string
	Digest string
}

func (c Config) Get(key string) string { return c.Values[key] }

type GuestStatus struct {
	VMID    int
	Status  string // running | stopped
	Name    string
	Lock    string
	Uptime  time.Duration
	CPU     float64
	CPUs    int
	Mem     int64
	MaxMem  int64
	Disk    int64
	MaxDisk int64
	Swap    int64
	MaxSwap int64
	HA      bool
	Tags    string
}

type GuestInterface struct {
	Name   string
	HWAddr string
	Inet   string // a.b.c.d/p
	Inet6  string
}

type CloneOptions struct {
	NewID       int
	Hostname    string
	Description string
	Storage     string
	Full        bool
	Pool        string
}

type ConfigUpdate struct {
	Set    map[string]string
	Delete []string
	Digest string
}

type DeleteOptions struct {
	Force                    bool
	Purge                    bool
	DestroyUnreferencedDisks bool
}

type Snapshot struct {
	Name        string
	Description string
}

type BackupOptions struct {
	VMID          int
	Storage       string
	Mode          string
	Compress      string
	NotesTemplate string
}

type Volume struct {
	VolID   string
	Format  string
	Size    int64
	CTime   time.Time
	VMID    int
	Notes   string
	Subtype string
}

type TaskStatus struct {
	UPID       string
	Node       string
	Type       string
	ID         string
	User       string
	TokenID    string
	Status     string // running | stopped
	ExitStatus string // OK, WARNINGS: N, or the error
	StartTime  time.Time
}

func (t TaskStatus) Running() bool { return t.Status == "running" }

// Succeeded is true for OK and for "WARNINGS: N": PVE counts warnings as
// success, so do we.
func (t TaskStatus) Succeeded() bool {
	return t.Status == "stopped" && (t.ExitStatus == "OK" || len(t.ExitStatus) > 9 && t.ExitStatus[:9] == "WARNINGS:")
}
