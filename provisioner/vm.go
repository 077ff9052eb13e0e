package provisioner

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// VM create: a cloud-init VM from a cloud image — POST /nodes/{node}/qemu
// with the image imported as scsi0 (import-from an import volume, PVE
// 8.4+ for qcow2/raw/vmdk; a URL is downloaded there first with its
// checksum), OVMF with efidisk0 or SeaBIOS, the cloud-init drive and its
// settings, NICs, resource-mapped devices; then the disk grown (resize),
// the VM started, its guest agent waited for, the addresses verified
// through the agent, optional checks run through agent exec, PVE's config
// verified, the marker set ready. Rollback, convergence, audit, dry run
// and events come from the flow engine. The steps live in vm_*.go; vm
// clone shares every step after the clone.

// Steps of the VM flows beyond create's and ct create's names.
const (
	StepImage  = "image"
	StepResize = "resize"
	StepAgent  = "agent"
	StepChecks = "checks"
)

// VM firmware and machine types.
const (
	BIOSSeaBIOS = "seabios"
	BIOSOVMF    = "ovmf"
)

// VMSpec is a cloud-init VM.
type VMSpec struct {
	Node string `json:"node"`
	VMID int    `json:"vmid"`
	Name string `json:"name"`
	// Image is the cloud image: an import volume STORAGE:import/FILE
	// (.qcow2, .raw or .vmdk), or an http(s) URL downloaded to an import
	// storage first.
	Image string `json:"image"`
	// ImageChecksum is the URL's checksum (ALGO:HEX), which PVE verifies.
	ImageChecksum string `json:"image_checksum,omitempty"`
	// ImageFilename is the name the downloaded image gets (default: the
	// URL's base name); its extension says the format.
	ImageFilename string `json:"image_filename,omitempty"`
	// Template, for a clone, is the VM template cloned instead of an
	// image; Linked makes a linked clone (else a full copy).
	Template int  `json:"template,omitempty"`
	Linked   bool `json:"linked,omitempty"`
	// Storage is the disks' storage (content images), or StorageAuto.
	Storage string `json:"storage"`
	// DiskGB grows the imported disk to this size; 0 keeps the image's.
	DiskGB   int    `json:"disk_gb,omitempty"`
	Cores    int    `json:"cores"`
	MemoryMB int    `json:"memory"`
	CPU      string `json:"cpu,omitempty"`
	BIOS     string `json:"bios"`
	Machine  string `json:"machine,omitempty"`
	// NICs are the cards (netN); IPConfigs their cloud-init addresses by
	// N, in PVE's ipconfigN form.
	NICs         []netcfg.VMNIC `json:"-"`
	IPConfigs    map[int]string `json:"ipconfig,omitempty"`
	CIUser       string         `json:"ciuser,omitempty"`
	SSHKeys      string         `json:"-"`
	Nameserver   string         `json:"nameserver,omitempty"`
	Searchdomain string         `json:"searchdomain,omitempty"`
	Agent        bool           `json:"agent"`
	// HostPCI and USB are devices passed through resource mappings
	// (mapping=NAME[,…]), hostpciN and usbN in order.
	HostPCI []string `json:"hostpci,omitempty"`
	USB     []string `json:"usb,omitempty"`
	OnBoot  bool     `json:"onboot,omitempty"`
	Tags    []string `json:"tags,omitempty"`
	Tenant  string   `json:"tenant,omitempty"`
	// Extra is what a flow built on the VM flow asks beyond the VM (a
	// router's LAN address), as key=value: part of the hash and diff.
	Extra []string `json:"extra,omitempty"`
	// Start boots the VM and checks it through its agent.
	Start bool `json:"-"`
	// Label is the human line of the description.
	Label string `json:"-"`
}

// DefaultVMSpec: 1 core, 1024 MB, x86-64-v2-AES, SeaBIOS, the images
// storage with the most room.
func DefaultVMSpec() VMSpec {
	return VMSpec{Node: "pve", Storage: StorageAuto, Cores: 1, MemoryMB: 1024, CPU: "x86-64-v2-AES", BIOS: BIOSSeaBIOS, Label: "VM"}
}

type hashedVMSpec struct {
	VMSpec
	NICs    []string `json:"nics"`
	SSHKeys string   `json:"ssh_keys,omitempty"` // a digest
}

func (s VMSpec) hashed() hashedVMSpec {
	h := hashedVMSpec{VMSpec: s}
	for _, n := range s.NICs {
		h.NICs = append(h.NICs, n.String())
	}
	if s.SSHKeys != "" {
		h.SSHKeys = sha256Hex([]byte(s.SSHKeys))[:16]
	}
	return h
}

// Hash identifies what the spec asks for.
func (s VMSpec) Hash() string {
	b, _ := json.Marshal(s.hashed())
	return sha256Hex(b)[:16]
}

// marker is the VM's ownership marker, create's "want" fields filled
// where they fit (health reads them).
func (s VMSpec) marker(runID string, now time.Time) Marker {
	e := essentials{VMID: s.VMID, Hostname: s.Name, Cores: s.Cores, MemoryMB: s.MemoryMB, Storage: s.Storage, Node: s.Node, Tenant: s.Tenant}
	first := 0
	if len(s.NICs) > 0 {
		e.Bridge, first = s.NICs[0].Bridge, s.NICs[0].Index
	}
	if n, err := netcfg.ParseIPConfig("ipconfig", s.IPConfigs[first]); err == nil {
		e.Address, e.Gateway = n.IP, n.GW
	}
	return Marker{Version: 1, By: "cloudpods", VMID: s.VMID, Hostname: s.Name, Tenant: s.Tenant, SpecHash: s.Hash(), Spec: e,
		RunID: runID, Created: now.UTC().Truncate(time.Second), State: "provisioning"}
}

const vmSpecPrefix = "cloudpods-vm-spec: "

// description is the VM's description: a human line, the marker, and the
// spec it was made from.
func (s VMSpec) description(m Marker) string {
	b, _ := json.Marshal(s.hashed())
	d := strings.Replace(m.Description(), "CloudPod "+s.Name, s.Label+" "+s.Name, 1)
	return d + vmSpecPrefix + string(b) + "\n"
}

// diffVMSpec lists how the spec recorded in description differs from s.
func (s VMSpec) diff(description string) []string {
	for _, line := range strings.Split(description, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), vmSpecPrefix); ok {
			var old hashedVMSpec
			if json.Unmarshal([]byte(rest), &old) == nil {
				return diffFields(old, s.hashed())
			}
		}
	}
	return nil
}

// SSHKeysParam is sshkeys as PVE stores it: the keys, one a line,
// percent-encoded with %20 for spaces (pve-common JSONSchema.pm
// pve_verify_urlencoded; PVE unescapes it when it writes the cloud-init
// drive).
func SSHKeysParam(keys string) string {
	return strings.ReplaceAll(url.QueryEscape(strings.Join(keyLines(keys), "\n")), "+", "%20")
}

// keyLines are the key lines of an authorized_keys text.
func keyLines(keys string) []string {
	var out []string
	for _, l := range strings.Split(keys, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// VMRequest is one vm create (or clone: VMCloneRequest embeds it).
type VMRequest struct {
	Spec VMSpec
	// NoVerify takes an image URL without a checksum; InsecureTLS lets PVE
	// fetch it from a host whose certificate it cannot verify.
	NoVerify    bool
	InsecureTLS bool
	// AgentWait bounds waiting for the guest agent after start; 0 means
	// 3 minutes. An agent that never answers is a warning (stock cloud
	// images have none), unless Checks need it.
	AgentWait time.Duration
	// Checks are shell commands run in the guest through the agent (sh
	// -c); each must exit 0.
	Checks        []string
	KeepOnFailure bool
	Reporter      Reporter
	Stop          <-chan struct{}
	Requester     string
	RunID         string
}

// VMResult is what the VM flows report.
type VMResult struct {
	VMID          int    `json:"vmid"`
	Name          string `json:"name"`
	Node          string `json:"node"`
	Storage       string `json:"storage"`
	StorageReason string `json:"storage_reason,omitempty"`
	// Image is the import volume the disk came from (create), or the
	// template (clone).
	Image   string `json:"image,omitempty"`
	Status  string `json:"status"`
	Changed bool   `json:"changed"`
	// Agent is "running", or why it is not.
	Agent    string             `json:"agent,omitempty"`
	NICs     []NICState         `json:"nics,omitempty"`
	Checks   []Check            `json:"checks,omitempty"`
	Steps    map[string]float64 `json:"steps"`
	Warnings []string           `json:"warnings,omitempty"`
}

// vmRun is the state of one run of a VM flow.
type vmRun struct {
	p     *Provisioner
	req   VMRequest
	spec  VMSpec
	runID string
	run   *flow.Run
	res   VMResult
	// storage is the disks' storage.
	storage StorageChoice
	version pve.Version
	// existing: the VM was there, ours, with this spec: converge.
	existing    *pve.Config
	createTried bool
	created     bool
	tasks       []string
	reasons     []string
	// image is the import volume; content fetches it first when the
	// image is a URL (nil otherwise).
	image   string
	content *contentRun
	// agentUp: the guest agent answered.
	agentUp bool
	// command names the flow in audit entries ("vm create").
	command string
	// router: an OpenWrt VM, which has no cloud-init drive and keeps its
	// display (openwrt_vm.go).
	router bool
	// leases are the VM's cloud-init addresses in IPAM (guestlease.go).
	leases *guestLeases
}

func (p *Provisioner) newVMRun(req VMRequest, command string) *vmRun {
	runID := req.RunID
	if runID == "" {
		runID = p.randomHex(8)
	}
	if req.AgentWait <= 0 {
		req.AgentWait = 3 * time.Minute
	}
	if req.Spec.Label == "" {
		req.Spec.Label = "VM"
	}
	r := &vmRun{p: p, req: req, spec: req.Spec, runID: runID, command: command}
	r.res = VMResult{VMID: r.spec.VMID, Name: r.spec.Name, Node: r.spec.Node}
	r.run = p.newRun(flow.Options{Kind: pve.QEMU, VMID: func() int { return r.spec.VMID }, Name: r.spec.Name, Reporter: req.Reporter, Stop: req.Stop,
		UndoBudget: p.opts.TaskTimeout + time.Minute, Nothing: "nothing was created",
		Audit: func(err error, took time.Duration) { r.audit(took, err) }})
	r.leases = p.newGuestLeases(r.run, r.leaseAsk)
	return r
}

// leaseAsk is what the VM asks of IPAM: its static cloud-init addresses.
func (r *vmRun) leaseAsk() guestAsk {
	a := guestAsk{vmid: r.spec.VMID, hostname: r.spec.Name, tenant: r.spec.Tenant, static: r.spec.staticAddrs(),
		existing: r.existing != nil, where: "--ipconfigN ip="}
	for _, i := range sortedInts(r.spec.IPConfigs) {
		if n, err := netcfg.ParseIPConfig("ipconfig", r.spec.IPConfigs[i]); err == nil && n.IP == "dhcp" {
			a.aside = append(a.aside, fmt.Sprintf("ipconfig%d by DHCP", i))
		}
	}
	return a
}

// staticAddrs are the spec's static cloud-init IPv4 addresses.
func (s VMSpec) staticAddrs() []netip.Addr {
	var static []netip.Addr
	for _, i := range sortedInts(s.IPConfigs) {
		if n, err := netcfg.ParseIPConfig("ipconfig", s.IPConfigs[i]); err == nil {
			if p, err := netip.ParsePrefix(n.IP); err == nil {
				static = append(static, p.Addr())
			}
		}
	}
	return static
}

func (r *vmRun) vm() pve.GuestRef { return pve.VM(r.spec.Node, r.spec.VMID) }

// createSteps is vm create's step order.
func (r *vmRun) createSteps() []flow.Step {
	steps := []flow.Step{
		{Name: StepValidate, ReadOnly: true, Run: r.validate},
		{Name: StepPreflight, ReadOnly: true, Run: r.preflight},
		r.leases.step(),
	}
	if r.isURL() {
		steps = append(steps, flow.Step{Name: StepImage, Check: r.imageDone, Run: r.fetchImage, Plan: r.planImage, Undo: r.undoImage})
	}
	steps = append(steps,
		flow.Step{Name: StepCreate, Check: r.createDone, Run: r.create, Plan: r.planCreate, Undo: r.undoCreate},
		flow.Step{Name: StepResize, Check: r.resizeDone, Run: r.resize, Plan: r.planResize})
	return append(steps, r.bootSteps()...)
}

// bootSteps are what every VM flow does once the VM exists: start, the
// agent, the addresses, the checks, the config verified, the marker.
func (r *vmRun) bootSteps() []flow.Step {
	return []flow.Step{
		{Name: StepStart, Check: r.startDone, Run: r.start, Plan: r.planStart},
		{Name: StepAgent, Run: r.waitAgent, Plan: r.planAgent},
		{Name: StepNetwork, Run: r.network, Plan: r.planNetwork},
		{Name: StepChecks, Run: r.runChecks, Plan: r.planChecks},
		{Name: StepVerify, Run: r.verify, Plan: r.planVerify},
		{Name: StepFinalize, Check: r.finalized, Run: r.finalize, Plan: r.planFinalize},
	}
}

// CreateVM makes a cloud-init VM, or converges one an earlier run of the
// same spec made.
func (p *Provisioner) CreateVM(ctx context.Context, req VMRequest) (VMResult, error) {
	r := p.newVMRun(req, "vm create")
	err := r.run.Execute(ctx, r.createSteps())
	return r.result(ctx, err), err
}

// PlanVM is vm create's dry run, with the reasoning behind its defaults.
func (p *Provisioner) PlanVM(ctx context.Context, req VMRequest) ([]PlannedCall, []string, error) {
	r := p.newVMRun(req, "vm create")
	calls, err := r.run.DryRun(ctx, r.createSteps())
	return calls, r.reasons, err
}

func (r *vmRun) result(ctx context.Context, err error) VMResult {
	r.res.Steps, r.res.Warnings = r.run.Seconds(), r.run.Warnings()
	r.res.VMID, r.res.Storage, r.res.StorageReason = r.spec.VMID, r.storage.ID, r.storage.Reason
	if r.res.Image == "" {
		r.res.Image = r.image
	}
	if err != nil {
		r.res.Status = "failed"
		return r.res
	}
	if st, serr := r.p.api.GuestStatus(ctx, r.vm()); serr == nil {
		r.res.Status = st.Status
	}
	return r.res
}

func (r *vmRun) audit(took time.Duration, err error) {
	e := AuditEntry{Time: r.p.opts.Now().UTC(), Command: r.command, VMID: r.spec.VMID, Hostname: r.spec.Name, Node: r.spec.Node,
		Tenant: r.spec.Tenant, Requester: r.req.Requester, Outcome: "ok", Duration: took.Seconds(), Volume: r.image}
	for _, i := range sortedInts(r.spec.IPConfigs) {
		if n, perr := netcfg.ParseIPConfig("ipconfig", r.spec.IPConfigs[i]); perr == nil && strings.Contains(n.IP, "/") && e.IP == "" {
			e.IP, _, _ = strings.Cut(n.IP, "/")
		}
	}
	if err != nil {
		e.Outcome, e.Error = "failed", err.Error()
	}
	if aerr := r.p.opts.Audit.Append(e); aerr != nil {
		r.p.log.WithError(aerr).Error("audit log write failed")
	}
}

func (r *vmRun) isURL() bool { return strings.Contains(r.spec.Image, "://") }

func vmPathOf(node string, vmid int, rest string) string {
	return fmt.Sprintf("/nodes/%s/qemu/%d%s", node, vmid, rest)
}

func sortedInts[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// machineParam is PVE's machine value for --machine: i440fx is PVE's "pc".
func machineParam(m string) string {
	if m == "i440fx" {
		return "pc"
	}
	return m
}

// cloudInitParams are the cloud-init keys of the spec.
func (s VMSpec) cloudInitParams() map[string]string {
	p := map[string]string{}
	for i, v := range s.IPConfigs {
		p["ipconfig"+strconv.Itoa(i)] = v
	}
	setNonEmpty(p, "ciuser", s.CIUser)
	if len(keyLines(s.SSHKeys)) > 0 {
		p["sshkeys"] = SSHKeysParam(s.SSHKeys)
	}
	setNonEmpty(p, "nameserver", s.Nameserver)
	setNonEmpty(p, "searchdomain", s.Searchdomain)
	return p
}
