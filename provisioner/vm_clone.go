package provisioner

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// VM clone: a VM from a VM template (vm template), linked (the template's
// base volumes shared, on a storage with the clone feature) or full, with
// cloud-init settings of its own (name, ipconfigN, user, keys, DNS); then
// started and checked as vm create does. PVE regenerates every MAC and the
// SMBIOS uuid, and writes the clone's cloud-init drive when it starts.

// CloneVM clones a VM template, or converges a clone an earlier run of
// the same spec made. req.Spec.Template names the template.
func (p *Provisioner) CloneVM(ctx context.Context, req VMRequest) (VMResult, error) {
	r := p.newVMRun(req, "vm clone")
	err := r.run.Execute(ctx, r.cloneSteps())
	res := r.result(ctx, err)
	res.Image = "VM " + strconv.Itoa(r.spec.Template)
	return res, err
}

// PlanCloneVM is vm clone's dry run.
func (p *Provisioner) PlanCloneVM(ctx context.Context, req VMRequest) ([]PlannedCall, []string, error) {
	r := p.newVMRun(req, "vm clone")
	calls, err := r.run.DryRun(ctx, r.cloneSteps())
	return calls, r.reasons, err
}

func (r *vmRun) cloneSteps() []flow.Step {
	return append([]flow.Step{
		{Name: StepValidate, ReadOnly: true, Run: r.validateClone},
		{Name: StepPreflight, ReadOnly: true, Run: r.preflightClone},
		r.leases.step(),
		{Name: StepClone, Check: r.createDone, Run: r.clone, Plan: r.planClone, Undo: r.undoCreate},
		{Name: StepConfigure, Check: r.configured, Run: r.configure, Plan: r.planConfigure},
	}, r.bootSteps()...)
}

func (r *vmRun) template() pve.GuestRef { return pve.VM(r.spec.Node, r.spec.Template) }

func (r *vmRun) validateClone(context.Context) error {
	probs := r.validateCommon()
	s := r.spec
	if s.Template < 100 || s.Template > MaxVMID {
		probs = append(probs, fmt.Sprintf("template VMID %d is out of range: give the VM template's id", s.Template))
	}
	if s.Template == s.VMID {
		probs = append(probs, fmt.Sprintf("--vmid %d is the template's own: give the clone another", s.VMID))
	}
	if s.Linked && s.Storage != StorageAuto && s.Storage != "" {
		probs = append(probs, "--storage applies to full clones only (a linked clone's disks stay on the template's storage): drop --storage or pass --full")
	}
	if len(probs) > 0 {
		return problemf(ErrInvalidSpec, "%s", strings.ReplaceAll(strings.Join(probs, "; "), "\n", "; "))
	}
	return nil
}

// preflightClone reads PVE: the version, the template (a VM template with
// the cards ipconfigN needs), an existing clone (converge or refuse), the
// storage, the token's privileges, the node, the static addresses.
func (r *vmRun) preflightClone(ctx context.Context) error {
	s := r.spec
	var err error
	if r.version, err = r.p.api.Version(ctx); err != nil {
		return apiProblem("read PVE's version", err)
	}
	tcfg, err := r.p.api.GuestConfig(ctx, r.template())
	if errors.Is(err, pve.ErrNotFound) {
		return problemf(ErrPreflight, "VM %d does not exist on node %s: give the VM template to clone (cloudpod vm template VMID makes one)", s.Template, s.Node)
	}
	if err != nil {
		return apiProblem("read VM "+strconv.Itoa(s.Template), err)
	}
	if tcfg.Get("template") != "1" {
		return problemf(ErrPreflight, "VM %d is not a template: convert it first with: cloudpod vm template %d", s.Template, s.Template)
	}
	for _, i := range sortedInts(s.IPConfigs) {
		if tcfg.Get("net"+strconv.Itoa(i)) == "" {
			return problemf(ErrInvalidSpec, "--ipconfig%d: template VM %d has no net%d card", i, s.Template, i)
		}
	}
	// What the clone has is the template's: its marker and spec say so.
	r.spec.Cores, _ = strconv.Atoi(orDefault(tcfg.Get("cores"), "1"))
	r.spec.MemoryMB, _ = strconv.Atoi(orDefault(tcfg.Get("memory"), "512"))
	r.spec.CPU, r.spec.BIOS, r.spec.Machine = tcfg.Get("cpu"), orDefault(tcfg.Get("bios"), BIOSSeaBIOS), tcfg.Get("machine")
	if s.Name == "" {
		r.spec.Name = fmt.Sprintf("%s-%d", orDefault(tcfg.Get("name"), "vm"), s.VMID)
		r.res.Name = r.spec.Name
		r.reasons = append(r.reasons, "name "+r.spec.Name+": the template's name and the VMID (no --name)")
	}
	if !s.Agent && agentConfigured(tcfg.Get("agent")) {
		r.spec.Agent = true
		r.reasons = append(r.reasons, fmt.Sprintf("the guest agent: enabled in template VM %d, waited for after start", s.Template))
	}
	if err := r.checkExisting(ctx); err != nil {
		return err
	}
	tst := rootfsStorage(tcfg.Get("scsi0"))
	switch {
	case r.existing != nil:
		r.storage = StorageChoice{ID: rootfsStorage(r.existing.Get("scsi0")), Reason: "the VM exists: its disks stay where they are"}
	case s.Linked:
		r.storage = StorageChoice{ID: tst, Reason: fmt.Sprintf("linked clone: its disks reference template VM %d's base volumes on %s", s.Template, tst)}
	default:
		storages, err := r.p.api.Storages(ctx, s.Node)
		if err != nil {
			return apiProblem("list storages on "+s.Node, err)
		}
		want := s.Storage
		if want == "" {
			want = StorageAuto
		}
		if r.storage, err = ChooseStorage(storages, want, "images", rootfsSize(tcfg.Get("scsi0"))); err != nil {
			return err
		}
		r.storage.Reason = "full clone: " + r.storage.Reason
	}
	r.reasons = append(r.reasons, r.storage.Reason)
	if r.existing != nil {
		return nil
	}
	if err := r.p.checkPrivileges(ctx, r.clonePrivileges(tcfg)); err != nil {
		return err
	}
	if err := r.p.checkNodeOnline(ctx, s.Node); err != nil {
		return err
	}
	return r.checkAddresses(ctx)
}

// clonePrivileges are what the clone needs (API2/Qemu.pm clone_vm):
// VM.Clone on the template, VM.Allocate on the new VMID, room on the
// target storage, SDN.Use on the template's bridges; then what its
// settings (tags and the agent: VM.Config.Options), start and the agent
// need.
func (r *vmRun) clonePrivileges(tcfg pve.Config) []privilege {
	vm := "/vms/" + strconv.Itoa(r.spec.VMID)
	need := []privilege{{Path: "/vms/" + strconv.Itoa(r.spec.Template), Priv: "VM.Clone"}, {Path: vm, Priv: "VM.Allocate"},
		{Path: vm, Priv: "VM.Audit"}, {Path: vm, Priv: "VM.Config.Options"}, {Path: "/storage/" + r.storage.ID, Priv: "Datastore.AllocateSpace"}}
	var nics []netcfg.VMNIC
	nets := vmNets(tcfg)
	for _, k := range sortedKeysOf(nets) {
		n := netcfg.VMNIC{}
		for _, kv := range strings.Split(nets[k], ",") {
			k, val, _ := strings.Cut(kv, "=")
			switch k {
			case "bridge":
				n.Bridge = val
			case "tag":
				n.VLAN, _ = strconv.Atoi(val)
			}
		}
		nics = append(nics, n)
	}
	need = append(need, bridgePrivileges(nics)...)
	return append(need, r.bootPrivileges(vm)...)
}

func agentConfigured(v string) bool {
	first, _, _ := strings.Cut(v, ",")
	return first == "1" || first == "enabled=1"
}

func (r *vmRun) cloneOptions(description string) pve.CloneOptions {
	o := pve.CloneOptions{NewID: r.spec.VMID, Hostname: r.spec.Name, Description: description, Full: !r.spec.Linked}
	if o.Full {
		o.Storage = r.storage.ID
	}
	return o
}

func (r *vmRun) planClone(context.Context) ([]flow.Call, error) {
	s := r.spec
	if r.existing != nil {
		return []flow.Call{{Method: "GET", Path: vmPathOf(s.Node, s.VMID, "/config"), Note: "VM exists with this spec: converge"}}, nil
	}
	o := r.cloneOptions("(ownership marker)")
	p := map[string]string{"newid": strconv.Itoa(o.NewID), "name": o.Hostname, "description": o.Description, "full": boolParam(o.Full)}
	setNonEmpty(p, "storage", o.Storage)
	return []flow.Call{{Method: "POST", Path: vmPathOf(s.Node, s.Template, "/clone"), Params: formatParams(p), Note: "qmclone task"},
		taskPoll(s.Node, "the qmclone")}, nil
}

func (r *vmRun) clone(ctx context.Context) error {
	s := r.spec
	o := r.cloneOptions(s.description(s.marker(r.runID, r.p.opts.Now())))
	r.createTried, r.res.Changed = true, true
	kind := "full"
	if s.Linked {
		kind = "linked"
	}
	err := r.p.makeGuest(ctx, r.run, r.vm(), r.runID, fmt.Sprintf("%s clone of VM %d to %d", kind, s.Template, s.VMID), func(ctx context.Context) (string, error) {
		return r.p.api.CloneGuest(ctx, r.template(), o)
	}, r.started)
	r.created = r.created || err == nil
	if err == nil {
		r.run.Note(fmt.Sprintf("%s clone of VM %d", kind, s.Template))
	}
	return err
}

// cloneSettings are what configure sets on the clone: its cloud-init
// settings, the agent when asked and the tags.
func (r *vmRun) cloneSettings() map[string]string {
	set := r.spec.cloudInitParams()
	if r.spec.Agent {
		set["agent"] = "enabled=1"
	}
	set["tags"] = tagString(append([]string{OwnerTag}, r.spec.Tags...))
	return set
}

// configured: the clone has every setting already.
func (r *vmRun) configured(ctx context.Context) (string, error) {
	cfg, err := r.p.api.GuestConfig(ctx, r.vm())
	if err != nil {
		return "", err
	}
	for k, v := range r.cloneSettings() {
		if cfg.Get(k) != v {
			return "", nil
		}
	}
	return "cloud-init settings as asked", nil
}

func (r *vmRun) planConfigure(context.Context) ([]flow.Call, error) {
	set := r.cloneSettings()
	if set["sshkeys"] != "" {
		set["sshkeys"] = fmt.Sprintf("(%d keys, percent-encoded)", len(keyLines(r.spec.SSHKeys)))
	}
	return []flow.Call{{Method: "PUT", Path: vmPathOf(r.spec.Node, r.spec.VMID, "/config"), Params: formatParams(set),
		Note: "the clone's own cloud-init settings; PVE writes its drive at start"}}, nil
}

func (r *vmRun) configure(ctx context.Context) error {
	set := r.cloneSettings()
	r.res.Changed = true
	return r.run.Retry().Do(ctx, fmt.Sprintf("set VM %d's cloud-init settings", r.spec.VMID), func(ctx context.Context) error {
		return r.p.api.UpdateGuestConfig(ctx, r.vm(), pve.ConfigUpdate{Set: set})
	}, nil)
}
