// Package pvetest is an in-memory pve.API for the fast test tier: guests
// with configs and power states, tasks that end at once, a console that
// answers the commands the flows run, and faults injected per call. It is
// not an emulation of PVE (pvesim is, for end-to-end tests); it holds what
// flow logic needs — which calls, in which order, with which outcome — in
// microseconds.
package pvetest

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

var _ pve.API = (*Fake)(nil)

// Guest is one guest of the fake.
type Guest struct {
	Kind   pve.GuestKind
	Node   string
	VMID   int
	Config map[string]string
	// Status is running or stopped.
	Status string
	// Files are the guest's files, as its console sees them.
	Files map[string][]byte
	// Snapshots are the names of its snapshots.
	Snapshots []string
}

func (g *Guest) ref() pve.GuestRef { return pve.GuestRef{Kind: g.Kind, Node: g.Node, VMID: g.VMID} }

func (g *Guest) clone() Guest {
	c := *g
	c.Config = copyMap(g.Config)
	c.Files = make(map[string][]byte, len(g.Files))
	for k, v := range g.Files {
		c.Files[k] = append([]byte(nil), v...)
	}
	c.Snapshots = append([]string(nil), g.Snapshots...)
	return c
}

// Call is one API call as the fake saw it.
type Call struct {
	// Method is the pve.API method: "CloneGuest", "UpdateGuestConfig"…
	Method string
	// Guest is the guest called about; zero for other calls.
	Guest pve.GuestRef
	// Arg details the call: a clone's new id, the config keys set.
	Arg string
}

func (c Call) String() string {
	s := c.Method
	if c.Guest.VMID != 0 {
		s += " " + c.Guest.String()
	}
	if c.Arg != "" {
		s += " " + c.Arg
	}
	return s
}

// Fault makes calls of Method fail with Err.
type Fault struct {
	Method string
	// VMID limits the fault to calls about this guest; 0 is any.
	VMID int
	// Nth fires from the Nth matching call on (1-based); 0 from the first.
	Nth int
	// Times is how many calls fire; 0 is one with Nth, every one without.
	Times int
	Err   error
	// After performs the call, then fails: the answer was lost.
	After bool

	seen, fired int
}

// Fake is the in-memory API. Its fields may be set before use.
type Fake struct {
	// Perms are the token's privileges; New grants all of them on /.
	Perms pve.Permissions
	// Release is the PVE release the fake answers ("": 9.1).
	Release string
	// Online is each node's state; New has node pve online.
	Online map[string]bool
	// NodeCPUs and NodeMemory (bytes) are every online node's size; New
	// has pvesim's 16 CPUs and 128 GiB.
	NodeCPUs   int
	NodeMemory int64
	// StorageList and Bridges are every node's storages and bridges;
	// NodeStorageList, where it has a node, that node's storages instead.
	StorageList     []pve.Storage
	NodeStorageList map[string][]pve.Storage
	Bridges         []pve.HostInterface
	// NodeUse is what each node's host uses by itself (bytes of memory).
	NodeUse map[string]int64
	// ConsoleRefusesTokens makes every console attach fail as on a PVE
	// whose termproxy refuses API-token tickets.
	ConsoleRefusesTokens bool
	// Console, when set, is what ConsolePath answers; nil answers the API
	// token, accepted or refused as ConsoleRefusesTokens says.
	Console *pve.ConsolePath
	// Shell answers console commands before the built-in ones; handled
	// false falls through to them.
	Shell func(g *Guest, cmd string) (out string, code int, handled bool)
	// Agents are the VMs whose guest agent answers (once running with
	// agent set), with the interfaces it reports; AgentRun answers its
	// exec (nil: exit 0, no output). MappingList holds the cluster's
	// resource mappings by type (pci, usb).
	Agents      map[int][]pve.GuestInterface
	AgentRun    func(vmid int, argv []string) (out string, code int)
	MappingList map[string][]pve.Mapping
	Now         func() time.Time

	mu        sync.Mutex
	guests    map[int]*Guest
	tasks     map[string]*task
	volumes   map[string][]pve.Volume
	faults    []*Fault
	taskFails map[string][]string
	calls     []Call
	seq       int
	// store is the catalogue, what URLs serve and the files on storages
	// (content.go).
	store contentStore
	execs map[int]pve.ExecStatus
}

type task struct {
	status pve.TaskStatus
	log    []string
}

// TemplateVMID is the golden template New seeds, on node pve.
const TemplateVMID = 9000

// NetplanLeftover is the cloud-init netplan file the template carries.
const NetplanLeftover = "/etc/netplan/50-cloud-init.yaml"

// New is a cluster of one node, pve, with the CloudPods storages and
// bridge and the golden template CT 9000; the token holds every privilege.
func New() *Fake {
	return &Fake{
		Perms:      pve.Permissions{"/": allPrivileges()},
		Online:     map[string]bool{"pve": true},
		NodeCPUs:   16,
		NodeMemory: 128 << 30,
		StorageList: []pve.Storage{
			{ID: "clients-main", Type: "zfspool", Content: []string{"rootdir", "images"}, Active: true, Enabled: true, Total: 1 << 40, Avail: 1 << 39},
			{ID: "vzdump-backups", Type: "dir", Content: []string{"backup"}, Active: true, Enabled: true, Total: 1 << 40, Avail: 1 << 39},
			{ID: "t7-backup", Type: "dir", Content: []string{"backup"}, Active: true, Enabled: true, Total: 1 << 40, Avail: 1 << 39},
		},
		Bridges: []pve.HostInterface{{Name: "vmbr0", Type: "bridge", Active: true}},
		Now:     time.Now,
		guests: map[int]*Guest{TemplateVMID: {Kind: pve.LXC, Node: "pve", VMID: TemplateVMID, Status: "stopped",
			Config: map[string]string{"hostname": "cloudpod-template", "template": "1", "ostype": "ubuntu", "cores": "2",
				"memory": "2048", "swap": "512", "rootfs": "clients-main:basevol-9000-disk-0,size=8G",
				"net0": "name=eth0,bridge=vmbr0,firewall=1,hwaddr=BC:24:11:00:23:28,ip=10.1.10.90/24,gw=10.1.10.1,type=veth"},
			Files: map[string][]byte{NetplanLeftover: []byte("network:\n  version: 2\n  ethernets:\n    eth0:\n      addresses: [10.1.10.90/24]\n")}}},
		tasks:     map[string]*task{},
		volumes:   map[string][]pve.Volume{},
		taskFails: map[string][]string{},
	}
}

func allPrivileges() map[string]bool {
	out := map[string]bool{}
	for _, p := range []string{"VM.Clone", "VM.Allocate", "VM.Audit", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network",
		"VM.Config.Options", "VM.Config.Disk", "VM.PowerMgmt", "VM.Console", "VM.Backup", "Datastore.AllocateSpace", "Datastore.Audit",
		"SDN.Use", "Sys.Audit", "Datastore.Allocate", "Datastore.AllocateTemplate", "Sys.AccessNetwork", "Sys.Modify",
		"VM.Config.HWType", "VM.Config.Cloudinit", "VM.Monitor", "VM.GuestAgent.Audit", "VM.GuestAgent.Unrestricted", "Mapping.Use"} {
		out[p] = true
	}
	return out
}

// AddGuest puts a guest in the cluster (a VM set by hand, a CT of an
// earlier run).
func (f *Fake) AddGuest(g Guest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if g.Status == "" {
		g.Status = "stopped"
	}
	if g.Files == nil {
		g.Files = map[string][]byte{}
	}
	c := g.clone()
	f.guests[g.VMID] = &c
}

// Guest is a copy of guest vmid.
func (f *Fake) Guest(vmid int) (Guest, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.guests[vmid]
	if !ok {
		return Guest{}, false
	}
	return g.clone(), true
}

// Inject adds a fault.
func (f *Fake) Inject(fl Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, &fl)
}

// FailTasks makes the next tasks of type typ ("vzclone", "vzstart"…) end
// with these exit statuses, one per task, doing nothing.
func (f *Fake) FailTasks(typ string, exits ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.taskFails[typ] = append(f.taskFails[typ], exits...)
}

// Calls are the calls made so far, in order.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// CallCount is how many calls were made so far: a mark for Mutations.
func (f *Fake) CallCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// Mutations are the calls that change something, after the first since
// calls, as strings, in order.
func (f *Fake) Mutations(since int) []string {
	var out []string
	for _, c := range f.Calls()[since:] {
		switch c.Method {
		case "CloneGuest", "UpdateGuestConfig", "UpdateGuestConfigAsync", "StartGuest", "ShutdownGuest", "StopGuest",
			"DeleteGuest", "ConvertToTemplate", "Backup", "CreateGuest", "DownloadAppliance", "DownloadURL", "UploadFile", "DeleteVolume",
			"ResizeDisk", "AgentExec", "MigrateGuest":
			out = append(out, c.String())
		}
	}
	return out
}

// enter records a call and applies the faults: before fails the call
// before it acts, after once it has.
func (f *Fake) enter(method string, g pve.GuestRef, arg string) (before, after error) {
	f.calls = append(f.calls, Call{Method: method, Guest: g, Arg: arg})
	for _, fl := range f.faults {
		if fl.Method != method || (fl.VMID != 0 && fl.VMID != g.VMID) {
			continue
		}
		fl.seen++
		times := fl.Times
		if times == 0 && fl.Nth > 0 {
			times = 1
		}
		if fl.seen < fl.Nth || (times > 0 && fl.fired >= times) {
			continue
		}
		fl.fired++
		if fl.After {
			return nil, fl.Err
		}
		return fl.Err, nil
	}
	return nil, nil
}

// path is the API path PVE serves g's call on, for errors.
func path(g pve.GuestRef, rest string) string {
	return "/nodes/" + g.Node + "/" + string(g.Kind) + "/" + strconv.Itoa(g.VMID) + rest
}

func notFound(method string, g pve.GuestRef, rest string) error {
	return &pve.APIError{Method: method, Path: path(g, rest), Status: 500,
		Message: fmt.Sprintf("Configuration file 'nodes/%s/%s/%d.conf' does not exist", g.Node, g.Kind, g.VMID)}
}

func refused(method string, g pve.GuestRef, rest, msg string) error {
	return &pve.APIError{Method: method, Path: path(g, rest), Status: 500, Message: msg}
}

// guest finds g, which must match in kind and node.
func (f *Fake) guest(g pve.GuestRef) (*Guest, bool) {
	got, ok := f.guests[g.VMID]
	if !ok || got.Kind != g.Kind || got.Node != g.Node {
		return nil, false
	}
	return got, true
}

// startTask makes a task of typ about id; it has already ended, in OK or
// in the failure FailTasks queued (then ok is false: do nothing).
func (f *Fake) startTask(node, typ, id string, log ...string) (upid string, ok bool) {
	f.seq++
	now := f.Now()
	upid = fmt.Sprintf("UPID:%s:%08X:%08X:%08X:%s:%s:cloudpods@pve!provisioner:", node, 0x1000+f.seq, 0x10000+f.seq, now.Unix(), typ, id)
	exit := "OK"
	if q := f.taskFails[typ]; len(q) > 0 {
		exit, f.taskFails[typ] = q[0], q[1:]
	}
	lines := append([]string{"starting " + typ}, log...)
	if exit == "OK" {
		lines = append(lines, "TASK OK")
	} else {
		lines = append(lines, "TASK ERROR: "+exit)
	}
	f.tasks[upid] = &task{status: pve.TaskStatus{UPID: upid, Node: node, Type: typ, ID: id, User: "cloudpods@pve", TokenID: "provisioner",
		Status: "stopped", ExitStatus: exit, StartTime: now, EndTime: now}, log: lines}
	return upid, exit == "OK"
}

// RecordTask adds a finished task to node's task history, as PVE's task
// archive holds one: typ about id, started at start, ended took later
// with exit ("OK", or the error).
func (f *Fake) RecordTask(node, typ, id string, start time.Time, took time.Duration, exit string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	upid := fmt.Sprintf("UPID:%s:%08X:%08X:%08X:%s:%s:root@pam:", node, 0x1000+f.seq, 0x10000+f.seq, start.Unix(), typ, id)
	f.tasks[upid] = &task{status: pve.TaskStatus{UPID: upid, Node: node, Type: typ, ID: id, User: "root@pam",
		Status: "stopped", ExitStatus: exit, StartTime: start.Truncate(time.Second), EndTime: start.Add(took).Truncate(time.Second)},
		log: []string{"TASK " + exit}}
}

func (f *Fake) Version(ctx context.Context) (pve.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("Version", pve.GuestRef{}, ""); err != nil {
		return pve.Version{}, err
	}
	if f.Release != "" {
		return pve.Version{Release: f.Release, Version: f.Release + ".1", RepoID: "pvetest"}, nil
	}
	return pve.Version{Release: "9.1", Version: "9.1.1", RepoID: "pvetest"}, nil
}

func (f *Fake) Permissions(ctx context.Context) (pve.Permissions, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("Permissions", pve.GuestRef{}, ""); err != nil {
		return nil, err
	}
	return f.Perms, nil
}

func (f *Fake) NodeStatus(ctx context.Context, node string) (pve.NodeStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("NodeStatus", pve.GuestRef{}, node); err != nil {
		return pve.NodeStatus{}, err
	}
	online, ok := f.Online[node]
	if !ok {
		return pve.NodeStatus{}, fmt.Errorf("node %q: %w", node, pve.ErrNotFound)
	}
	st := pve.NodeStatus{Node: node, Online: online, PVEVersion: "pve-manager/9.1.1", Uptime: time.Hour}
	if online {
		st.CPUs, st.Memory = f.NodeCPUs, f.NodeMemory
	}
	return st, nil
}

func (f *Fake) Storages(ctx context.Context, node string) ([]pve.Storage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("Storages", pve.GuestRef{}, node); err != nil {
		return nil, err
	}
	return append([]pve.Storage(nil), f.storagesOf(node)...), nil
}

func (f *Fake) NetworkInterfaces(ctx context.Context, node string) ([]pve.HostInterface, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("NetworkInterfaces", pve.GuestRef{}, node); err != nil {
		return nil, err
	}
	return append([]pve.HostInterface(nil), f.Bridges...), nil
}

func (f *Fake) Guests(ctx context.Context) ([]pve.Guest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("Guests", pve.GuestRef{}, ""); err != nil {
		return nil, err
	}
	out := make([]pve.Guest, 0, len(f.guests))
	for _, g := range f.guests {
		name := g.Config["hostname"]
		if g.Kind == pve.QEMU {
			name = g.Config["name"]
		}
		// As PVE's status daemon reports them: the config's CPUs and memory.
		cores, _ := strconv.ParseFloat(g.Config["cores"], 64)
		mem, _ := strconv.ParseInt(g.Config["memory"], 10, 64)
		row := pve.Guest{VMID: g.VMID, Type: g.Kind, Node: g.Node, Name: name, Status: g.Status,
			Template: g.Config["template"] == "1", Lock: g.Config["lock"], Tags: g.Config["tags"], MaxCPU: cores, MaxMem: mem << 20}
		if g.Status == "running" {
			row.Mem = mem << 20 / 4 // what a fresh pod touches, as Nodes counts it
		}
		out = append(out, row)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].VMID < out[j].VMID })
	return out, nil
}

func (f *Fake) VMIDFree(ctx context.Context, vmid int) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("VMIDFree", pve.GuestRef{}, strconv.Itoa(vmid)); err != nil {
		return false, err
	}
	_, taken := f.guests[vmid]
	return !taken, nil
}

// digest is the config's digest, as PVE's changes with every write.
func digest(cfg map[string]string) string {
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha1.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s: %s\n", k, cfg[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (f *Fake) GuestConfig(ctx context.Context, g pve.GuestRef) (pve.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("GuestConfig", g, ""); err != nil {
		return pve.Config{}, err
	}
	got, ok := f.guest(g)
	if !ok {
		return pve.Config{}, notFound("GET", g, "/config")
	}
	return pve.Config{Values: copyMap(got.Config), Digest: digest(got.Config)}, nil
}

func (f *Fake) UpdateGuestConfig(ctx context.Context, g pve.GuestRef, upd pve.ConfigUpdate) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	before, after := f.enter("UpdateGuestConfig", g, updateArg(upd))
	if before != nil {
		return before
	}
	if err := f.update(g, upd); err != nil {
		return err
	}
	return after
}

func updateArg(upd pve.ConfigUpdate) string {
	keys := make([]string, 0, len(upd.Set))
	for k := range upd.Set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := strings.Join(keys, ",")
	if len(upd.Delete) > 0 {
		s += " delete=" + strings.Join(upd.Delete, ",")
	}
	return s
}

func (f *Fake) update(g pve.GuestRef, upd pve.ConfigUpdate) error {
	got, ok := f.guest(g)
	if !ok {
		return notFound("PUT", g, "/config")
	}
	if upd.Digest != "" && upd.Digest != digest(got.Config) {
		return refused("PUT", g, "/config", "detected modified configuration - file changed by other user? Try again.")
	}
	if lock := got.Config["lock"]; lock != "" {
		return refused("PUT", g, "/config", fmt.Sprintf("%s is locked (%s)", g.Kind.Noun(), lock))
	}
	for k, v := range upd.Set {
		got.Config[k] = v
	}
	for _, k := range upd.Delete {
		delete(got.Config, k)
	}
	return nil
}

func (f *Fake) UpdateGuestConfigAsync(ctx context.Context, g pve.GuestRef, upd pve.ConfigUpdate) (pve.Started, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before, after := f.enter("UpdateGuestConfigAsync", g, updateArg(upd))
	if before != nil {
		return pve.Started{}, before
	}
	if g.Kind != pve.QEMU {
		return pve.Started{}, fmt.Errorf("%s: containers have no asynchronous config update", g)
	}
	if err := f.update(g, upd); err != nil {
		return pve.Started{}, err
	}
	upid, _ := f.startTask(g.Node, "qmconfig", strconv.Itoa(g.VMID))
	return pve.Started{UPID: upid}, after
}

func (f *Fake) GuestStatus(ctx context.Context, g pve.GuestRef) (pve.GuestStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("GuestStatus", g, ""); err != nil {
		return pve.GuestStatus{}, err
	}
	got, ok := f.guest(g)
	if !ok {
		return pve.GuestStatus{}, notFound("GET", g, "/status/current")
	}
	mem, _ := strconv.ParseInt(got.Config["memory"], 10, 64)
	cores, _ := strconv.Atoi(got.Config["cores"])
	st := pve.GuestStatus{VMID: g.VMID, Status: got.Status, Name: got.Config["hostname"], Lock: got.Config["lock"], CPUs: cores,
		MaxMem: mem << 20, MaxDisk: 8 << 30, Tags: got.Config["tags"]}
	if got.Status == "running" {
		st.Uptime, st.Mem, st.Disk = time.Minute, 96<<20, 1200<<20
	}
	return st, nil
}

func (f *Fake) GuestInterfaces(ctx context.Context, g pve.GuestRef) ([]pve.GuestInterface, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("GuestInterfaces", g, ""); err != nil {
		return nil, err
	}
	got, ok := f.guest(g)
	if !ok {
		return nil, notFound("GET", g, "/interfaces")
	}
	if g.Kind == pve.QEMU {
		return f.agent("GET", g, "/agent/network-get-interfaces")
	}
	if got.Status != "running" {
		return nil, refused("GET", g, "/interfaces", fmt.Sprintf("CT %d not running", g.VMID))
	}
	out := []pve.GuestInterface{{Name: "lo", HWAddr: "00:00:00:00:00:00", Inet: "127.0.0.1/8"}}
	for i := 0; i < 10; i++ {
		n, ok := got.Config["net"+strconv.Itoa(i)]
		if !ok {
			continue
		}
		nic := field(n)
		inet := nic["ip"]
		if !strings.Contains(inet, "/") {
			inet = "" // dhcp and manual: the fake has no DHCP server
		}
		out = append(out, pve.GuestInterface{Name: nic["name"], HWAddr: nic["hwaddr"], Inet: inet})
	}
	return out, nil
}

func (f *Fake) Snapshots(ctx context.Context, g pve.GuestRef) ([]pve.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("Snapshots", g, ""); err != nil {
		return nil, err
	}
	got, ok := f.guest(g)
	if !ok {
		return nil, notFound("GET", g, "/snapshot")
	}
	var out []pve.Snapshot
	for _, s := range got.Snapshots {
		out = append(out, pve.Snapshot{Name: s})
	}
	return out, nil
}

func (f *Fake) CloneGuest(ctx context.Context, source pve.GuestRef, o pve.CloneOptions) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before, after := f.enter("CloneGuest", source, "to "+strconv.Itoa(o.NewID))
	if before != nil {
		return "", before
	}
	src, ok := f.guest(source)
	if !ok {
		return "", notFound("POST", source, "/clone")
	}
	if lock := src.Config["lock"]; lock != "" {
		return "", refused("POST", source, "/clone", fmt.Sprintf("%s is locked (%s)", source.Kind.Noun(), lock))
	}
	if _, taken := f.guests[o.NewID]; taken {
		return "", refused("POST", source, "/clone", fmt.Sprintf("unable to create %s %d - %s %d already exists on node '%s'",
			source.Kind.Noun(), o.NewID, source.Kind.Noun(), o.NewID, source.Node))
	}
	if err := f.cloneTarget(source, src, o); err != nil {
		return "", err
	}
	typ := "vzclone"
	if source.Kind == pve.QEMU {
		typ = "qmclone"
	}
	upid, ok := f.startTask(source.Node, typ, strconv.Itoa(source.VMID))
	if ok {
		g := src.clone()
		g.VMID, g.Status = o.NewID, "stopped"
		delete(g.Config, "template")
		name := "hostname"
		if source.Kind == pve.QEMU {
			name = "name"
		}
		setKey(g.Config, name, o.Hostname)
		setKey(g.Config, "description", o.Description)
		if net0, ok := g.Config["net0"]; ok && source.Kind == pve.QEMU {
			g.Config["net0"] = withVMMAC(net0, o.NewID, "0")
		} else if ok {
			g.Config["net0"] = withField(net0, "hwaddr", fmt.Sprintf("BC:24:11:%02X:%02X:%02X", o.NewID>>16&0xff, o.NewID>>8&0xff, o.NewID&0xff))
		}
		if o.Full && o.Storage != "" {
			if _, size, ok := strings.Cut(g.Config["rootfs"], ","); ok {
				g.Config["rootfs"] = fmt.Sprintf("%s:subvol-%d-disk-0,%s", o.Storage, o.NewID, size)
			}
		}
		g.Snapshots = nil
		if o.Target != "" {
			g.Node = o.Target
		}
		f.guests[o.NewID] = &g
	}
	return answer(upid, after)
}

// power runs a start, stop or shutdown.
func (f *Fake) power(method string, g pve.GuestRef, typ, want string) (string, error) {
	before, after := f.enter(method, g, "")
	if before != nil {
		return "", before
	}
	rest := "/status/" + strings.TrimPrefix(strings.TrimPrefix(typ, "vz"), "qm")
	got, ok := f.guest(g)
	if !ok {
		return "", notFound("POST", g, rest)
	}
	if lock := got.Config["lock"]; lock != "" {
		return "", refused("POST", g, rest, fmt.Sprintf("%s is locked (%s)", g.Kind.Noun(), lock))
	}
	switch {
	case want == "running" && got.Status == "running":
		return "", refused("POST", g, rest, fmt.Sprintf("%s %d already running", g.Kind.Noun(), g.VMID))
	case want == "stopped" && got.Status != "running":
		return "", refused("POST", g, rest, fmt.Sprintf("%s %d not running", g.Kind.Noun(), g.VMID))
	}
	if g.Kind == pve.QEMU {
		typ = "qm" + strings.TrimPrefix(typ, "vz")
	}
	upid, ok := f.startTask(g.Node, typ, strconv.Itoa(g.VMID))
	if ok {
		got.Status = want
	}
	return answer(upid, after)
}

func (f *Fake) StartGuest(ctx context.Context, g pve.GuestRef) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.power("StartGuest", g, "vzstart", "running")
}

func (f *Fake) ShutdownGuest(ctx context.Context, g pve.GuestRef, timeout time.Duration, forceStop bool) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.power("ShutdownGuest", g, "vzshutdown", "stopped")
}

func (f *Fake) StopGuest(ctx context.Context, g pve.GuestRef) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.power("StopGuest", g, "vzstop", "stopped")
}

func (f *Fake) DeleteGuest(ctx context.Context, g pve.GuestRef, o pve.DeleteOptions) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before, after := f.enter("DeleteGuest", g, "")
	if before != nil {
		return "", before
	}
	got, ok := f.guest(g)
	if !ok {
		return "", notFound("DELETE", g, "")
	}
	if lock := got.Config["lock"]; lock != "" {
		return "", refused("DELETE", g, "", fmt.Sprintf("%s is locked (%s)", g.Kind.Noun(), lock))
	}
	if got.Status == "running" && !o.Force {
		return "", refused("DELETE", g, "", fmt.Sprintf("%s %d is running - destroy failed", g.Kind.Noun(), g.VMID))
	}
	typ := "vzdestroy"
	if g.Kind == pve.QEMU {
		typ = "qmdestroy"
	}
	upid, ok := f.startTask(g.Node, typ, strconv.Itoa(g.VMID))
	if ok {
		delete(f.guests, g.VMID)
	}
	return answer(upid, after)
}

func (f *Fake) ConvertToTemplate(ctx context.Context, g pve.GuestRef) (pve.Started, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before, after := f.enter("ConvertToTemplate", g, "")
	if before != nil {
		return pve.Started{}, before
	}
	got, ok := f.guest(g)
	if !ok {
		return pve.Started{}, notFound("POST", g, "/template")
	}
	if got.Status == "running" {
		return pve.Started{}, refused("POST", g, "/template", fmt.Sprintf("%s %d is running", g.Kind.Noun(), g.VMID))
	}
	if g.Kind == pve.LXC {
		got.Config["template"] = "1"
		return pve.Started{}, after // PVE answers null for containers
	}
	upid, ok := f.startTask(g.Node, "qmtemplate", strconv.Itoa(g.VMID))
	if ok {
		got.Config["template"] = "1"
	}
	return pve.Started{UPID: upid}, after
}

func (f *Fake) Backup(ctx context.Context, node string, o pve.BackupOptions) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := pve.CT(node, o.VMID)
	before, after := f.enter("Backup", g, "to "+o.Storage)
	if before != nil {
		return "", before
	}
	got, ok := f.guests[o.VMID]
	if !ok || got.Node != node {
		return answer("OK", after) // PVE's answer when none of the guests is on the node
	}
	now := f.Now().UTC()
	name := fmt.Sprintf("vzdump-%s-%d-%s.tar.zst", got.Kind, o.VMID, now.Format("2006_01_02-15_04_05"))
	notes := strings.NewReplacer("{{guestname}}", got.Config["hostname"], "{{vmid}}", strconv.Itoa(o.VMID), "{{node}}", node).Replace(o.NotesTemplate)
	upid, ok := f.startTask(node, "vzdump", strconv.Itoa(o.VMID),
		"backup mode: "+o.Mode, "creating vzdump archive '/mnt/backup/dump/"+name+"'")
	if ok {
		f.volumes[o.Storage] = append(f.volumes[o.Storage], pve.Volume{VolID: o.Storage + ":backup/" + name, Content: "backup", Format: "tar.zst",
			Size: 1 << 30, CTime: now, VMID: o.VMID, Notes: notes, Subtype: string(got.Kind)})
	}
	return answer(upid, after)
}

func (f *Fake) StorageContent(ctx context.Context, node, storage, content string) ([]pve.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("StorageContent", pve.GuestRef{}, storage); err != nil {
		return nil, err
	}
	out := append([]pve.Volume(nil), f.volumes[storage]...)
	out = append(out, f.store.volumes(storage)...)
	if content != "" {
		kept := out[:0]
		for _, v := range out {
			if v.Content == content {
				kept = append(kept, v)
			}
		}
		out = kept
	}
	return out, nil
}

func (f *Fake) TaskStatus(ctx context.Context, node, upid string) (pve.TaskStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("TaskStatus", pve.GuestRef{}, upid); err != nil {
		return pve.TaskStatus{}, err
	}
	t, ok := f.tasks[upid]
	if !ok {
		return pve.TaskStatus{}, &pve.APIError{Method: "GET", Path: "/nodes/" + node + "/tasks/" + upid + "/status", Status: 400,
			Message: "Parameter verification failed.", Errors: map[string]string{"upid": "no such task"}}
	}
	return t.status, nil
}

func (f *Fake) TaskLog(ctx context.Context, node, upid string, start, limit int) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("TaskLog", pve.GuestRef{}, upid); err != nil {
		return nil, err
	}
	t, ok := f.tasks[upid]
	if !ok {
		return nil, fmt.Errorf("task %s: %w", upid, pve.ErrNotFound)
	}
	lines := t.log[min(start, len(t.log)):]
	if limit > 0 && limit < len(lines) {
		lines = lines[:limit]
	}
	return append([]string(nil), lines...), nil
}

// SDN: the fake has no SDN IPAM.
func (f *Fake) SDN() (pve.SDN, bool) { return nil, false }

// answer is a task call's answer: its UPID, or nothing when the answer was
// lost after the call acted.
func answer(upid string, after error) (string, error) {
	if after != nil {
		return "", after
	}
	return upid, nil
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func setKey(m map[string]string, k, v string) {
	if v == "" {
		delete(m, k)
		return
	}
	m[k] = v
}

// field splits a PVE property string ("name=eth0,ip=…") into its keys.
func field(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}

// withField sets one key of a property string, keeping the others' order.
func withField(s, key, value string) string {
	parts := strings.Split(s, ",")
	for i, kv := range parts {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			parts[i] = key + "=" + value
			return strings.Join(parts, ",")
		}
	}
	return s + "," + key + "=" + value
}

// gateway is net0's gateway, for the console's route.
func gateway(cfg map[string]string) netip.Addr {
	a, _ := netip.ParseAddr(field(cfg["net0"])["gw"])
	return a
}
