// Package pve is the provisioner's narrow, domain-shaped view of the Proxmox
// VE API. The provisioner depends on the API interface only; the one
// implementation lives in pve/goproxmox.
package pve

import (
	"context"
	"net/netip"
	"time"
)

// API is every PVE call CloudPods makes. Guest calls take a GuestRef, so
// one set of methods serves containers and VMs: the adapter picks PVE's
// lxc or qemu path from the reference's kind.
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
	// Nodes lists the cluster's nodes with their load (cluster/resources
	// type=node), offline ones included.
	Nodes(ctx context.Context) ([]Node, error)
	// MigrateGuest moves a guest to another node (POST …/migrate; offline,
	// a running container with restart); the answer names the vzmigrate
	// or qmigrate task, which runs on the guest's node.
	MigrateGuest(ctx context.Context, g GuestRef, target string, opts MigrateOptions) (string, error)

	GuestConfig(ctx context.Context, g GuestRef) (Config, error)
	// UpdateGuestConfig is PVE's synchronous PUT …/config: the change is
	// made (hot-plugged or left pending) when it answers.
	UpdateGuestConfig(ctx context.Context, g GuestRef, upd ConfigUpdate) error
	// UpdateGuestConfigAsync is a VM's POST …/config: a worker task makes
	// the change (a disk import or resize outlasts a request), and its UPID
	// is the answer ("" when PVE finished before answering). Containers
	// have no such form: it fails for them without calling PVE.
	UpdateGuestConfigAsync(ctx context.Context, g GuestRef, upd ConfigUpdate) (Started, error)
	GuestStatus(ctx context.Context, g GuestRef) (GuestStatus, error)
	// GuestInterfaces is what the guest reports of its network: a
	// container's …/interfaces, a VM's guest agent (network-get-interfaces).
	GuestInterfaces(ctx context.Context, g GuestRef) ([]GuestInterface, error)
	Snapshots(ctx context.Context, g GuestRef) ([]Snapshot, error)

	// CloneGuest clones source (a template, or a stopped guest for a full
	// clone) to opts.NewID on source's node, as a guest of source's kind.
	CloneGuest(ctx context.Context, source GuestRef, opts CloneOptions) (string, error)
	StartGuest(ctx context.Context, g GuestRef) (string, error)
	ShutdownGuest(ctx context.Context, g GuestRef, timeout time.Duration, forceStop bool) (string, error)
	StopGuest(ctx context.Context, g GuestRef) (string, error)
	DeleteGuest(ctx context.Context, g GuestRef, opts DeleteOptions) (string, error)
	// ConvertToTemplate turns a stopped guest into a template: a VM's
	// answer names the qmtemplate task; a container's is null although PVE
	// forks a vztemplate worker, so Started.Task() is false and the config's
	// template flag tells when it is done.
	ConvertToTemplate(ctx context.Context, g GuestRef) (Started, error)

	// CreateGuest creates g from PVE's create parameters (POST
	// /nodes/{node}/lxc or /qemu: config keys and create-only ones such as
	// ostemplate, storage, password, ssh-public-keys, start); its answer
	// names the vzcreate or qmcreate task. Secrets in params are never
	// logged.
	CreateGuest(ctx context.Context, g GuestRef, params map[string]string) (string, error)

	Backup(ctx context.Context, node string, opts BackupOptions) (string, error)
	StorageContent(ctx context.Context, node, storage, content string) ([]Volume, error)
	// Appliances is PVE's appliance catalogue (GET /nodes/{node}/aplinfo).
	Appliances(ctx context.Context, node string) ([]Appliance, error)
	// DownloadAppliance has the node fetch a catalogue entry onto storage
	// (POST /nodes/{node}/aplinfo), verified against the catalogue's
	// checksum; the answer names the download task.
	DownloadAppliance(ctx context.Context, node, storage, template string) (string, error)
	// DownloadURL has the node fetch a URL onto storage (download-url);
	// the answer names the download task.
	DownloadURL(ctx context.Context, node, storage string, opts DownloadOptions) (string, error)
	// UploadFile sends a file to storage (upload, multipart); the answer
	// names the imgcopy task that moves it into place.
	UploadFile(ctx context.Context, node, storage string, opts UploadOptions) (string, error)
	// DeleteVolume removes a volume (DELETE …/storage/{storage}/content/
	// {volume}); the answer names the task.
	DeleteVolume(ctx context.Context, node, volid string) (string, error)

	TaskStatus(ctx context.Context, node, upid string) (TaskStatus, error)
	// Tasks lists node's tasks that f selects, newest first (GET
	// /nodes/{node}/tasks): with running ones (source=all), how a call
	// whose answer was lost finds the task it started; finished ones only
	// (f.Finished, source=archive), with their end times, how long tasks
	// of a type take on the node.
	Tasks(ctx context.Context, node string, f TaskFilter) ([]TaskStatus, error)
	// TaskLog reads lines from start; limit 0 reads to the end.
	TaskLog(ctx context.Context, node, upid string, start, limit int) ([]string, error)

	// OpenTerminal opens the guest's console (termproxy + vncwebsocket): a
	// container's shell, a VM's serial console.
	OpenTerminal(ctx context.Context, g GuestRef) (Terminal, error)
	// ConsolePath says how OpenTerminal will reach node's consoles, and
	// why: a password login when one is configured, else the API token,
	// judged by the node's package versions. Asked before the console, it
	// also tells OpenTerminal what a console closed after the ticket means
	// (a refused token or a refused ticket). It never fails: what cannot be
	// read is ConsoleTokensUnknown, with the reason.
	ConsolePath(ctx context.Context, node string) ConsolePath

	// SDN is PVE's SDN IPAM, an optional capability: ok is false where the
	// adapter or the cluster has none.
	SDN() (sdn SDN, ok bool)

	// VM calls (vm.go): disk resize, the guest agent, resource mappings.
	VMCalls
}

// SDN is the part of PVE's SDN API that IPAM's pve-sdn backend uses (PVE
// 8.1+, a vnet in a zone with ipam=pve); ipam.SDN is the same method set.
type SDN interface {
	// AddIP is POST /cluster/sdn/vnets/{vnet}/ips (mac may be empty).
	AddIP(ctx context.Context, zone, vnet string, ip netip.Addr, mac string) error
	// DeleteIP is DELETE /cluster/sdn/vnets/{vnet}/ips.
	DeleteIP(ctx context.Context, zone, vnet string, ip netip.Addr) error
	// ListIPs lists the vnet's addresses (PVE's IPAM status rows).
	ListIPs(ctx context.Context, zone, vnet string) ([]netip.Addr, error)
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
	// CPUs and Memory (bytes) are the node's logical CPUs and RAM, from
	// its status (cpuinfo.cpus, memory.total): what one guest can get at
	// most. Zero when PVE did not say (an offline node).
	CPUs   int
	Memory int64
	// CPULoad (0..1) and MemoryUsed are how busy the node is now (cpu,
	// memory.used).
	CPULoad    float64
	MemoryUsed int64
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

// Guest is one row of cluster/resources. Type and Node come from the
// cluster's VM list, Lock and Tags from the guest's config file as it is
// now; Name, Status, Template, Uptime and the Max* figures from the status
// daemon's last report (pvestatd, every 10 s or so).
type Guest struct {
	VMID     int
	Type     GuestKind
	Node     string
	Name     string
	Status   string
	Template bool
	Lock     string
	Tags     string
	// Uptime is how long the guest has run (0 when stopped).
	Uptime time.Duration
	// MaxCPU, MaxMem and MaxDisk are the CPUs, memory and root disk its
	// config gives it (bytes).
	MaxCPU  float64
	MaxMem  int64
	MaxDisk int64
	// Mem is what it uses now (bytes).
	Mem int64
}

// Node is one row of cluster/resources type=node. The figures are PVE's
// RRD values (about 10 s old) and absent (zero) for an offline node or a
// token without Sys.Audit on /nodes/{node}.
type Node struct {
	Name string
	// Status is online, offline or unknown.
	Status string
	// CPU is the share of MaxCPU in use, 0 to 1.
	CPU    float64
	MaxCPU int
	Mem    int64
	MaxMem int64
}

// Online says the node is in the quorum and answering.
func (n Node) Online() bool { return n.Status == "online" }

type MigrateOptions struct {
	// Restart shuts a running container down, moves it and starts it on
	// the target (containers have no live migration).
	Restart bool
	// TargetStorage maps the guest's local volumes to a storage of the
	// target ("" keeps each on the storage of the same name).
	TargetStorage string
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
	NewID int
	// Hostname is a container's hostname, a VM's name.
	Hostname    string
	Description string
	Storage     string
	Full        bool
	Pool        string
	// Target is the node the clone ends up on; "" is the source's node.
	// PVE allows another node only when the clone lands on shared storage.
	Target string
}

type ConfigUpdate struct {
	Set    map[string]string
	Delete []string
	Digest string
}

type DeleteOptions struct {
	// Force destroys a running container; VMs have no such option.
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
	// VolID is storage:type/name, e.g. local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst.
	VolID string
	// Content is the volume's content type (vztmpl, iso, import, backup…).
	Content string
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
	// EndTime is when a finished task ended, as the task list says (its
	// status does not): whole seconds, like StartTime.
	EndTime time.Time
}

func (t TaskStatus) Running() bool { return t.Status == "running" }

// Succeeded is true for OK and for "WARNINGS: N": PVE counts warnings as
// success, so do we.
func (t TaskStatus) Succeeded() bool {
	return t.Status == "stopped" && (t.ExitStatus == "OK" || len(t.ExitStatus) > 9 && t.ExitStatus[:9] == "WARNINGS:")
}
