package provisioner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// CT create: a container from an OS template archive rather than a clone
// of the golden template — POST /nodes/{node}/lxc with the NICs, the
// privilege level (always sent: PVE 8.4 creates privileged containers by
// default, 9.x unprivileged ones) and the features an API token may set,
// then start, network, verify, finalize as CloudPods do, with rollback,
// convergence and audit. The steps live in ct_*.go; OpenWrt routers and
// the golden template build are the same flow with steps of their own.

// Steps of ct create beyond create's names.
const (
	StepCreate = "create"
)

// CTSpec is a container made from an OS template.
type CTSpec struct {
	Node     string `json:"node"`
	VMID     int    `json:"vmid"`
	Hostname string `json:"hostname"`
	// OSTemplate is the archive's volume id, storage:vztmpl/name.
	OSTemplate string `json:"ostemplate"`
	// Storage is the rootfs storage, or StorageAuto.
	Storage  string       `json:"storage"`
	DiskGB   int          `json:"disk_gb"`
	Cores    int          `json:"cores"`
	MemoryMB int          `json:"memory"`
	SwapMB   int          `json:"swap"`
	NICs     []netcfg.NIC `json:"nics"`
	// Unprivileged is always sent to PVE.
	Unprivileged bool `json:"unprivileged"`
	// Features are PVE's features keys, e.g. nesting=1.
	Features []string `json:"features,omitempty"`
	// OSType is PVE's ostype; "" lets PVE detect it from the archive.
	OSType       string   `json:"ostype,omitempty"`
	Nameserver   string   `json:"nameserver,omitempty"`
	Searchdomain string   `json:"searchdomain,omitempty"`
	SSHKeys      string   `json:"-"`
	Password     string   `json:"-"`
	OnBoot       bool     `json:"onboot,omitempty"`
	Tags         []string `json:"tags,omitempty"`
	Tenant       string   `json:"tenant,omitempty"`
	// Start boots the CT after create, and checks its network.
	Start bool `json:"-"`
	// CMode is the console mode set at create ("shell" for flows that
	// configure the guest through the console).
	CMode string `json:"cmode,omitempty"`
	// Label is the human line of the description ("Container", "OpenWrt
	// router", "CloudPods golden image").
	Label string `json:"-"`
	// Extra is what a flow built on ct create asks beyond the container
	// (the golden template's packages, services, timezone; a router's
	// LAN address), as key=value: part of the spec's hash and diff.
	Extra []string `json:"extra,omitempty"`
}

// DefaultCTSpec is ct create's defaults: unprivileged, 8 GB on the
// rootdir storage with the most room, 1 core, 512 MB, 512 MB swap.
func DefaultCTSpec() CTSpec {
	return CTSpec{Node: "pve", Storage: StorageAuto, DiskGB: 8, Cores: 1, MemoryMB: 512, SwapMB: 512, Unprivileged: true, Label: "Container"}
}

// Hash identifies what the spec asks for: a re-run with the same hash
// converges, another is refused with the difference.
func (s CTSpec) Hash() string {
	b, _ := json.Marshal(s.hashed())
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

type hashedCTSpec struct {
	CTSpec
	NICs    []string `json:"nics"`
	SSHKeys string   `json:"ssh_keys,omitempty"` // a digest: keys are not secret, but long
}

func (s CTSpec) hashed() hashedCTSpec {
	h := hashedCTSpec{CTSpec: s}
	for _, n := range s.NICs {
		h.NICs = append(h.NICs, n.String())
	}
	if s.SSHKeys != "" {
		h.SSHKeys = sha256Hex([]byte(s.SSHKeys))[:16]
	}
	return h
}

// diffCTSpecs lists the fields two specs differ in.
func diffCTSpecs(old, new hashedCTSpec) []string { return diffFields(old, new) }

// marker is the ownership marker of a container made from an archive,
// with create's "want" fields filled where they fit (health reads them).
func (s CTSpec) marker(runID string, now time.Time) Marker {
	e := essentials{VMID: s.VMID, Hostname: s.Hostname, Cores: s.Cores, MemoryMB: s.MemoryMB, SwapMB: s.SwapMB, Storage: s.Storage, Node: s.Node, Tenant: s.Tenant}
	if len(s.NICs) > 0 {
		e.Address, e.Gateway, e.Bridge = s.NICs[0].IP, s.NICs[0].GW, s.NICs[0].Bridge
	}
	return Marker{Version: 1, By: "cloudpods", VMID: s.VMID, Hostname: s.Hostname, Tenant: s.Tenant, SpecHash: s.Hash(), Spec: e,
		RunID: runID, Created: now.UTC().Truncate(time.Second), State: "provisioning"}
}

// description is the CT's description: a human line, the marker, and the
// spec it was made from (so a refusal can show the difference).
func (s CTSpec) description(m Marker) string {
	b, _ := json.Marshal(s.hashed())
	d := m.Description()
	d = strings.Replace(d, "CloudPod "+s.Hostname, s.Label+" "+s.Hostname, 1)
	return d + ctSpecPrefix + string(b) + "\n"
}

const ctSpecPrefix = "cloudpods-spec: "

// parseCTSpec finds the spec line in a description.
func parseCTSpec(description string) (hashedCTSpec, bool) {
	for _, line := range strings.Split(description, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), ctSpecPrefix); ok {
			var h hashedCTSpec
			if json.Unmarshal([]byte(rest), &h) == nil {
				return h, true
			}
		}
	}
	return hashedCTSpec{}, false
}

// featureKeys are PVE's LXC features (pve-container LXC/Config.pm
// $features_desc).
var featureKeys = map[string]bool{"force_rw_sys": true, "fuse": true, "keyctl": true, "mknod": true, "mount": true, "nesting": true}

var featureBoolRE = regexp.MustCompile(`^(0|1|on|off|yes|no|true|false)$`)

// ParseFeatures reads --features (nesting=1,keyctl=1) and refuses up front
// what an API token may not set, since CloudPods only ever talks to PVE
// with a token: on a privileged CT any feature is root@pam's alone, on an
// unprivileged one everything but nesting (pve-container LXC.pm
// check_ct_modify_config_perm).
func ParseFeatures(list []string, unprivileged bool) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, item := range list {
		for _, kv := range strings.Split(item, ",") {
			if kv = strings.TrimSpace(kv); kv == "" {
				continue
			}
			k, v, ok := strings.Cut(kv, "=")
			switch {
			case !ok || v == "":
				return nil, problemf(ErrInvalidSpec, "--features %q is not key=value: write e.g. nesting=1", kv)
			case !featureKeys[k]:
				return nil, problemf(ErrInvalidSpec, "--features key %s is not a PVE container feature: PVE knows force_rw_sys, fuse, keyctl, mknod, mount and nesting", k)
			case seen[k]:
				return nil, problemf(ErrInvalidSpec, "--features key %s appears twice: keep one", k)
			case k != "mount" && !featureBoolRE.MatchString(v):
				return nil, problemf(ErrInvalidSpec, "--features %s=%s is not valid: use 1 or 0", k, v)
			case !unprivileged:
				return nil, problemf(ErrInvalidSpec, "--features %s: PVE lets only root@pam set features on a privileged container (pve-container LXC.pm), and cloudpods talks to PVE with an API token: drop --features or make the CT --unprivileged", kv)
			case k != "nesting":
				return nil, problemf(ErrInvalidSpec, "--features %s: PVE lets only root@pam set %s (pve-container LXC.pm), and cloudpods talks to PVE with an API token; nesting is the one feature a token may set: drop %s, or set it as root in PVE after create", kv, k, k)
			}
			seen[k] = true
			out = append(out, k+"="+v)
		}
	}
	sort.Strings(out)
	return out, nil
}

// CTRequest is one ct create.
type CTRequest struct {
	Spec CTSpec
	// DHCPWait bounds waiting for DHCP leases after start; a NIC without
	// one by then is a warning, not a failure (the network may simply have
	// no DHCP server on that VLAN).
	DHCPWait      time.Duration
	KeepOnFailure bool
	Reporter      Reporter
	Stop          <-chan struct{}
	Requester     string
	RunID         string
}

// CTResult is what ct create reports.
type CTResult struct {
	VMID          int                `json:"vmid"`
	Hostname      string             `json:"hostname"`
	Node          string             `json:"node"`
	Storage       string             `json:"storage"`
	StorageReason string             `json:"storage_reason,omitempty"`
	Status        string             `json:"status"`
	Changed       bool               `json:"changed"`
	NICs          []NICState         `json:"nics"`
	Steps         map[string]float64 `json:"steps"`
	Warnings      []string           `json:"warnings,omitempty"`
	Checks        []Check            `json:"checks,omitempty"`
}

// NICState is one NIC after create: PVE's netN and the address it shows.
type NICState struct {
	Key     string `json:"key"` // net0
	Name    string `json:"name"`
	Config  string `json:"config"`
	Address string `json:"address,omitempty"`
}

// ctRun is the state of one ct create (and of the flows built on it).
type ctRun struct {
	p     *Provisioner
	req   CTRequest
	spec  CTSpec
	runID string
	run   *flow.Run
	res   CTResult
	// storage is the rootfs storage chosen in preflight.
	storage StorageChoice
	// version is PVE's release ("9.1").
	version pve.Version
	// existing: the CT was there, ours, with this spec: converge.
	existing *pve.Config
	// createTried, created: as create's cloneTried and created.
	createTried, created bool
	tasks                []string
	// reasons say why each default was taken, for the dry run.
	reasons []string
	// fetchArchive: a missing OS template archive is fetched by a later
	// step (archiveMissing), not refused in preflight.
	fetchArchive, archiveMissing bool
	// pickTemplate: an empty OSTemplate is picked in preflight.
	pickTemplate bool
	// leases are the CT's addresses in IPAM (guestlease.go).
	leases *guestLeases
}

func (p *Provisioner) newCTRun(req CTRequest, command string) *ctRun {
	runID := req.RunID
	if runID == "" {
		runID = p.randomHex(8)
	}
	if req.DHCPWait <= 0 {
		req.DHCPWait = 30 * time.Second
	}
	r := &ctRun{p: p, req: req, spec: req.Spec, runID: runID}
	r.res = CTResult{VMID: r.spec.VMID, Hostname: r.spec.Hostname, Node: r.spec.Node}
	r.run = p.newRun(flow.Options{Kind: pve.LXC, VMID: func() int { return r.spec.VMID }, Reporter: req.Reporter, Stop: req.Stop,
		UndoBudget: p.opts.TaskTimeout + time.Minute, Nothing: "nothing was created",
		Audit: func(err error, took time.Duration) { r.audit(command, took, err) }})
	r.leases = p.newGuestLeases(r.run, r.leaseAsk)
	return r
}

// leaseAsk is what the CT asks of IPAM: its static addresses.
func (r *ctRun) leaseAsk() guestAsk {
	a := guestAsk{vmid: r.spec.VMID, hostname: r.spec.Hostname, tenant: r.spec.Tenant, static: r.spec.staticAddrs(),
		existing: r.existing != nil, where: "ip= in --net"}
	for _, n := range r.spec.NICs {
		switch n.IP {
		case "dhcp":
			a.aside = append(a.aside, n.Name+" by DHCP")
		case "manual":
			a.aside = append(a.aside, n.Name+"'s address is set inside the guest")
		}
	}
	return a
}

func (r *ctRun) ct() pve.GuestRef { return pve.CT(r.spec.Node, r.spec.VMID) }

// ctSteps is ct create's step order.
func (r *ctRun) ctSteps() []flow.Step {
	return []flow.Step{r.validateStep(), r.preflightStep(), r.leases.step(), r.createStep(), r.startStep(), r.networkStep(), r.verifyStep(), r.finalizeStep()}
}

// CreateCT makes a container from an OS template, or converges one an
// earlier run of the same spec made.
func (p *Provisioner) CreateCT(ctx context.Context, req CTRequest) (CTResult, error) {
	r := p.newCTRun(req, "ct create")
	err := r.run.Execute(ctx, r.ctSteps())
	return r.result(ctx, err), err
}

// PlanCT is ct create's dry run, with the reasoning behind its defaults.
func (p *Provisioner) PlanCT(ctx context.Context, req CTRequest) ([]PlannedCall, []string, error) {
	r := p.newCTRun(req, "ct create")
	calls, err := r.run.DryRun(ctx, r.ctSteps())
	return calls, r.reasons, err
}

// result finishes the result: steps, warnings, and the NICs as PVE holds
// them.
func (r *ctRun) result(ctx context.Context, err error) CTResult {
	r.res.Steps, r.res.Warnings = r.run.Seconds(), r.run.Warnings()
	r.res.VMID, r.res.Storage, r.res.StorageReason = r.spec.VMID, r.storage.ID, r.storage.Reason
	if err != nil {
		r.res.Status = "failed"
		return r.res
	}
	if st, serr := r.p.api.GuestStatus(ctx, r.ct()); serr == nil {
		r.res.Status = st.Status
	}
	return r.res
}

func (r *ctRun) audit(command string, took time.Duration, err error) {
	e := AuditEntry{Time: r.p.opts.Now().UTC(), Command: command, VMID: r.spec.VMID, Hostname: r.spec.Hostname, Node: r.spec.Node,
		Tenant: r.spec.Tenant, Requester: r.req.Requester, Outcome: "ok", Duration: took.Seconds()}
	for _, n := range r.spec.NICs {
		if a, _, ok := strings.Cut(n.IP, "/"); ok && e.IP == "" {
			e.IP = a
		}
	}
	if err != nil {
		e.Outcome, e.Error = "failed", err.Error()
	}
	if aerr := r.p.opts.Audit.Append(e); aerr != nil {
		r.p.log.WithError(aerr).Error("audit log write failed")
	}
}

// createParams are POST /nodes/{node}/lxc's parameters for the spec.
func (r *ctRun) createParams(description string) map[string]string {
	s := r.spec
	p := map[string]string{
		"hostname":     s.Hostname,
		"ostemplate":   s.OSTemplate,
		"rootfs":       fmt.Sprintf("%s:%d", r.storage.ID, s.DiskGB),
		"unprivileged": boolParam(s.Unprivileged),
		"cores":        strconv.Itoa(s.Cores),
		"memory":       strconv.Itoa(s.MemoryMB),
		"swap":         strconv.Itoa(s.SwapMB),
		"onboot":       boolParam(s.OnBoot),
		"description":  description,
		"tags":         tagString(append([]string{OwnerTag}, s.Tags...)),
	}
	for k, v := range netcfg.ContainerNets(s.NICs) {
		p[k] = v
	}
	setNonEmpty(p, "features", strings.Join(s.Features, ","))
	setNonEmpty(p, "ostype", s.OSType)
	setNonEmpty(p, "nameserver", s.Nameserver)
	setNonEmpty(p, "searchdomain", s.Searchdomain)
	setNonEmpty(p, "ssh-public-keys", s.SSHKeys)
	setNonEmpty(p, "password", s.Password)
	setNonEmpty(p, "cmode", s.CMode)
	return p
}

func boolParam(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func setNonEmpty(m map[string]string, k, v string) {
	if v != "" {
		m[k] = v
	}
}
