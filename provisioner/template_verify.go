package provisioner

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Verifying the golden template against the spec: its config (a template,
// the resources, the rootfs storage and size, the privilege level, the
// features, the NIC), and what is inside it — packages installed,
// services enabled, the netplan file minimal, the timezone. A template
// cannot be started, so the inside is read from a throwaway linked clone
// with no NIC, started with a root-shell console and removed again
// whatever happens (it carries its own run's marker, so nothing else is
// ever removed).

// scratchFrom is where a scratch clone's VMID is looked for.
const scratchFrom = 99900

// scratchVMIDPath is the ACL path a scratch clone's privileges are checked
// on: its VMID is picked at run time.
func (t *templateRun) scratchVMIDPath() string {
	if t.treq.ScratchVMID != 0 {
		return "/vms/" + strconv.Itoa(t.treq.ScratchVMID)
	}
	return "/vms"
}

// scratchPrivileges are what inspecting through a scratch clone needs.
func (t *templateRun) scratchPrivileges() []privilege {
	tpl, sc := "/vms/"+strconv.Itoa(t.spec.VMID), t.scratchVMIDPath()
	return []privilege{
		{Path: tpl, Priv: "VM.Clone"}, {Path: tpl, Priv: "VM.Audit"}, {Path: sc, Priv: "VM.Allocate"},
		{Path: sc, Priv: "VM.Config.Network"}, {Path: sc, Priv: "VM.Config.Options"}, {Path: sc, Priv: "VM.PowerMgmt"},
		{Path: sc, Priv: "VM.Console"}, {Path: "/storage/" + t.spec.Storage, Priv: "Datastore.AllocateSpace"},
	}
}

func (t *templateRun) planVerifyAll(context.Context) ([]flow.Call, error) {
	s := t.spec
	sc := "{scratch}"
	if t.treq.ScratchVMID != 0 {
		sc = strconv.Itoa(t.treq.ScratchVMID)
	}
	return []flow.Call{
		{Method: "GET", Path: ctPathOf(s.Node, s.VMID, "/config"), Note: "a template, the resources, storage, features, NIC as the spec says"},
		{Method: "POST", Path: ctPathOf(s.Node, s.VMID, "/clone"), Params: "newid=" + sc, Note: "a linked scratch clone (VMID from " + strconv.Itoa(scratchFrom) + " up unless --scratch-vmid)"},
		{Method: "PUT", Path: "/nodes/" + s.Node + "/lxc/" + sc + "/config", Params: "cmode=shell delete=net0", Note: "no NIC: it never joins the LAN"},
		{Method: "POST", Path: "/nodes/" + s.Node + "/lxc/" + sc + "/status/start"},
		{Method: "GET", Path: "/nodes/" + s.Node + "/lxc/" + sc + "/vncwebsocket", Note: "dpkg-query, systemctl is-enabled, the netplan file, the timezone"},
		{Method: "DELETE", Path: "/nodes/" + s.Node + "/lxc/" + sc, Params: "purge=1", Note: "the scratch clone, whatever happened"},
	}, nil
}

// verifyAll checks the template's config, then its inside through a
// scratch clone, and fails naming every difference.
func (t *templateRun) verifyAll(ctx context.Context) error {
	cfg, err := t.p.api.GuestConfig(ctx, t.ct())
	if errors.Is(err, pve.ErrNotFound) {
		return problemf(ErrPreflight, "CT %d does not exist on node %s: build it with: cloudpod template build", t.spec.VMID, t.spec.Node)
	}
	if err != nil {
		return apiProblem(fmt.Sprintf("read CT %d", t.spec.VMID), err)
	}
	if t.spec.Storage != StorageAuto {
		t.storage.ID = t.spec.Storage
	}
	checks := []Check{{Name: "template", OK: cfg.Get("template") == "1", Detail: "template: " + orDefault(cfg.Get("template"), "0")}}
	if !checks[0].OK {
		checks[0].Detail += ", want 1"
	}
	checks = append(checks, t.configChecks(cfg)...)
	if cm := cfg.Get("cmode"); cm != "" {
		checks = append(checks, Check{Name: "cmode", Detail: cm + ", want unset (clones set their own)"})
	}
	if checks[0].OK {
		inside, err := t.inspect(ctx)
		if err != nil {
			return err
		}
		checks = append(checks, inside...)
	}
	t.tres.Checks, t.tres.Template = checks, checks[0].OK
	for _, c := range checks {
		if !c.OK {
			t.tres.Differs = append(t.tres.Differs, c.Name+": "+c.Detail)
		}
	}
	if len(t.tres.Differs) > 0 {
		return fmt.Errorf("CT %d differs from the golden template's spec: %s", t.spec.VMID, strings.Join(t.tres.Differs, "; "))
	}
	t.run.Note(fmt.Sprintf("%d checks passed", len(checks)))
	return nil
}

// freeScratchVMID picks the scratch clone's VMID.
func (t *templateRun) freeScratchVMID(ctx context.Context) (int, error) {
	if t.treq.ScratchVMID != 0 {
		return t.treq.ScratchVMID, nil
	}
	for id := scratchFrom; id < scratchFrom+100; id++ {
		free, err := t.p.api.VMIDFree(ctx, id)
		if err != nil {
			return 0, apiProblem("look for a free VMID", err)
		}
		if free {
			return id, nil
		}
	}
	return 0, problemf(ErrConflict, "VMIDs %d to %d are all taken: pass --scratch-vmid with a free one", scratchFrom, scratchFrom+99)
}

// inspect clones the template (linked), removes the clone's NICs, starts
// it and reads the inside; the clone is removed before it returns.
func (t *templateRun) inspect(ctx context.Context) (checks []Check, err error) {
	s := t.spec
	id, err := t.freeScratchVMID(ctx)
	if err != nil {
		return nil, err
	}
	ref := pve.CT(s.Node, id)
	runID := t.p.randomHex(8)
	m := Marker{Version: 1, By: "cloudpods", VMID: id, Hostname: fmt.Sprintf("verify-%d", s.VMID), SpecHash: "scratch", RunID: runID,
		Created: t.p.opts.Now().UTC().Truncate(time.Second), State: "provisioning"}
	t.run.Info(fmt.Sprintf("inspecting CT %d through scratch clone CT %d", s.VMID, id))
	cloned := false
	defer func() {
		if !cloned {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.p.opts.TaskTimeout)
		defer cancel()
		if rerr := t.p.removeGuest(cctx, ref, runID); rerr != nil {
			t.run.Warn(fmt.Sprintf("scratch clone CT %d was not removed (%v): remove it with: cloudpod destroy %d --force", id, rerr, id))
		}
	}()
	unlock, err := t.p.lockClone(ctx, s.Node, s.VMID)
	if err != nil {
		return nil, err
	}
	cloned = true
	_, err = t.run.Retry().Task(ctx, fmt.Sprintf("clone CT %d to scratch CT %d", s.VMID, id), func(ctx context.Context) (string, error) {
		return t.p.api.CloneGuest(ctx, t.ct(), pve.CloneOptions{NewID: id, Hostname: m.Hostname, Description: m.Description()})
	}, func(ctx context.Context, upid string) error {
		_, err := t.p.wait(ctx, s.Node, upid)
		return err
	}, func(ctx context.Context, _ error) (bool, error) {
		cfg, err := t.p.api.GuestConfig(ctx, ref)
		if errors.Is(err, pve.ErrNotFound) {
			return false, nil
		}
		mk, ok := ParseMarker(cfg.Get("description"))
		return err == nil && ok && mk.RunID == runID, err
	})
	unlock()
	if err != nil {
		return nil, err
	}
	if err := t.p.waitNoLock(ctx, ref, t.p.opts.TaskTimeout); err != nil {
		return nil, err
	}
	cfg, err := t.p.api.GuestConfig(ctx, ref)
	if err != nil {
		return nil, err
	}
	upd := pve.ConfigUpdate{Set: map[string]string{"cmode": "shell"}}
	for k := range cfg.Values {
		if strings.HasPrefix(k, "net") {
			upd.Delete = append(upd.Delete, k)
		}
	}
	if err := t.run.Retry().Do(ctx, fmt.Sprintf("prepare scratch CT %d", id), func(ctx context.Context) error {
		return t.p.api.UpdateGuestConfig(ctx, ref, upd)
	}, nil); err != nil {
		return nil, err
	}
	if err := t.p.startAndWait(ctx, t.run, ref, nil); err != nil {
		return nil, err
	}
	err = t.p.inGuest(ctx, t.run, ref, "inspecting the template", func(ctx context.Context, sh *shell) error {
		var err error
		checks, err = t.guestChecks(ctx, sh)
		return err
	})
	return checks, err
}

// TemplateVerifyRequest checks an existing template against a spec.
type TemplateVerifyRequest = TemplateRequest

// VerifyTemplate checks an existing golden template against the spec and
// says what differs: the error lists every difference; the result's
// checks hold each one, passed or not.
func (p *Provisioner) VerifyTemplate(ctx context.Context, req TemplateVerifyRequest) (TemplateResult, error) {
	t := p.newTemplateRun(req, "template verify")
	err := t.run.Execute(ctx, []flow.Step{
		{Name: StepValidate, ReadOnly: true, Run: t.validate},
		{Name: StepPreflight, ReadOnly: true, Run: func(ctx context.Context) error { return t.p.checkPrivileges(ctx, t.scratchPrivileges()) }},
		{Name: StepVerify, Run: t.verifyAll, Plan: t.planVerifyAll},
	})
	res := t.result(err)
	res.Changed = false
	return res, err
}
