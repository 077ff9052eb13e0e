package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// clone makes the pod from the template. Undoing it removes the CT, and
// only a CT carrying this run's marker (rollback.go).
func (r *createRun) cloneStep() flow.Step {
	return flow.Step{Name: StepClone, Run: r.clone, Plan: r.planClone, Undo: r.undoClone}
}

func (r *createRun) planClone(context.Context) ([]flow.Call, error) {
	s := r.spec
	if r.existing != nil {
		calls := []flow.Call{{Method: "GET", Path: fmt.Sprintf("/nodes/%s/lxc/%d/config", r.ct().Node, s.VMID), Note: "CT exists with this spec: converge"}}
		if r.ct().Node != s.Node {
			calls = append(calls, r.planMigrate(r.ct().Node)...)
		}
		return calls, nil
	}
	pl := r.route()
	clone := map[string]string{"newid": strconv.Itoa(s.VMID), "hostname": s.Hostname, "description": "(ownership marker)"}
	if !s.Linked {
		clone["full"], clone["storage"] = "1", s.Storage
	}
	note := "retried on 'CT is locked'"
	switch pl.Route {
	case RouteTarget:
		clone["target"] = s.Node
		note += "; the clone moves to " + s.Node + " when done (shared storage)"
	case RouteCopy:
		note += "; CT " + strconv.Itoa(pl.Source) + " is the template's copy on " + s.Node
	}
	calls := []flow.Call{
		{Method: "POST", Path: fmt.Sprintf("/nodes/%s/lxc/%d/clone", pl.SourceNode, pl.Source), Params: formatParams(clone), Note: note},
		taskPoll(pl.SourceNode, "the clone"),
	}
	if pl.Route == RouteMigrate {
		calls = append(calls, r.planMigrate(pl.SourceNode)...)
	}
	return calls, nil
}

// planMigrate is the migration of the stopped clone to the pod's node.
func (r *createRun) planMigrate(from string) []flow.Call {
	return []flow.Call{
		{Method: "POST", Path: fmt.Sprintf("/nodes/%s/lxc/%d/migrate", from, r.spec.VMID), Params: "target=" + r.spec.Node,
			Note: "offline: the clone's local volume is copied to " + r.spec.Node},
		taskPoll(from, "the migration"),
	}
}

// route is how the clone is made: placement's, or the template's own node
// for a run that placed nothing (a converging one).
func (r *createRun) route() Placement {
	if r.placement != nil {
		return *r.placement
	}
	return Placement{Node: r.spec.Node, Route: RouteLocal, Source: r.spec.Template, SourceNode: r.spec.Node}
}

// raceRetries bounds how often a create moves to another VMID or address
// that another controller took between its reservation and its claim.
const raceRetries = 10

// clone makes the pod at the reserved VMID. PVE refuses a clone to a VMID
// that exists ("CT 9105 already exists"): that is PVE serialising VMIDs
// between controllers that do not share a registry. A VMID IPAM picked
// then moves to the next free one; one the request named is a conflict.
func (r *createRun) clone(ctx context.Context) error {
	if r.existing != nil {
		if err := r.waitUnlocked(ctx); err != nil {
			return err
		}
		if r.ct().Node != r.spec.Node {
			return r.moveToNode(ctx)
		}
		return flow.Skip(fmt.Sprintf("CT %d already cloned", r.spec.VMID))
	}
	for attempt := 1; ; attempt++ {
		err := r.cloneOnce(ctx)
		if !errors.Is(err, pve.ErrAlreadyExists) || errors.Is(err, ErrConflict) {
			return err
		}
		// cloneDone found no CT of this run there: another guest took
		// the VMID since preflight, and this run made nothing.
		r.cloneTried, r.created = false, false
		taken := r.spec.VMID
		if !r.autoVMID || r.lease == nil || attempt >= raceRetries {
			return problemf(ErrConflict, "VMID %d was taken in PVE after preflight (by another controller or by hand): pick another --vmid, or --vmid auto", taken)
		}
		if err := r.reserveAgain(ctx, true); err != nil {
			return err
		}
		r.run.Info(fmt.Sprintf("VMID %d was taken in PVE meanwhile (another controller?): cloning to VMID %d instead", taken, r.spec.VMID))
	}
}

// reserveAgain gives back this run's lease and reserves anew from a fresh
// look at the cluster, where the VMID or address another controller took
// now shows; the owner's released lease makes IPAM offer its numbers first
// when they are still free. newVMID: the VMID is given back too (nothing
// was cloned); else the pod keeps its VMID and gets another address.
func (r *createRun) reserveAgain(ctx context.Context, newVMID bool) error {
	if err := r.p.opts.Addresses.Release(ctx, *r.lease); err != nil {
		return fmt.Errorf("IPAM: give back %s and VMID %d: %w", r.lease.IP, r.lease.VMID, err)
	}
	r.lease = nil
	if err := r.view.look(ctx, r.looking(time.Now(), false)); err != nil {
		return apiProblem("read the cluster's guests", err)
	}
	req := r.addressRequest()
	req.IP = netip.Addr{}
	if newVMID {
		req.VMID = 0
	}
	lease, err := r.p.opts.Addresses.Reserve(ctx, req)
	if err != nil {
		return ipamProblem(r.spec, err)
	}
	r.lease = &lease
	return r.take(lease)
}

// cloneOnce clones one source at a time in this process, waits out PVE's
// lock errors (a clone by another process holds the template's disk lock),
// and settles an unknown outcome (596, dropped connection, timeout) by
// looking for this run's marker on the new id before anything is repeated.
func (r *createRun) cloneOnce(ctx context.Context) error {
	s := r.spec
	pl := r.route()
	unlock, err := r.p.lockClone(ctx, pl.SourceNode, pl.Source)
	if err != nil {
		return err
	}
	marker := newMarker(s, r.runID, r.p.opts.Now())
	r.cloneTried = true
	r.res.Changed = true
	opts := pve.CloneOptions{NewID: s.VMID, Hostname: s.Hostname, Description: marker.Description(), Storage: s.Storage, Full: !s.Linked}
	if pl.Route == RouteTarget {
		opts.Target = s.Node
	}
	// PVE makes the clone on the source's node; with target it moves
	// there when the task ends.
	r.ctNode = pl.SourceNode
	upid, err := r.run.Retry().Task(ctx, fmt.Sprintf("clone CT %d to %d", pl.Source, s.VMID), func(ctx context.Context) (string, error) {
		upid, err := r.p.api.CloneGuest(ctx, pve.CT(pl.SourceNode, pl.Source), opts)
		if err == nil {
			r.created = true
			r.tasks = append(r.tasks, upid)
		}
		return upid, err
	}, func(ctx context.Context, upid string) error {
		_, err := r.p.waitShowing(ctx, r.run, pl.SourceNode, upid)
		return err
	}, r.cloneDone)
	unlock()
	if err != nil {
		return err
	}
	r.created = true
	switch {
	case pl.Route == RouteTarget:
		// PVE moves the clone when its task ends; a lost answer has no
		// task to wait for, so the move itself is waited for.
		r.ctNode = s.Node
		if upid == "" {
			return r.waitArrived(ctx)
		}
	case upid == "":
		// The POST's answer was lost but the clone is there: wait for its
		// lock to clear instead of for a task we have no id of.
		if err := r.waitUnlocked(ctx); err != nil {
			return err
		}
	}
	if pl.Route == RouteMigrate {
		return r.moveToNode(ctx)
	}
	return nil
}

// waitArrived waits for a clone with target to be on the pod's node, its
// lock cleared.
func (r *createRun) waitArrived(ctx context.Context) error {
	err := pollUntil(ctx, r.p.opts.TaskTimeout, func(ctx context.Context) (bool, error) {
		cfg, err := r.p.api.GuestConfig(ctx, pve.CT(r.spec.Node, r.spec.VMID))
		if errors.Is(err, pve.ErrNotFound) {
			return false, nil // still on the template's node
		}
		return err == nil && cfg.Get("lock") == "", err
	})
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("CT %d did not reach node %s within %s of its clone: look for its vzclone task on the template's node: %w", r.spec.VMID, r.spec.Node, r.p.opts.TaskTimeout, pve.ErrWaitTimeout)
	}
	return err
}

// moveToNode migrates the stopped clone from where PVE made it to the
// pod's node (the migrate route, or a run that stopped before it moved).
func (r *createRun) moveToNode(ctx context.Context) error {
	from := r.ct()
	r.run.Info(fmt.Sprintf("migrating CT %d from %s to %s", r.spec.VMID, from.Node, r.spec.Node))
	if err := r.p.migrateTo(ctx, r.run, from, r.spec.Node); err != nil {
		return err
	}
	r.ctNode = ""
	return nil
}

// cloneDone is the clone's already-done check: a CT at the new id carrying
// this run's marker is our clone. The same command's marker from another
// run means two runs race for one pod.
func (r *createRun) cloneDone(ctx context.Context, _ error) (bool, error) {
	s := r.spec
	cfg, err := r.p.api.GuestConfig(ctx, r.ct())
	if errors.Is(err, pve.ErrNotFound) && r.ct().Node != s.Node {
		// a clone with target that finished is on the pod's node
		if cfg, err = r.p.api.GuestConfig(ctx, pve.CT(s.Node, s.VMID)); err == nil {
			r.ctNode = s.Node
		}
	}
	if errors.Is(err, pve.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	m, ok := ParseMarker(cfg.Get("description"))
	if ok && m.Owns(s.VMID) && m.RunID != r.runID && m.SpecHash == s.Hash() {
		return false, problemf(ErrConflict, "CT %d is being created by another run of the same command (run %s): let it finish, then run the command again", s.VMID, m.RunID)
	}
	return ok && m.RunID == r.runID, nil
}

// waitUnlocked waits for a clone that an earlier run started (or whose
// answer was lost) to finish: PVE clears 'lock: create' at the end.
func (r *createRun) waitUnlocked(ctx context.Context) error {
	err := r.p.waitNoLock(ctx, r.ct(), r.p.opts.TaskTimeout)
	if errors.Is(err, pve.ErrNotFound) {
		return fmt.Errorf("CT %d disappeared while its clone finished (PVE removes a failed clone's target): run the command again", r.spec.VMID)
	}
	return err
}

// taskPoll is the planned wait for a task's end.
func taskPoll(node, what string) flow.Call {
	return flow.Call{Method: "GET", Path: fmt.Sprintf("/nodes/%s/tasks/{upid}/status", node), Note: "poll until " + what + " task stops"}
}
