package provisioner

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// What the flows that make a guest from a spec share, containers (ct
// create, the router, the golden template) and VMs (vm create and clone,
// the router VM) alike: telling a free VMID from one holding a guest an
// earlier run of the same spec made, settling a create whose answer was
// lost by the run's marker, and undoing what this run made.

// madeGuest is what a guest-making flow knows of its guest for the
// rollback.
type madeGuest struct {
	g     pve.GuestRef
	runID string
	// existing: the guest was there before this run (a converging re-run).
	existing bool
	// tried: the create (or clone) went out, so a guest of this run may
	// exist whatever its answer said; made: it does.
	tried, made bool
	tasks       []string
	keep        bool // --keep-on-failure
}

// existingGuest reads g: nil for a free VMID; the config of a guest an
// earlier run of the spec whose hash is hash made (a converging re-run);
// else a conflict naming the difference (diff reads the spec recorded in
// the description). sameRun is set when the guest carries runID.
func (p *Provisioner) existingGuest(ctx context.Context, run *flow.Run, g pve.GuestRef, hash, runID string, diff func(description string) []string) (cfg *pve.Config, sameRun bool, err error) {
	c, err := p.api.GuestConfig(ctx, g)
	if errors.Is(err, pve.ErrNotFound) {
		free, ferr := p.api.VMIDFree(ctx, g.VMID)
		if ferr != nil {
			return nil, false, apiProblem(fmt.Sprintf("check VMID %d", g.VMID), ferr)
		}
		if !free {
			other := "a VM, or a CT on another node"
			if g.Kind == pve.QEMU {
				other = "a CT, or a VM on another node"
			}
			return nil, false, problemf(ErrConflict, "VMID %d is taken by another guest in the cluster (%s): pick another --vmid", g.VMID, other)
		}
		return nil, false, nil
	}
	if err != nil {
		return nil, false, apiProblem("read "+g.String(), err)
	}
	m, ok := ParseMarker(c.Get("description"))
	if !ok || !m.Owns(g.VMID) {
		return nil, false, problemf(ErrConflict, "%s already exists and was not created by cloudpods: pick another --vmid", g)
	}
	if m.SpecHash != hash {
		d := diff(c.Get("description"))
		if len(d) == 0 {
			d = []string{"a different spec"}
		}
		return nil, false, problemf(ErrConflict, "%s already exists with a different spec (%s): destroy it first (cloudpod destroy %d --force) or pass the spec it was made with", g, strings.Join(d, ", "), g.VMID)
	}
	run.Info(fmt.Sprintf("%s exists with this spec (run %s): converging", g, m.RunID))
	return &c, m.RunID == runID, nil
}

// verifyGuest reads g's config back through checks, and g's status when
// it should run: the checks, and an error naming each failure.
func (p *Provisioner) verifyGuest(ctx context.Context, g pve.GuestRef, running bool, checks func(pve.Config) []Check) ([]Check, error) {
	cfg, err := p.api.GuestConfig(ctx, g)
	if err != nil {
		return nil, err
	}
	out := checks(cfg)
	if running {
		st, err := p.api.GuestStatus(ctx, g)
		if err != nil {
			return out, err
		}
		out = append(out, Check{Name: "status", OK: st.Status == "running", Detail: st.Status})
	}
	return out, failedChecks(g.String()+" is not as asked", out)
}

// madeByRun settles a create whose answer was lost, or that PVE refused
// as existing: a guest carrying runID's marker is this run's. PVE writes
// the config with only "lock: create" first and the rest when the task
// ends, so a guest still being created is waited for before it is judged.
func (p *Provisioner) madeByRun(ctx context.Context, g pve.GuestRef, runID string) (bool, error) {
	cfg, err := p.api.GuestConfig(ctx, g)
	if err == nil && (cfg.Get("lock") == "create" || cfg.Get("lock") == "clone") {
		if err = p.waitNoLock(ctx, g, p.opts.TaskTimeout); err == nil {
			cfg, err = p.api.GuestConfig(ctx, g)
		}
	}
	if errors.Is(err, pve.ErrNotFound) {
		return false, nil // no guest, or its create failed and PVE removed it
	}
	if err != nil {
		return false, err
	}
	mk, ok := ParseMarker(cfg.Get("description"))
	return ok && mk.RunID == runID, nil
}

// makeGuest runs call (a create or a clone of g) under run's retry policy
// and waits for its task; an answer lost, or a refusal as existing, is
// settled by runID's marker. started hears each task: the guest may exist
// from then on. Once made, a lock left by a create whose answer was lost
// is waited out.
func (p *Provisioner) makeGuest(ctx context.Context, run *flow.Run, g pve.GuestRef, runID, what string, call func(ctx context.Context) (string, error), started func(upid string)) error {
	_, err := run.Retry().Task(ctx, what, func(ctx context.Context) (string, error) {
		upid, err := call(ctx)
		if err == nil {
			started(upid)
		}
		return upid, err
	}, func(ctx context.Context, upid string) error {
		_, err := p.wait(ctx, g.Node, upid)
		return err
	}, func(ctx context.Context, _ error) (bool, error) { return p.madeByRun(ctx, g, runID) })
	if err != nil {
		return err
	}
	return p.waitNoLock(ctx, g, p.opts.TaskTimeout)
}

// undoMade removes the guest this run made, on failure; keeps it for the
// re-run when the run was stopped; only says what is there when aborted.
func (p *Provisioner) undoMade(ctx context.Context, run *flow.Run, m madeGuest, rb flow.Rollback) flow.Outcome {
	g, id := m.g, m.g.VMID
	switch {
	case m.existing && !m.made:
		return flow.Outcome{Left: true, Said: fmt.Sprintf("%s was there before this run and is left as it is: run the same command again to finish it", g)}
	case !m.tried:
		return flow.Outcome{}
	case rb.Cause == flow.Interrupted:
		return flow.Outcome{Left: true, Said: fmt.Sprintf("%s exists, partly provisioned: run the same command again to finish it, or remove it with: cloudpod destroy %d --force", g, id)}
	case rb.Cause == flow.Aborted:
		if _, err := p.api.GuestConfig(ctx, g); errors.Is(err, pve.ErrNotFound) {
			return flow.Outcome{Said: "nothing was created"}
		}
		return flow.Outcome{Left: true, Said: fmt.Sprintf("%s may exist, partly provisioned: run the same command again, or remove it with: cloudpod destroy %d --force", g, id)}
	}
	wo := p.opts.Wait
	wo.Timeout = 0 // the rollback's own budget bounds it
	for _, upid := range m.tasks {
		_, _ = pve.WaitTask(ctx, p.api, taskNode(upid, g.Node), upid, wo)
	}
	if _, err := p.api.GuestConfig(ctx, g); errors.Is(err, pve.ErrNotFound) {
		return flow.Outcome{Said: "nothing was left: no " + g.Kind.Noun() + " at VMID " + strconv.Itoa(id)}
	}
	if m.keep {
		return flow.Outcome{Left: true, Said: fmt.Sprintf("kept %s (--keep-on-failure): inspect it, then remove it with: cloudpod destroy %d --force", g, id)}
	}
	run.Event("rollback", flow.PhaseStart, "")
	if err := p.removeGuest(ctx, g, m.runID); err != nil {
		run.Event("rollback", flow.PhaseFail, err.Error())
		return flow.Outcome{Left: true, Said: fmt.Sprintf("rollback of %s failed, remove it with: cloudpod destroy %d --force (%v)", g, id, err)}
	}
	run.Event("rollback", flow.PhaseDone, "")
	return flow.Outcome{Said: fmt.Sprintf("rolled back: %s destroyed", g)}
}

// finalizedGuest is finalize's convergence check: the marker says ready.
func (p *Provisioner) finalizedGuest(ctx context.Context, g pve.GuestRef) (string, error) {
	cfg, err := p.api.GuestConfig(ctx, g)
	if err != nil {
		return "", err
	}
	if m, _ := ParseMarker(cfg.Get("description")); m.State == "ready" {
		return "marked ready", nil
	}
	return "", nil
}

// markReady rewrites g's description with its marker in state ready;
// describe renders the description from the marker.
func (p *Provisioner) markReady(ctx context.Context, run *flow.Run, g pve.GuestRef, describe func(Marker) string) error {
	cfg, err := p.api.GuestConfig(ctx, g)
	if err != nil {
		return err
	}
	m, _ := ParseMarker(cfg.Get("description"))
	m.State = "ready"
	desc := describe(m)
	return run.Retry().Do(ctx, fmt.Sprintf("mark %s ready", g), func(ctx context.Context) error {
		return p.api.UpdateGuestConfig(ctx, g, pve.ConfigUpdate{Set: map[string]string{"description": desc}})
	}, nil)
}
