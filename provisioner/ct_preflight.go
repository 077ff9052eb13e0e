package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

func (r *ctRun) validateStep() flow.Step {
	return flow.Step{Name: StepValidate, ReadOnly: true, Run: r.validate}
}

func (r *ctRun) preflightStep() flow.Step {
	return flow.Step{Name: StepPreflight, ReadOnly: true, Run: r.preflight}
}

// ostemplateRE is a template volume id: storage:vztmpl/file.
var ostemplateRE = regexp.MustCompile(`^([a-z][a-z0-9._-]*[a-z0-9]):vztmpl/([^/]+)$`)

// ostypes are PVE's LXC ostype values (pve-container LXC/Config.pm).
var ostypes = map[string]bool{"debian": true, "devuan": true, "ubuntu": true, "centos": true, "fedora": true, "opensuse": true,
	"archlinux": true, "alpine": true, "gentoo": true, "nixos": true, "unmanaged": true}

// validate checks the request alone, before PVE is contacted: every
// problem, one sentence each.
func (r *ctRun) validate(context.Context) error {
	s := r.spec
	var probs []string
	add := func(format string, a ...any) { probs = append(probs, fmt.Sprintf(format, a...)) }
	if s.VMID < 100 || s.VMID > MaxVMID {
		add("VMID %d is out of range: PVE guest ids run from 100 to %d", s.VMID, MaxVMID)
	}
	if err := netcfg.ValidHostname(s.Hostname); err != nil {
		add("%v", err)
	}
	if !ostemplateRE.MatchString(s.OSTemplate) && !(s.OSTemplate == "" && r.pickTemplate) {
		add("--ostemplate %q is not a template volume: give storage:vztmpl/FILE, e.g. local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst (cloudpod template list shows them)", s.OSTemplate)
	}
	if s.DiskGB < 1 || s.DiskGB > 65536 {
		add("--disk %d GB is out of range: use 1 to 65536", s.DiskGB)
	}
	if s.Cores < 1 || s.Cores > 8192 {
		add("%d cores is out of range: use 1 to 8192", s.Cores)
	}
	if s.MemoryMB < 16 {
		add("%d MB of memory is too little: PVE needs at least 16", s.MemoryMB)
	}
	if s.SwapMB < 0 {
		add("%d MB of swap is negative: use 0 for no swap", s.SwapMB)
	}
	if s.OSType != "" && !ostypes[s.OSType] {
		add("--ostype %s is not one PVE knows: use debian, ubuntu, alpine, … or unmanaged", s.OSType)
	}
	if s.Password != "" && len(s.Password) < 5 {
		add("the password is shorter than PVE's 5 characters: put a longer one in --password-file")
	}
	if err := validateSSHKeys(s.SSHKeys); err != nil {
		add("%v", err)
	}
	if err := netcfg.ValidateNICs(s.NICs); err != nil {
		add("%v", err)
	}
	if feats, err := ParseFeatures(s.Features, s.Unprivileged); err != nil {
		add("%v", err)
	} else {
		r.spec.Features = feats
	}
	for _, t := range s.Tags {
		if _, err := netcfg.NormalizeTags(t); err != nil {
			add("%v", err)
		}
	}
	if len(probs) > 0 {
		return problemf(ErrInvalidSpec, "%s", strings.ReplaceAll(strings.Join(probs, "; "), "\n", "; "))
	}
	return nil
}

// validateSSHKeys checks --ssh-public-keys' file: OpenSSH public key lines
// (PVE writes them to root's authorized_keys as they are).
func validateSSHKeys(keys string) error {
	for i, line := range strings.Split(keys, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || !(strings.HasPrefix(f[0], "ssh-") || strings.HasPrefix(f[0], "ecdsa-") || strings.HasPrefix(f[0], "sk-")) {
			return fmt.Errorf("line %d of --ssh-public-keys is not an OpenSSH public key (type, base64 key, comment): give the .pub file", i+1)
		}
	}
	return nil
}

// privileges are what ct create needs, by ACL path (seed004 §2.2).
func (r *ctRun) privileges() []privilege {
	s := r.spec
	vm := "/vms/" + strconv.Itoa(s.VMID)
	tplStorage, _, _ := strings.Cut(s.OSTemplate, ":")
	need := []privilege{
		{Path: vm, Priv: "VM.Allocate"}, {Path: vm, Priv: "VM.Audit"}, {Path: vm, Priv: "VM.Config.Disk"}, {Path: vm, Priv: "VM.Config.CPU"},
		{Path: vm, Priv: "VM.Config.Memory"}, {Path: vm, Priv: "VM.Config.Network"}, {Path: vm, Priv: "VM.Config.Options"},
		{Path: "/storage/" + r.storage.ID, Priv: "Datastore.AllocateSpace"},
		{Path: "/storage/" + tplStorage, Priv: "Datastore.Audit", Or: [][]privilege{{{Path: "/storage/" + tplStorage, Priv: "Datastore.AllocateSpace"}}}},
	}
	if s.Start {
		need = append(need, privilege{Path: vm, Priv: "VM.PowerMgmt"})
	}
	if s.CMode == "shell" {
		need = append(need, privilege{Path: vm, Priv: "VM.Console"})
	}
	bridges := map[string]bool{}
	for _, n := range s.NICs {
		p := "/sdn/zones/localnetwork/" + n.Bridge
		if n.VLAN != 0 {
			p += "/" + strconv.Itoa(n.VLAN)
		}
		if !bridges[p] {
			bridges[p] = true
			need = append(need, privilege{Path: p, Priv: "SDN.Use"})
		}
	}
	if !s.Unprivileged && majorVersion(r.version) >= 9 {
		// PVE 9 asks Sys.Modify on / for a privileged container
		// (pve-container API2/LXC.pm create_vm).
		need = append(need, privilege{Path: "/", Priv: "Sys.Modify"})
	}
	return need
}

func majorVersion(v pve.Version) int {
	major, _, _ := strings.Cut(v.Release, ".")
	n, _ := strconv.Atoi(major)
	return n
}

// preflight checks PVE's state: the version (for the privilege rules),
// the rootfs storage, the token's privileges, the node, the template
// archive, the bridges, the VMID and the static addresses.
func (r *ctRun) preflight(ctx context.Context) error {
	s := r.spec
	var err error
	if r.version, err = r.p.api.Version(ctx); err != nil {
		return apiProblem("read PVE's version", err)
	}
	priv := "unprivileged"
	if !s.Unprivileged {
		priv = "privileged"
	}
	r.reasons = append(r.reasons, fmt.Sprintf("%s, sent as unprivileged=%s: PVE %s would otherwise default to %s", priv, boolParam(s.Unprivileged),
		r.version.Release, map[bool]string{true: "privileged (8.x)", false: "unprivileged (9.x)"}[majorVersion(r.version) < 9]))
	if err := r.checkExisting(ctx); err != nil {
		return err
	}
	if r.existing != nil {
		r.storage = StorageChoice{ID: rootfsStorage(r.existing.Get("rootfs")), Reason: "the CT exists: its rootfs stays where it is"}
		r.reasons = append(r.reasons, r.storage.Reason)
		return nil
	}
	storages, err := r.p.api.Storages(ctx, s.Node)
	if err != nil {
		return apiProblem("list storages on "+s.Node, err)
	}
	if r.storage, err = ChooseStorage(storages, s.Storage, "rootdir", int64(s.DiskGB)<<30); err != nil {
		return err
	}
	r.reasons = append(r.reasons, r.storage.Reason)
	if r.storage.Warning != "" {
		r.run.Warn(r.storage.Warning)
	}
	if err := r.p.checkPrivileges(ctx, r.privileges()); err != nil {
		return err
	}
	if err := r.checkNode(ctx); err != nil {
		return err
	}
	if err := r.checkOSTemplate(ctx); err != nil {
		return err
	}
	if err := r.checkBridges(ctx); err != nil {
		return err
	}
	return r.checkAddresses(ctx)
}

func rootfsStorage(rootfs string) string {
	sid, _, _ := strings.Cut(rootfs, ":")
	return sid
}

func (r *ctRun) checkNode(ctx context.Context) error { return r.p.checkNodeOnline(ctx, r.spec.Node) }

// checkNodeOnline: node is in the cluster and online.
func (p *Provisioner) checkNodeOnline(ctx context.Context, name string) error {
	node, err := p.api.NodeStatus(ctx, name)
	if errors.Is(err, pve.ErrNotFound) {
		return problemf(ErrPreflight, "node %q is not in the cluster: pass --node with one of the cluster's nodes", name)
	}
	if err != nil {
		return apiProblem("read node "+name, err)
	}
	if !node.Online {
		return problemf(ErrPreflight, "node %s is offline: bring it back or pass --node with an online node", name)
	}
	return nil
}

// checkExisting: a free VMID is a fresh create; one holding a CT this
// spec made is a converging re-run; anything else is refused.
func (r *ctRun) checkExisting(ctx context.Context) error {
	cfg, sameRun, err := r.p.existingGuest(ctx, r.run, r.ct(), r.spec.Hash(), r.runID, func(desc string) []string {
		if old, ok := parseCTSpec(desc); ok {
			return diffCTSpecs(old, r.spec.hashed())
		}
		return nil
	})
	if err != nil || cfg == nil {
		return err
	}
	r.existing = cfg
	r.createTried, r.created = sameRun, sameRun
	return nil
}

// checkOSTemplate: the archive is on its storage.
func (r *ctRun) checkOSTemplate(ctx context.Context) error {
	s := r.spec
	sid := rootfsStorage(s.OSTemplate)
	vols, err := r.p.api.StorageContent(ctx, s.Node, sid, "vztmpl")
	if errors.Is(err, pve.ErrNotFound) {
		return problemf(ErrPreflight, "storage %s of --ostemplate does not exist on node %s: cloudpod template list shows where templates are", sid, s.Node)
	}
	if err != nil {
		return apiProblem("list the templates on storage "+sid, err)
	}
	for _, v := range vols {
		if v.VolID == s.OSTemplate {
			return nil
		}
	}
	_, name, _ := strings.Cut(s.OSTemplate, "/")
	if r.fetchArchive {
		r.archiveMissing = true
		r.reasons = append(r.reasons, fmt.Sprintf("%s is not on storage %s yet: it is downloaded from PVE's catalogue first", name, sid))
		return nil
	}
	return problemf(ErrPreflight, "template %s is not on storage %s: fetch it first with: cloudpod template download %s --storage %s", name, sid, name, sid)
}

// checkBridges: every NIC's bridge exists on the node.
func (r *ctRun) checkBridges(ctx context.Context) error {
	bridges := map[string]string{}
	for _, n := range r.spec.NICs {
		bridges[n.Name] = n.Bridge
	}
	return r.p.checkBridges(ctx, r.spec.Node, bridges)
}

// checkBridges: the bridge of every NIC (by name) exists on node.
func (p *Provisioner) checkBridges(ctx context.Context, node string, bridges map[string]string) error {
	ifs, err := p.api.NetworkInterfaces(ctx, node)
	if err != nil {
		return apiProblem("list network interfaces on "+node, err)
	}
	have := map[string]bool{}
	var names []string
	for _, i := range ifs {
		if isBridge(i) {
			have[i.Name] = true
			names = append(names, i.Name)
		}
	}
	for _, nic := range sortedKeysOf(bridges) {
		if !have[bridges[nic]] {
			return problemf(ErrPreflight, "bridge %s of NIC %s does not exist on node %s: use one of %s", bridges[nic], nic, node, strings.Join(names, ", "))
		}
	}
	return nil
}

// checkAddresses refuses a static address another guest's config holds.
func (r *ctRun) checkAddresses(ctx context.Context) error {
	return r.p.checkAddressesFree(ctx, r.spec.staticAddrs(), r.spec.VMID, "ip= in --net")
}

// checkAddressesFree refuses an address of static that a guest other than
// self holds; where says which flag to change.
func (p *Provisioner) checkAddressesFree(ctx context.Context, static []netip.Addr, self int, where string) error {
	if len(static) == 0 {
		return nil
	}
	view := p.newView()
	if err := view.refresh(ctx); err != nil {
		return apiProblem("read the cluster's guest addresses", err)
	}
	for _, a := range static {
		if holders := view.holding(a, self); len(holders) > 0 {
			return problemf(ErrConflict, "IP %s is already used by %s: pick another %s", a, holders[0], where)
		}
	}
	return nil
}
