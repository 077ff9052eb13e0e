package provisioner

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// VM template: a VM cloudpods made becomes a template to clone — shut down
// cleanly (stopped hard after the timeout), then POST …/template, a
// qmtemplate task that turns its disks into base volumes (PVE refuses a
// running VM and one with snapshots). A template already is one: nothing
// to do. A conversion that fails after this run stopped the VM starts it
// again.

// VMTemplateRequest is one vm template.
type VMTemplateRequest struct {
	Node string
	VMID int
	// IgnoreOwnership converts a VM cloudpods did not make.
	IgnoreOwnership bool
	// ShutdownTimeout is how long a clean shutdown may take before PVE
	// stops the VM; 0 means 2 minutes.
	ShutdownTimeout time.Duration
	Reporter        Reporter
	Stop            <-chan struct{}
	Requester       string
}

// VMTemplateResult is what vm template reports.
type VMTemplateResult struct {
	VMID     int                `json:"vmid"`
	Name     string             `json:"name"`
	Node     string             `json:"node"`
	Template bool               `json:"template"`
	Changed  bool               `json:"changed"`
	Steps    map[string]float64 `json:"steps"`
	Warnings []string           `json:"warnings,omitempty"`
}

type vmTemplateRun struct {
	p   *Provisioner
	req VMTemplateRequest
	g   pve.GuestRef
	run *flow.Run
	res VMTemplateResult
	// already: it was a template before this run; stopped: this run shut
	// it down.
	already, stopped bool
}

// TemplateVM converts a VM into a template.
func (p *Provisioner) TemplateVM(ctx context.Context, req VMTemplateRequest) (VMTemplateResult, error) {
	if req.ShutdownTimeout <= 0 {
		req.ShutdownTimeout = 2 * time.Minute
	}
	t := &vmTemplateRun{p: p, req: req, g: pve.VM(req.Node, req.VMID), res: VMTemplateResult{VMID: req.VMID, Node: req.Node}}
	t.run = p.newRun(flow.Options{Kind: pve.QEMU, VMID: func() int { return req.VMID }, Reporter: req.Reporter, Stop: req.Stop,
		UndoBudget: p.opts.TaskTimeout + time.Minute, Nothing: "nothing was changed",
		Audit: func(err error, took time.Duration) {
			p.audit("vm template", Spec{VMID: req.VMID, Hostname: t.res.Name, Node: req.Node}, req.Requester, took, err)
		}})
	err := t.run.Execute(ctx, []flow.Step{
		{Name: StepInspect, ReadOnly: true, Run: t.inspect},
		{Name: StepShutdown, Check: t.shutDown, Run: t.shutdown, Undo: t.undoShutdown},
		{Name: StepConvert, Check: t.converted, Run: t.convert},
		{Name: StepVerify, Run: t.verify},
	})
	t.res.Steps, t.res.Warnings = t.run.Seconds(), t.run.Warnings()
	return t.res, err
}

func (t *vmTemplateRun) inspect(ctx context.Context) error {
	cfg, err := t.p.api.GuestConfig(ctx, t.g)
	if errors.Is(err, pve.ErrNotFound) {
		return problemf(ErrPreflight, "VM %d does not exist on node %s", t.req.VMID, t.req.Node)
	}
	if err != nil {
		return apiProblem("read VM "+strconv.Itoa(t.req.VMID), err)
	}
	t.res.Name = cfg.Get("name")
	if m, ok := ParseMarker(cfg.Get("description")); (!ok || !m.Owns(t.req.VMID)) && !t.req.IgnoreOwnership {
		return problemf(ErrRefused, "VM %d (%s) was not created by cloudpods (no ownership marker): vm template refuses it (pass --ignore-ownership if you are sure)", t.req.VMID, t.res.Name)
	}
	if cfg.Get("template") == "1" {
		t.already, t.res.Template = true, true
		return nil
	}
	vm := "/vms/" + strconv.Itoa(t.req.VMID)
	if err := t.p.checkPrivileges(ctx, []privilege{{Path: vm, Priv: "VM.Allocate"}, {Path: vm, Priv: "VM.PowerMgmt"}}); err != nil {
		return err
	}
	snaps, err := t.p.api.Snapshots(ctx, t.g)
	if err != nil {
		return apiProblem("list the snapshots of VM "+strconv.Itoa(t.req.VMID), err)
	}
	if len(snaps) > 0 {
		return problemf(ErrPreflight, "VM %d has %s: PVE converts only a VM without snapshots (\"you can't convert a VM to template if VM has snapshots\"): delete them first", t.req.VMID, listed("snapshot", snapshotNames(snaps)))
	}
	return nil
}

func snapshotNames(snaps []pve.Snapshot) []string {
	out := make([]string, len(snaps))
	for i, s := range snaps {
		out[i] = s.Name
	}
	return out
}

func (t *vmTemplateRun) shutDown(ctx context.Context) (string, error) {
	if t.already {
		return "already a template", nil
	}
	st, err := t.p.api.GuestStatus(ctx, t.g)
	if err != nil {
		return "", err
	}
	if st.Status != "running" {
		return "VM " + strconv.Itoa(t.req.VMID) + " is " + st.Status, nil
	}
	return "", nil
}

func (t *vmTemplateRun) shutdown(ctx context.Context) error {
	t.stopped, t.res.Changed = true, true
	return t.p.powerOff(ctx, t.g, t.req.ShutdownTimeout, t.p.opts.TaskTimeout, t.run.Warn)
}

// undoShutdown starts the VM again when the conversion failed after this
// run stopped it.
func (t *vmTemplateRun) undoShutdown(ctx context.Context, rb flow.Rollback) flow.Outcome {
	if !t.stopped || rb.Cause == flow.Aborted {
		return flow.Outcome{}
	}
	if cfg, err := t.p.api.GuestConfig(ctx, t.g); err == nil && cfg.Get("template") == "1" {
		return flow.Outcome{Said: fmt.Sprintf("VM %d is a template now", t.req.VMID)}
	}
	if err := t.p.startAndWait(ctx, t.run, t.g, nil); err != nil {
		return flow.Outcome{Left: true, Said: fmt.Sprintf("VM %d stays stopped (starting it again failed: %v)", t.req.VMID, err)}
	}
	return flow.Outcome{Said: fmt.Sprintf("rolled back: VM %d started again", t.req.VMID)}
}

func (t *vmTemplateRun) converted(ctx context.Context) (string, error) {
	if t.already {
		return "already a template", nil
	}
	return "", nil
}

func (t *vmTemplateRun) convert(ctx context.Context) error {
	t.res.Changed = true
	return t.run.Retry().Do(ctx, fmt.Sprintf("convert VM %d to a template", t.req.VMID), func(ctx context.Context) error {
		started, err := t.p.api.ConvertToTemplate(ctx, t.g)
		if err == nil && started.Task() {
			_, err = t.p.wait(ctx, t.req.Node, started.UPID)
		}
		return err
	}, func(ctx context.Context, _ error) (bool, error) {
		cfg, err := t.p.api.GuestConfig(ctx, t.g)
		return err == nil && cfg.Get("template") == "1", err
	})
}

func (t *vmTemplateRun) verify(ctx context.Context) error {
	cfg, err := t.p.api.GuestConfig(ctx, t.g)
	if err != nil {
		return err
	}
	if cfg.Get("template") != "1" {
		return fmt.Errorf("VM %d is not a template after the conversion (template: %q)", t.req.VMID, cfg.Get("template"))
	}
	t.res.Template = true
	t.run.Note(fmt.Sprintf("VM %d is a template: clone it with cloudpod vm clone %d --vmid N", t.req.VMID, t.req.VMID))
	return nil
}
